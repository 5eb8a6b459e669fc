"""The HTTP v2 transport: a falcon WSGI app built from a route table, and the server that runs it."""

from zaqar.transport.wsgi.app import build_app
from zaqar.transport.wsgi.server import HttpServer, Settings

__all__ = ["HttpServer", "Settings", "build_app"]
