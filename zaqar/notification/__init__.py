"""Delivery of notifications: webhooks, mail and pushes to websocket connections, off the request path."""

from zaqar.notification.notifier import Notifier

__all__ = ["Notifier"]
