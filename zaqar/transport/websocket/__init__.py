"""The persistent transport: Zaqar's websocket protocol over ws4py framing."""

from zaqar.transport.websocket.server import Settings, WebSocketServer

__all__ = ["Settings", "WebSocketServer"]
