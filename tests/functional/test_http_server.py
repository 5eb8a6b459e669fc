"""The built-in HTTP/1.1 server over real sockets: framing, keep-alive, limits and slow peers.

The server runs in process on a free port (no ``zaqar-server`` subprocess),
serving either the real zaqar app on a SQLite store or a small WSGI app that
shows what an application receives.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from zaqar.api import Api, Context, Limits
from zaqar.storage.sqlite import DataDriver
from zaqar.transport.wsgi import HttpServer, Settings, build_app

CLIENT = b"Client-ID: 3381af92-2b9e-11e3-b191-71861300734c\r\nX-Project-ID: p\r\n"


def _echo_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers with what a WSGI application sees of the request."""
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("application bug")
    if environ["PATH_INFO"] == "/uni":  # a header HTTP/1.1 cannot carry (not Latin-1)
        start_response("200 OK", [("X-A", "\u20ac"), ("Content-Length", "0")])
        return [b""]
    seen = {key: value for key, value in environ.items() if key.isupper()}
    seen["body"] = environ["wsgi.input"].read().decode("latin-1")
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def zaqar_app(tmp_path) -> Iterator[Any]:
    store = DataDriver(f"sqlite:///{tmp_path}/z.sqlite")
    yield build_app(Api(Context(store=store)))
    store.close()


def _serve(app: Any, **settings: Any) -> HttpServer:
    server = HttpServer(app, Settings(port=0, threads=4, max_body=Limits().body_cap, **settings))
    server.start()
    return server


@pytest.fixture
def server(zaqar_app) -> Iterator[HttpServer]:
    srv = _serve(zaqar_app, request_timeout=0.6, keepalive_timeout=0.6, send_timeout=1.0)
    yield srv
    srv.stop()


@pytest.fixture
def echo() -> Iterator[HttpServer]:
    srv = _serve(_echo_app)
    yield srv
    srv.stop()


class Reader:
    """Reads responses off a raw socket, one at a time (Content-Length framed)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(lines[0].split(" ")[1]), headers, body

    def closed(self, timeout: float = 5.0) -> bool:
        """Whether the server ends the connection (EOF or reset) within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += chunk


def _connect(server: HttpServer) -> tuple[socket.socket, Reader]:
    sock = socket.create_connection(server.address, timeout=10)
    return sock, Reader(sock)


