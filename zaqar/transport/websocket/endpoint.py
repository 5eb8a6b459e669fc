"""The notification endpoint of a websocket server process (websocket.md §9.4).

A connection-bound subscription stores ``http://<host>:<port>/<connection id>``
as its subscriber. Whatever process posts a message (this one or another,
on any machine sharing the store) notifies that subscriber like any webhook,
and this endpoint relays the document to the connection. That is what lets
a message posted through one server reach a websocket client connected to
another, with every message store.

Only pushes a zaqar server sends are relayed. Each must carry the
connection's push token (``protocol.PUSH_TOKEN_HEADER``): an HMAC of the
connection id under a key this process draws at start, stored with the
subscription in its ``post_headers`` option, which the posting server sends
as it sends any webhook's. Someone who merely learns a connection id (from a
log line, a subscriber URL) cannot push into it; a browser page cannot either,
as a request with an ``Origin`` header is refused.

It runs on the websocket server's reactor as one more listener: no thread per
request, at most ``max_connections`` open (beyond that 503, which the posting
server retries), a whole request within ``timeout`` seconds (else 408), a body
of at most ``max_body`` bytes (else 413, never read). Each connection carries
one request and is closed after the answer: 200 (also when the connection is
gone, as upstream), 400 (no or a garbled ``Content-Length``, a body that is
not a JSON object), 403 (bad token, browser), 405 (not POST), 431 (head over
16 KiB).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from zaqar.transport.reactor import Channel, ConnectionLimits, Reactor

LOG = logging.getLogger("zaqar.transport.websocket")

Push = Callable[[str, dict[str, Any]], bool]
MAX_HEAD = 16 * 1024
_MAX_LENGTH_DIGITS = 12  # a Content-Length no body here comes near; longer is garbage


class _Refused(Exception):
    def __init__(self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(text)
        self.status, self.text, self.headers = status, text, headers


def answer(status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A whole HTTP response that ends the connection."""
    body = text.encode()
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    reason = _REASONS.get(status, "Error")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"{lines}Connection: close\r\n\r\n").encode() + body


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed",
            408: "Request Timeout", 413: "Content Too Large", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}


class NotificationEndpoint:
    """The listener and its rules; ``token(connection_id)`` is what a push to that connection carries."""

    def __init__(self, reactor: Reactor, bind: str, port: int, push: Push, *, max_body: int,
                 max_connections: int = 64, timeout: float = 10.0) -> None:
        self._push = push
        self._key = secrets.token_bytes(32)
        self.max_body, self.timeout = max_body, timeout
        limits = ConnectionLimits(max_connections, 0, self._refusal)
        self._listener = reactor.listen(bind, port, self._channel, limits=limits)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def token(self, connection_id: str) -> str:
        return hmac.new(self._key, connection_id.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _refusal(reason: str) -> bytes:
        return answer(503, "Too many open connections. Please try again in a few seconds.",
                      (("Retry-After", "5"),))

    def _channel(self, reactor: Reactor, sock: Any, address: tuple[str, int]) -> _PushChannel:
        return _PushChannel(self, reactor, sock, address)

    def check(self, head: bytes) -> tuple[str, int]:
        """The connection id and body length of a push's request head; raises _Refused."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Refused(400, "Malformed request line.")
        method, target = parts[0], parts[1]
        if method != "POST":
            raise _Refused(405, "Not Allowed", (("Allow", "POST"),))
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise _Refused(400, "Malformed header line.")
            fields[name.strip().lower()] = value.strip()
        if "origin" in fields:
            raise _Refused(403, "Forbidden")  # a browser's request: pushes come from zaqar servers only
        length = fields.get("content-length")
        if length is None or "transfer-encoding" in fields:
            raise _Refused(400, "Content-Length required")
        if not (length.isascii() and length.isdigit()) or len(length) > _MAX_LENGTH_DIGITS:
            raise _Refused(400, "Content-Length is not a number")
        if int(length) > self.max_body:
            raise _Refused(413, f"Notification too large. Max size: {self.max_body} bytes.")
        connection_id = target.strip("/")
        given = fields.get("x-zaqar-push-token", "").encode("latin-1")
        if not hmac.compare_digest(given, self.token(connection_id).encode()):
            raise _Refused(403, "Forbidden")
        return connection_id, int(length)

    def deliver(self, connection_id: str, body: bytes) -> bytes:
        try:
            document = json.loads(body)
        except ValueError:
            return answer(400, "body is not JSON")
        if not isinstance(document, dict):
            return answer(400, "body is not a JSON object")
        self._push(connection_id, document)
        return answer(200, "")  # NOTE: also for a connection that is gone, as upstream


class _PushChannel(Channel):
    """One request: its head, then ``Content-Length`` bytes of body, then the answer and close."""

    send_timeout = 10.0

    def __init__(self, endpoint: NotificationEndpoint, reactor: Reactor, sock: Any,
                 address: tuple[str, int]) -> None:
        super().__init__(reactor, sock, address)
        self._endpoint = endpoint
        self._buf = bytearray()
        self._request: tuple[str, int] | None = None  # (connection id, body length) once the head is in
        self._deadline = time.monotonic() + endpoint.timeout
        self._answered = False

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        self._buf += data
        if self._request is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    self._answer(answer(431, "Request head too large."))
                return
            head = bytes(self._buf[:end])
            del self._buf[:end + 4]
            try:
                self._request = self._endpoint.check(head)
            except _Refused as refused:
                LOG.info("notification endpoint refused a request from %s: %d %s", self.address[0],
                         refused.status, refused.text)
                self._answer(answer(refused.status, refused.text, refused.headers))
                return
        connection_id, length = self._request
        if len(self._buf) >= length:
            self._answer(self._endpoint.deliver(connection_id, bytes(self._buf[:length])))

    def timed_out(self, now: float) -> None:
        if not self._answered and now > self._deadline:
            self._answer(answer(408, "Request Timeout"))

    def _answer(self, response: bytes) -> None:
        self._answered = True
        self._buf = bytearray()
        self.write(response)
        self.finish(1.0)  # what the peer still sends is read and dropped, then the socket closes
