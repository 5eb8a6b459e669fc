"""The persistent transport: Zaqar's websocket protocol over our own RFC 6455 framing (frames.py)."""

from zaqar.transport.websocket.server import Settings, WebSocketServer

__all__ = ["Settings", "WebSocketServer"]
