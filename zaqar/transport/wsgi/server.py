"""The built-in HTTP/1.1 server: any WSGI app, served by the reactor's workers.

Keep-alive, pipelining (answered in order), ``Expect: 100-continue`` and
chunked request bodies; bodies over ``max_body`` are never buffered (the
app still answers from the declared size, then the connection closes). A
request must arrive whole within ``request_timeout``; an idle keep-alive
connection closes after ``keepalive_timeout``. For deployments that want
another server, the same app runs under uwsgi or gunicorn
(``zaqar.transport.wsgi.application``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from zaqar.transport.reactor import SERVER_FULL, Channel, ConnectionLimits, Reactor
from zaqar.transport.wsgi.http11 import HttpRequest, ParseError, RequestParser

LOG = logging.getLogger("zaqar.transport.wsgi")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_NO_BODY_STATUS = frozenset({204, 304})


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    bind: str = "127.0.0.1"
    port: int = 8888
    threads: int = 4
    max_head: int = 64 * 1024
    max_body: int = 1 << 20  # larger bodies are not read; the app answers from their declared size
    request_timeout: float = 30.0  # to receive one whole request, once its first byte arrived
    keepalive_timeout: float = 60.0  # an idle keep-alive connection closes after this
    send_timeout: float = 30.0
    max_buffered: int = 4 * 1024 * 1024  # unsent response bytes beyond which a peer is no longer read
    max_connections: int = 0  # open connections beyond which new ones get a 503; 0 = unlimited
    max_connections_per_address: int = 0  # the same, per client address (IPv6: per /64)


class _Date:
    """The Date header, formatted once a second rather than once a request."""

    def __init__(self) -> None:
        self._second = 0
        self._value = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, formatdate(now, usegmt=True)
        return self._value


_date = _Date()


def _reason(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def error_response(
    status: int, title: str, description: str, *, close: bool = True, headers: str = ""
) -> bytes:
    """An answer the server gives itself, in the API's error shape; ``headers``: extra CRLF-ended lines."""
    body = json.dumps({"title": title, "description": description}).encode()
    head = (f"HTTP/1.1 {_reason(status)}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nDate: {_date()}\r\n{headers}")
    if close:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode("latin-1") + body


def _failed(request: HttpRequest) -> bytes:
    """The 500 for an application that failed; no body after HEAD, so the connection stays in step."""
    answer = error_response(500, "Internal server error", "Unexpected error.", close=False)
    return answer[:answer.index(b"\r\n\r\n") + 4] if request.method == "HEAD" else answer


_UNAVAILABLE = "Service temporarily unavailable"
REFUSAL_RETRY_AFTER = 5  # seconds; "a few seconds", as every 503 of the API says


def refusal(reason: str) -> bytes:
    """The answer to a connection over a limit: 503 in the API's error shape, then close."""
    whom = "The server has" if reason == SERVER_FULL else "Your address has"
    return error_response(503, _UNAVAILABLE,
                          f"{whom} too many open connections. Please try again in a few seconds.",
                          headers=f"Retry-After: {REFUSAL_RETRY_AFTER}\r\n")


class HttpChannel(Channel):
    def __init__(self, server: HttpServer, reactor: Reactor, sock: Any, address: tuple[str, int]) -> None:
        super().__init__(reactor, sock, address)
        self.server = server
        self.send_timeout = server.settings.send_timeout
        self.max_buffered = server.settings.max_buffered
        self.parser = RequestParser(max_head=server.settings.max_head, max_body=server.settings.max_body)
        # A new connection owes us a request as much as a half-sent one does.
        self.request_started: float | None = time.monotonic()

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        parser.feed(data)
        while True:
            if self.buffered >= self.max_buffered:
                # PERF/NOTE: small requests can ask for large answers; answering a whole read's
                # worth at once would let one peer grow our memory a hundredfold.
                self.backlog = True
                return
            try:
                request = parser.next_request()
            except ParseError as exc:
                LOG.info("bad request from %s: %s", self.address[0], exc.reason)
                self.write(error_response(exc.status, exc.title, exc.reason))
                self.finish()
                return
            if request is None:
                if parser.started and self.request_started is None:
                    self.request_started = time.monotonic()
                if parser.wants_continue:
                    parser.continue_sent = True
                    self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return
            self.request_started = None
            self.write(self.server.respond(request, self.address))
            if not request.keep_alive:
                if request.body is None or parser.started:
                    self.finish()  # input left unread: drain it, or the reset may eat our answer
                else:
                    self.close_soon()  # PERF: all read, so close once sent, without the lingering drain
                return

    def timed_out(self, now: float) -> None:
        settings = self.server.settings
        if self.request_started is not None:
            if now - self.request_started > settings.request_timeout:
                self.write(error_response(408, "Request timeout",
                                          f"The request did not arrive within {settings.request_timeout}s."))
                self.finish()
        elif not self.buffered and now - self.last_received > settings.keepalive_timeout:
            self.close()