def _post(queue: str, body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST /v2/queues/%s/messages HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            % queue.encode() + CLIENT + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def _stats(queue: str) -> bytes:
    return b"GET /v2/queues/%s/stats HTTP/1.1\r\nHost: t\r\n" % queue.encode() + CLIENT + b"\r\n"


MESSAGE = b'{"messages": [{"body": {"n": 1}, "ttl": 300}]}'


def test_pipelined_requests_are_answered_in_order_on_one_connection(server):
    sock, reader = _connect(server)
    sock.sendall(_post("a", MESSAGE) * 5 + _stats("a") + _post("a", b"{") + _stats("a"))
    statuses = [reader.response()[0] for _ in range(8)]
    assert statuses == [201] * 5 + [200, 400, 200]
    sock.sendall(_stats("a"))
    status, _, body = reader.response()
    assert (status, json.loads(body)["messages"]["total"]) == (200, 5)
    sock.close()


def test_expect_100_continue_gets_an_interim_answer_before_the_body(server):
    sock, reader = _connect(server)
    sock.sendall(_post("b", MESSAGE, b"Expect: 100-continue\r\n").replace(MESSAGE, b""))
    assert reader.response()[0] == 100
    sock.sendall(MESSAGE)
    assert reader.response()[0] == 201
    sock.close()


def test_a_chunked_body_is_accepted(server):
    sock, reader = _connect(server)
    head = (b"POST /v2/queues/c/messages HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + CLIENT
            + b"Transfer-Encoding: chunked\r\n\r\n")
    parts = (MESSAGE[:10], MESSAGE[10:])
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
    sock.sendall(head + chunks + _stats("c"))
    assert reader.response()[0] == 201
    assert json.loads(reader.response()[2])["messages"]["total"] == 1
    sock.close()


def test_an_oversize_body_is_answered_from_its_size_and_the_connection_closes(server):
    sock, reader = _connect(server)
    sock.sendall(_post("d", b"x" * 1_000_000)[:2000])  # declares 1 MB, sends a part of it
    status, headers, body = reader.response()
    assert status == 400
    assert "too large" in json.loads(body)["description"]
    assert headers["connection"] == "close"
    assert reader.closed()
    other, other_reader = _connect(server)
    other.sendall(_stats("d"))
    assert json.loads(other_reader.response()[2])["messages"]["total"] == 0  # nothing of it was stored
    sock.close()
    other.close()


def test_a_request_that_never_completes_gets_408_and_others_are_served_meanwhile(server):
    slow, slow_reader = _connect(server)
    slow.sendall(b"POST /v2/queues/e/messages HTTP/1.1\r\nHost: t\r\n")
    quick, quick_reader = _connect(server)
    quick.sendall(_post("e", MESSAGE))
    assert quick_reader.response()[0] == 201
    status, _, body = slow_reader.response()
    assert status == 408
    assert json.loads(body)["title"] == "Request timeout"
    assert slow_reader.closed()
    slow.close()
    quick.close()


def test_a_connection_that_sends_nothing_is_closed():
    srv = _serve(_echo_app, request_timeout=0.3)
    try:
        sock, reader = _connect(srv)
        assert reader.response()[0] == 408
        assert reader.closed()
        sock.close()
    finally:
        srv.stop()


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(server):
    sock, reader = _connect(server)
    sock.sendall(_stats("f"))
    assert reader.response()[0] == 200
    started = time.monotonic()
    assert reader.closed(timeout=5)
    assert time.monotonic() - started >= 0.5
    sock.close()


def test_a_peer_that_never_reads_is_dropped_and_delays_nobody(zaqar_app):
    server = _serve(zaqar_app, send_timeout=1.0, max_buffered=64 * 1024)
    hog = socket.create_connection(server.address)
    stop = threading.Event()

    def flood() -> None:
        request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 100  # the home document: a large answer
        try:
            while not stop.is_set():
                hog.sendall(request)
        except OSError:
            return  # dropped by the server: what this test waits for

    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    time.sleep(0.3)
    sock, reader = _connect(server)
    sock.sendall(_stats("g"))
    assert reader.response()[0] == 200
    writer.join(timeout=10)
    stop.set()
    assert not writer.is_alive(), "the server kept a peer that left its responses unread"
    hog.close()
    sock.close()
    server.stop()


@pytest.mark.parametrize("request_bytes, status", [
    (b"NOT A REQUEST\r\n\r\n", 400),
    (b"GET /v2 HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET /v2 HTTP/3.0\r\n\r\n", 505),
    (b"GET /v2 HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
])
def test_unreadable_requests_get_a_json_error_and_the_connection_closes(server, request_bytes, status):
    sock, reader = _connect(server)
    sock.sendall(request_bytes)
    got, headers, body = reader.response()
    assert got == status
    assert headers["content-type"] == "application/json"
    assert set(json.loads(body)) == {"title", "description"}
    assert reader.closed()
    sock.close()


def test_head_answers_headers_only(echo):
    sock, reader = _connect(echo)
    sock.sendall(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\nGET /y HTTP/1.1\r\nHost: t\r\n\r\n")
    while reader.buf.count(b"\r\n\r\n") < 2:
        reader._more()
    head, _, rest = reader.buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 0" not in head
    assert rest.startswith(b"HTTP/1.1 200")  # no body after the HEAD answer
    sock.close()


def test_what_the_application_receives(echo):
    sock, reader = _connect(echo)
    sock.sendall(b"POST /a%20b?x=1&y=%20 HTTP/1.1\r\nHost: h\r\nX-Roles: a\r\nX-Roles: b\r\n"
                 b"X_Project_ID: spoofed\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc")
    status, _, body = reader.response()
    seen = json.loads(body)
    assert status == 200
    assert (seen["PATH_INFO"], seen["QUERY_STRING"], seen["REQUEST_METHOD"]) == ("/a b", "x=1&y=%20", "POST")
    assert (seen["CONTENT_TYPE"], seen["CONTENT_LENGTH"], seen["body"]) == ("text/plain", "3", "abc")
    assert seen["HTTP_X_ROLES"] == "a, b"
    assert "HTTP_X_PROJECT_ID" not in seen
    sock.close()


def test_an_application_failure_is_a_500_and_the_connection_lives_on(echo):
    sock, reader = _connect(echo)
    sock.sendall(b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\nGET /fine HTTP/1.1\r\nHost: h\r\n\r\n")
    status, _, body = reader.response()
    assert (status, json.loads(body)["title"]) == (500, "Internal server error")
    assert reader.response()[0] == 200
    sock.close()


def _two_heads(sock: socket.socket) -> bytes:
    """Raw bytes until two response heads arrived (no body framing assumed after a HEAD)."""
    data = b""
    while data.count(b"\r\n\r\n") < 2:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_a_failure_answering_head_carries_no_body_and_the_next_response_follows(echo):
    """Review: the 500 carried its JSON after a HEAD, read as the start of the next response."""
    sock, _ = _connect(echo)
    sock.sendall(b"HEAD /boom HTTP/1.1\r\nHost: h\r\n\r\nGET /fine HTTP/1.1\r\nHost: h\r\n\r\n")
    first, _, rest = _two_heads(sock).partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 500 ")
    assert rest.startswith(b"HTTP/1.1 200 ")
    sock.close()


def test_a_response_http_cannot_carry_is_a_500_not_a_dropped_connection(echo):
    sock, reader = _connect(echo)
    sock.sendall(b"GET /uni HTTP/1.1\r\nHost: h\r\n\r\nGET /fine HTTP/1.1\r\nHost: h\r\n\r\n")
    assert reader.response()[0] == 500
    assert reader.response()[0] == 200
    sock.close()


def test_http_1_0_closes_unless_asked_to_keep_alive(echo):
    sock, reader = _connect(echo)
    sock.sendall(b"GET /x HTTP/1.0\r\n\r\n")
    assert reader.response()[0] == 200
    assert reader.closed()
    sock.close()
    sock, reader = _connect(echo)
    sock.sendall(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
    assert [reader.response()[1]["connection"] for _ in range(2)] == ["keep-alive", "keep-alive"]
    sock.close()


def test_three_hundred_connections_at_once_are_all_served(zaqar_app):
    server = _serve(zaqar_app)
    socks = [_connect(server) for _ in range(300)]
    for index, (sock, _) in enumerate(socks):
        sock.sendall(_post(f"m{index % 7}", MESSAGE))
    assert [reader.response()[0] for _, reader in socks] == [201] * 300
    for sock, _ in socks:
        sock.close()
    server.stop()


def test_connections_that_send_as_they_connect_are_each_answered_once(zaqar_app):
    # A burst of short-lived clients (Connection: close), as scripts and curl send: none lost, none twice.
    server = _serve(zaqar_app)
    statuses: list[int] = []

    def one(index: int) -> None:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(_post("burst", MESSAGE, b"Connection: close\r\n"))
            reader = Reader(sock)
            statuses.append(reader.response()[0])
            assert reader.closed()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sock, reader = _connect(server)
    sock.sendall(_stats("burst"))
    status, _, body = reader.response()
    sock.close()
    server.stop()
    assert statuses == [201] * 60
    assert (status, json.loads(body)["messages"]["total"]) == (200, 60)
