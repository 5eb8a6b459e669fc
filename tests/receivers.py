"""Local endpoints that notifications are delivered to in tests (and the notification benchmark).

``HttpReceiver``  a webhook: records every POST (path, headers, body, the status it
                  answered, the arrival time) and answers a scripted sequence of
                  statuses, then ``default_status``.
``Blackhole``     accepts TCP connections, reads what they send and never answers:
                  a webhook endpoint that hangs.
``SmtpSink``      a minimal SMTP server that records each mail (envelope and parsed message).

Each listens on 127.0.0.1 on a free port, serves from its own threads, and is
a context manager; ``close()`` also drops the connections it holds, so a
client stuck on a blackhole fails at once instead of waiting for its timeout.
Waiting is always bounded: ``wait_for(count, timeout)`` returns as soon as
there are ``count`` records and raises AssertionError (listing what did
arrive) at the deadline.
"""

from __future__ import annotations

import collections
import dataclasses
import email
import email.message
import email.policy
import json
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Log(Generic[T]):
    """Records appended by server threads, and bounded waits for them."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._items: list[T] = []
        self._cond = threading.Condition()

    def append(self, item: T) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def snapshot(self, keep: Callable[[T], bool] = lambda item: True) -> list[T]:
        with self._cond:
            return [item for item in self._items if keep(item)]

    def wait_for(self, count: int, timeout: float, keep: Callable[[T], bool] = lambda item: True) -> list[T]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [item for item in self._items if keep(item)]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    break
                self._cond.wait(left)
        if len(found) < count:
            got = f"got {len(found)}: {found}"
            raise AssertionError(f"expected {count} {self._what} within {timeout}s, {got}")
        return found


@dataclasses.dataclass(frozen=True)
class Post:
    """One POST as the receiver saw it."""

    path: str
    headers: dict[str, str]  # names as sent
    body: bytes
    status: int  # what the receiver answered
    at: float  # time.monotonic() when the body had been read

    def json(self) -> Any:
        return json.loads(self.body)


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ReceiverServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = self.headers.get("Content-Length")
        if length is None:
            self._answer(411)
            return
        body = self.rfile.read(int(length))
        at = time.monotonic()
        owner = self.server.owner
        status = owner.next_status()
        owner.posts.append(Post(self.path, dict(self.headers.items()), body, status, at))
        self._answer(status)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(405)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass


class _ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: HttpReceiver


class HttpReceiver:
    """A webhook endpoint at ``url`` (any path is accepted and recorded in ``Post.path``).

    ``statuses`` are answered to the first POSTs, in order, whatever their path;
    every later POST gets ``default_status``. ``script()`` queues more.
    """

    def __init__(self, statuses: Iterable[int] = (), default_status: int = 200) -> None:
        self.posts: _Log[Post] = _Log("POSTs")
        self._script = collections.deque(statuses)
        self._default = default_status
        self._lock = threading.Lock()
        self._server = _ReceiverServer(("127.0.0.1", 0), _HttpHandler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="test-http-receiver", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *statuses: int) -> None:
        with self._lock:
            self._script.extend(statuses)

    def next_status(self) -> int:
        with self._lock:
            return self._script.popleft() if self._script else self._default

    def received(self, path: str | None = None, *, delivered_only: bool = True) -> list[Post]:
        return self.posts.snapshot(_matcher(path, delivered_only))

    def wait_for(self, count: int, timeout: float = 10.0, path: str | None = None, *,
                 delivered_only: bool = True) -> list[Post]:
        """At least ``count`` POSTs (to ``path``, if given; answered 2xx unless ``delivered_only`` is off)."""
        return self.posts.wait_for(count, timeout, _matcher(path, delivered_only))

    def assert_quiet(self, count: int, settle: float = 0.5, path: str | None = None, *,
                     delivered_only: bool = False) -> None:
        """Still exactly ``count`` POSTs after ``settle`` more seconds: nothing late or repeated."""
        time.sleep(settle)
        got = self.received(path, delivered_only=delivered_only)
        assert len(got) == count, f"expected exactly {count} POSTs to {path or 'any path'}, got {got}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HttpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _matcher(path: str | None, delivered_only: bool) -> Callable[[Post], bool]:
    def keep(post: Post) -> bool:
        return (path is None or post.path == path) and (not delivered_only or 200 <= post.status < 300)

    return keep


class Blackhole:
    """Accepts connections and reads requests but never answers; ``close()`` resets them all."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._accepted = 0
        self._requests = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="test-blackhole", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._accepted

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    @property
    def requests(self) -> int:
        """HTTP request lines read so far (each left unanswered)."""
        with self._lock:
            return self._requests

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.requests < count:
            assert time.monotonic() < deadline, f"blackhole saw {self.requests} requests, expected {count}"
            time.sleep(0.01)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                if key.fileobj is self._listener:
                    self._accept()
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        with self._lock:
            self._accepted += 1
            self._open.add(conn)
        self._selector.register(conn, selectors.EVENT_READ)

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        with self._lock:
            if data:
                self._requests += data.count(b" HTTP/1.")
                return
            self._open.discard(conn)
        self._selector.unregister(conn)
        conn.close()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self._selector.close()
        self._listener.close()

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class Mail:
    sender: str  # MAIL FROM
    recipients: list[str]  # RCPT TO, in order
    message: email.message.EmailMessage

    @property
    def text(self) -> str:
        return str(self.message.get_content())


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: _SmtpServer

    def _say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self._say("220 sink ESMTP test sink")
        sender, recipients = "", []
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb in ("HELO", "EHLO"):
                self._say("250 sink")
            elif verb == "MAIL":
                sender, recipients = _address(line), []
                self._say("250 OK")
            elif verb == "RCPT":
                recipients.append(_address(line))
                self._say("250 OK")
            elif verb == "DATA":
                self._say("354 End data with <CR><LF>.<CR><LF>")
                message = email.message_from_bytes(self._data(), policy=email.policy.default)
                self.server.owner.mails.append(Mail(sender, recipients, message))  # type: ignore[arg-type]
                self._say("250 OK queued")
            elif verb in ("RSET", "NOOP"):
                self._say("250 OK")
            elif verb == "QUIT":
                self._say("221 Bye")
                return
            else:
                self._say("502 Command not implemented")

    def _data(self) -> bytes:
        lines = []
        while True:
            raw = self.rfile.readline(1 << 20)
            if not raw or raw in (b".\r\n", b".\n"):
                return b"".join(lines)
            lines.append(raw[1:] if raw.startswith(b"..") else raw)


def _address(line: str) -> str:
    _, _, rest = line.partition(":")
    return rest.strip().split(" ")[0].strip("<>")


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: SmtpSink


class SmtpSink:
    """Accepts every mail on ``host``:``port`` and records it in ``mails``."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.mails: _Log[Mail] = _Log("mails")
        self._server = _SmtpServer((self.host, 0), _SmtpHandler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="test-smtp-sink", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Mail]:
        return self.mails.wait_for(count, timeout)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SmtpSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