class HttpServer:
    """A WSGI server on its own reactor (``threads`` workers)."""

    def __init__(self, app: WsgiApp, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.reactor = Reactor("zaqar-http", settings.threads)
        limits = ConnectionLimits(settings.max_connections, settings.max_connections_per_address, refusal)
        self._listener = self.reactor.listen(settings.bind, settings.port, self._channel, limits=limits)
        host, port = self.address
        self._base = {
            "SERVER_NAME": host, "SERVER_PORT": str(port), "SCRIPT_NAME": "",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return host, port

    def _channel(self, reactor: Reactor, sock: Any, address: tuple[str, int]) -> HttpChannel:
        return HttpChannel(self, reactor, sock, address)

    def start(self) -> None:
        self.reactor.start()

    def stop(self) -> None:
        self.reactor.stop()

    # -- one request ----------------------------------------------------------------------------
    def environ(self, request: HttpRequest, address: tuple[str, int]) -> dict[str, Any]:
        path, _, query = request.target.partition("?")
        if not path.startswith("/"):  # absolute form (a proxy's request) or "*"
            parts = urllib.parse.urlsplit(request.target)
            path, query = parts.path or "/", parts.query
        env = dict(self._base)
        env["REQUEST_METHOD"] = request.method
        env["PATH_INFO"] = urllib.parse.unquote_to_bytes(path).decode("latin-1")
        env["QUERY_STRING"] = query
        env["SERVER_PROTOCOL"] = request.version
        env["REMOTE_ADDR"], env["REMOTE_PORT"] = address[0], str(address[1])
        env["wsgi.input"] = io.BytesIO(request.body or b"")
        for name, value in request.headers:
            if "_" in name:
                continue  # NOTE: X_Project_ID would pose as X-Project-ID in the environ (as nginx drops)
            if name == "content-type":
                env["CONTENT_TYPE"] = value
                continue
            if name in ("content-length", "transfer-encoding"):
                continue
            key = "HTTP_" + name.upper().replace("-", "_")
            env[key] = f"{env[key]}, {value}" if key in env else value
        if request.content_length is not None:
            env["CONTENT_LENGTH"] = str(request.content_length)
        return env

    def respond(self, request: HttpRequest, address: tuple[str, int]) -> bytes:
        """The whole response to one request, as bytes (the app's answers are small)."""
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if started and exc_info is None:
                raise AssertionError("start_response called twice without exc_info")
            started[:] = [status, headers]
            return chunks.append

        chunks: list[bytes] = []
        try:
            result = self.app(self.environ(request, address), start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:
            LOG.exception("the application failed on %s %s", request.method, request.target)
            return _failed(request)
        if not started:
            LOG.error("the application returned without starting a response")
            return _failed(request)
        try:
            return self._serialize(request, started[0], started[1], b"".join(chunks))
        except Exception:  # a status or header HTTP cannot carry, a str chunk: the app's bug, answered
            LOG.exception("the application's response to %s %s cannot be sent", request.method,
                          request.target)
            return _failed(request)

    @staticmethod
    def _serialize(request: HttpRequest, status: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
        code = int(status[:3])
        lines = [f"HTTP/1.1 {status}\r\n"]
        has_length = False
        for name, value in headers:
            if name.lower() == "content-length":
                has_length = True
            lines.append(f"{name}: {value}\r\n")
        if not has_length and code not in _NO_BODY_STATUS and code >= 200:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append(f"Date: {_date()}\r\n")
        if not request.keep_alive:
            lines.append("Connection: close\r\n")
        elif request.version == "HTTP/1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        if request.method == "HEAD" or code in _NO_BODY_STATUS:
            return head
        return head + body
