"""The notification endpoint of a websocket server process (websocket.md §9.4).

A connection-bound subscription stores ``http://<host>:<port>/<connection id>``
as its subscriber. Whatever process posts a message (this one or another,
on any machine sharing the store) notifies that subscriber like any webhook,
and this endpoint relays the document to the connection. That is what lets
a message posted through one server reach a websocket client connected to
another, with every message store.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOG = logging.getLogger("zaqar.transport.websocket")

Push = Callable[[str, dict[str, Any]], bool]


class _Handler(BaseHTTPRequestHandler):
    server_version = "zaqar-notify"
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = self.headers.get("Content-Length")
        if length is None:
            self._answer(400, b"Content-Length required")
            return
        raw = self.rfile.read(int(length))
        try:
            document = json.loads(raw)
        except ValueError:
            self._answer(400, b"body is not JSON")
            return
        push: Push = self.server.push  # type: ignore[attr-defined]
        push(self.path.strip("/"), document)
        self._answer(200, b"")  # NOTE: also for a connection that is gone, as upstream

    def do_GET(self) -> None:  # noqa: N802
        self._answer(405, b"Not Allowed")

    do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        LOG.debug("notification endpoint: " + format, *args)


class NotificationEndpoint:
    def __init__(self, bind: str, port: int, push: Push) -> None:
        self._server = ThreadingHTTPServer((bind, port), _Handler)
        self._server.daemon_threads = True
        self._server.push = push  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="zaqar-ws-notify",
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
