"""The HTTP v2 transport: a falcon WSGI app built from a route table."""

from zaqar.transport.wsgi.app import build_app

__all__ = ["build_app"]
