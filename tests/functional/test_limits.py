"""Abuse limits over real sockets: each refusal is the documented answer, and others are still served.

Connection limits (total and per client address) on both listeners, an
oversize HTTP body and websocket frame (answered 400, skipped unread; closed
only beyond the discard limit), a flood of empty websocket fragments, and a
request flood against the per-project rate limit. The servers run in process on free ports; a second
client address is 127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux).
"""

from __future__ import annotations

import json
import socket
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tests.conftest import FakeClock
from tests.functional.test_http_server import Reader
from tests.unit.transport.test_websocket_frames import client_frame
from zaqar.api import Api, Context, Limits
from zaqar.api.ratelimit import RateLimiter, RateLimitSettings
from zaqar.storage.sqlite import DataDriver
from zaqar.transport import websocket, wsgi
from zaqar.transport.websocket import frames

CLIENT_ID = "3381af92-2b9e-11e3-b191-71861300734c"
OTHER_ADDRESS = "127.0.0.2"
UPGRADE = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DataDriver]:
    store = DataDriver(f"sqlite:///{tmp_path}/z.sqlite")
    yield store
    store.close()


@pytest.fixture
def http_server(store: DataDriver) -> Iterator[Callable[..., wsgi.HttpServer]]:
    started: list[wsgi.HttpServer] = []

    def start(api: Api | None = None, **settings: Any) -> wsgi.HttpServer:
        app = wsgi.build_app(api or Api(Context(store=store)))
        options = wsgi.Settings(port=0, threads=4, max_body=Limits().body_cap, **settings)
        server = wsgi.HttpServer(app, options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def ws_server(store: DataDriver) -> Iterator[Callable[..., websocket.WebSocketServer]]:
    started: list[websocket.WebSocketServer] = []

    def start(api: Api | None = None, **settings: Any) -> websocket.WebSocketServer:
        server = websocket.WebSocketServer(api or Api(Context(store=store)),
                                           websocket.Settings(port=0, workers=4, **settings))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(grace=0.2)


def _connect(address: tuple[str, int], source: str = "127.0.0.1") -> tuple[socket.socket, Reader]:
    sock = socket.create_connection(address, timeout=10, source_address=(source, 0))
    _OPEN.append(sock)
    return sock, Reader(sock)


def _request(method: str, path: str, project: str = "p", body: bytes | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nClient-ID: {CLIENT_ID}\r\nX-Project-ID: {project}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


def _served(reader: Reader, sock: socket.socket, project: str = "p") -> int:
    sock.sendall(_request("GET", "/v2/queues/q/stats", project))
    return reader.response()[0]


def _assert_http_refusal(reader: Reader, sock: socket.socket, whom: str) -> None:
    sock.sendall(_request("GET", "/v2/queues/q/stats"))
    status, headers, body = reader.response()
    assert status == 503
    assert headers["connection"] == "close" and int(headers["retry-after"]) > 0
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "title": "Service temporarily unavailable",
        "description": f"{whom} too many open connections. Please try again in a few seconds.",
    }
    assert reader.closed()


def _poll(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_http_connections_beyond_the_total_get_503_and_the_open_ones_are_served(http_server):
    server = http_server(max_connections=3)
    kept = [_connect(server.address) for _ in range(3)]
    assert [_served(reader, sock) for sock, reader in kept] == [200] * 3
    _assert_http_refusal(*reversed(_connect(server.address)), whom="The server has")
    _assert_http_refusal(*reversed(_connect(server.address, OTHER_ADDRESS)), whom="The server has")
    assert [_served(reader, sock) for sock, reader in kept] == [200] * 3
    kept[0][0].close()  # frees a slot once the server has seen the close

    def admitted() -> bool:
        sock, reader = _connect(server.address)
        sock.sendall(_request("GET", "/v2/queues/q/stats"))
        return reader.response()[0] == 200

    assert _poll(admitted)


def test_http_connections_beyond_the_per_address_limit_get_503_while_other_addresses_are_served(http_server):
    server = http_server(max_connections_per_address=2)
    kept = [_connect(server.address) for _ in range(2)]
    assert [_served(reader, sock) for sock, reader in kept] == [200] * 2
    _assert_http_refusal(*reversed(_connect(server.address)), whom="Your address has")
    other, other_reader = _connect(server.address, OTHER_ADDRESS)
    assert _served(other_reader, other) == 200
    assert [_served(reader, sock) for sock, reader in kept] == [200] * 2


class Peer:
    """A websocket client on a raw socket, from a chosen source address."""

    def __init__(self, server: websocket.WebSocketServer, source: str = "127.0.0.1") -> None:
        self.sock, self.reader = _connect(server.address, source)
        self.sock.sendall(UPGRADE)
        while b"\r\n\r\n" not in self.reader.buf:
            self.reader._more()
        head, _, self.reader.buf = self.reader.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.head = head.decode("latin-1")

    def frame(self) -> tuple[int, bytes]:
        while len(self.reader.buf) < 2:
            self.reader._more()
        size, offset = self.reader.buf[1] & 0x7F, 2
        if size >= 126:
            offset = 4 if size == 126 else 10
            while len(self.reader.buf) < offset:
                self.reader._more()
            size = int.from_bytes(self.reader.buf[2:offset], "big")
        while len(self.reader.buf) < offset + size:
            self.reader._more()
        opcode, payload = self.reader.buf[0] & 0x0F, self.reader.buf[offset:offset + size]
        self.reader.buf = self.reader.buf[offset + size:]
        return opcode, payload

    def call(self, action: str, project: str = "p", **body: Any) -> dict[str, Any]:
        envelope = {"action": action, "headers": {"Client-ID": CLIENT_ID, "X-Project-ID": project},
                    "body": body}
        self.sock.sendall(client_frame(frames.OP_TEXT, json.dumps(envelope).encode()))
        opcode, payload = self.frame()
        assert opcode == frames.OP_TEXT
        return json.loads(payload)


def _assert_ws_refusal(peer: Peer, whom: str) -> None:
    assert peer.status == 503
    assert peer.head.startswith("HTTP/1.1 503 Service Unavailable")
    body = peer.reader.buf
    while b"open connections" not in body:
        peer.reader._more()
        body = peer.reader.buf
    assert body.decode() == (f"Service temporarily unavailable: {whom} too many open connections. "
                             "Please try again in a few seconds.")
    assert peer.reader.closed()


def test_websocket_upgrades_beyond_the_total_are_refused_with_503_and_open_ones_are_served(ws_server):
    server = ws_server(max_connections=2)
    kept = [Peer(server) for _ in range(2)]
    assert [p.call("ping_node")["headers"] for p in kept] == [{"status": 204}] * 2
    _assert_ws_refusal(Peer(server), "the server has")
    _assert_ws_refusal(Peer(server, OTHER_ADDRESS), "the server has")
    assert [p.call("queue_create", queue_name="q")["headers"]["status"] for p in kept] == [201, 204]
    kept[1].sock.close()
    assert _poll(lambda: Peer(server).status == 101)


def test_websocket_upgrades_beyond_the_per_address_limit_are_refused_while_other_addresses_are_served(
    ws_server,
):
    server = ws_server(max_connections_per_address=1)
    kept = Peer(server)
    assert kept.call("ping_node")["headers"] == {"status": 204}
    _assert_ws_refusal(Peer(server), "your address has")
    other = Peer(server, OTHER_ADDRESS)
    assert other.status == 101
    assert other.call("ping_node")["headers"] == {"status": 204}
    assert kept.call("ping_node")["headers"] == {"status": 204}


@pytest.mark.parametrize("path, expected", [
    ("/v2/queues/big/messages", "Message collection size is too large. Max size 262144"),
    ("/v2/queues/big/claims", "Request body is too large."),
], ids=["contract-text", "transport-cap"])
def test_an_oversize_body_is_refused_while_another_client_is_served(http_server, path, expected):
    server = http_server()
    uploader, upload_reader = _connect(server.address)
    declared = 2 * Limits().body_cap
    uploader.sendall(_request("POST", path, body=b"x" * declared)[:4096])  # declared, mostly unsent
    status, headers, body = upload_reader.response()
    assert (status, json.loads(body)["description"]) == (400, expected)
    assert headers["connection"] == "close"
    other, other_reader = _connect(server.address)
    other.sendall(_request("POST", "/v2/queues/big/messages", body=b'{"messages": [{"body": 1}]}'))
    assert other_reader.response()[0] == 201
    assert upload_reader.closed()
    other.sendall(_request("GET", "/v2/queues/big/stats"))
    assert json.loads(other_reader.response()[2])["messages"]["total"] == 1  # the oversize one left nothing


_TOO_LARGE = {"request": {"action": None, "body": {}, "headers": {}, "api": "v2"}, "headers": {"status": 400},
              "body": {"error": "Frame is too large. Max size: 1024 bytes."}}


def _reply(peer: Peer) -> dict[str, Any]:
    opcode, payload = peer.frame()
    assert opcode == frames.OP_TEXT, (opcode, payload)
    return json.loads(payload)


def test_an_oversize_websocket_frame_gets_400_and_the_connection_goes_on_while_another_peer_is_served(
    ws_server,
):
    server = ws_server(max_frame_size=1024)
    big, other = Peer(server), Peer(server)
    envelope = {"action": "message_post", "headers": {"Client-ID": CLIENT_ID, "X-Project-ID": "p"},
                "body": {"queue_name": "big", "messages": [{"body": "x" * 2048}]}}
    big.sock.sendall(client_frame(frames.OP_TEXT, json.dumps(envelope).encode()))
    assert _reply(big) == _TOO_LARGE  # websocket.md §7: 400 {"error": ...} echoing no request
    assert other.call("queue_get_stats", queue_name="big")["headers"] == {"status": 404}  # nothing stored
    assert big.call("message_post", queue_name="big", messages=[{"body": 1}])["headers"] == {"status": 201}


def _huge_frame(peer: Peer, size: int) -> None:
    """One binary frame of ``size`` zero bytes, sent in pieces (mask 0: the payload goes as it is)."""
    peer.sock.sendall(struct.pack("!BBQ", 0x82, 0xFF, size) + bytes(4))
    piece = bytes(64 * 1024)
    for _ in range(size // len(piece)):
        peer.sock.sendall(piece)
    peer.sock.sendall(bytes(size % len(piece)))


def test_an_oversize_frame_is_skipped_as_it_arrives_not_buffered(ws_server):
    server = ws_server(max_frame_size=1024)
    peer = Peer(server)
    tracemalloc.start()
    try:
        _huge_frame(peer, 12 * 1024 * 1024)  # within the 16 MiB discard limit: skipped, answered 400
        opcode, payload = peer.frame()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (opcode, msgpack.unpackb(payload)["headers"]) == (frames.OP_BINARY, {"status": 400})
    assert peak < 2 * 1024 * 1024  # the 12 MiB went by a read at a time
    assert peer.call("ping_node")["headers"] == {"status": 204}


def test_a_frame_beyond_the_discard_limit_closes_with_1009_from_its_header(ws_server):
    server = ws_server(max_frame_size=1024)
    peer, other = Peer(server), Peer(server)
    peer.sock.sendall(struct.pack("!BBQ", 0x82, 0xFF, frames.DISCARD_LIMIT + 1) + bytes(4) + bytes(1000))
    opcode, payload = peer.frame()
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (frames.OP_CLOSE, 1009)
    assert other.call("ping_node")["headers"] == {"status": 204}


def test_a_flood_of_empty_fragments_is_bounded_and_the_message_answered_400(ws_server):
    # Review 8 #6: 20 million empty continuations grew the server by 157 MB and were never answered.
    server = ws_server(max_frame_size=1024)
    peer, other = Peer(server), Peer(server)
    empty = client_frame(frames.OP_CONTINUATION, b"", fin=False)
    tracemalloc.start()
    try:
        peer.sock.sendall(client_frame(frames.OP_TEXT, b"", fin=False))
        for _ in range(20):
            peer.sock.sendall(empty * 10_000)  # 200,000 fragments, 1.2 MB of headers
        peer.sock.sendall(client_frame(frames.OP_CONTINUATION, b"{}"))
        reply = _reply(peer)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reply == _TOO_LARGE
    assert peak < 2 * 1024 * 1024
    assert other.call("ping_node")["headers"] == {"status": 204}
    assert peer.call("ping_node")["headers"] == {"status": 204}


@pytest.fixture
def limited(store: DataDriver) -> tuple[Api, FakeClock]:
    """An Api limited to 1 request/s, bursts of 5, per project, on a clock the test moves."""
    clock = FakeClock()
    limiter = RateLimiter(RateLimitSettings(rate=1.0, burst=5), clock=clock)
    return Api(Context(store=store, rate_limiter=limiter)), clock


def test_a_request_flood_gets_429_on_both_transports_while_other_projects_are_served(
    limited, http_server, ws_server
):
    api, clock = limited
    http, ws = http_server(api), ws_server(api)
    flooder, flood_reader = _connect(http.address)
    flooder.sendall(_request("GET", "/v2/queues/q/stats", "flood") * 8)  # one burst, pipelined
    answers = [flood_reader.response() for _ in range(8)]
    assert [status for status, _, _ in answers] == [200] * 5 + [429] * 3
    _, headers, body = answers[-1]
    assert headers["retry-after"] == "1"
    assert json.loads(body) == {
        "title": "Too many requests",
        "description": "This project may send 1 requests per second (bursts of 5). "
                       "Please try again in 1 second.",
    }
    peer = Peer(ws)
    refused = peer.call("queue_get_stats", "flood", queue_name="q")  # the same bucket as over HTTP
    assert refused["headers"] == {"status": 429}
    assert refused["body"] == {"exception": json.loads(body)["description"], "error": "Rate limit exceeded."}
    calm, calm_reader = _connect(http.address)
    assert _served(calm_reader, calm, "calm") == 200
    assert peer.call("queue_list", "calm")["headers"] == {"status": 200}
    clock.advance(1.0)  # one more token
    assert _served(flood_reader, flooder, "flood") == 200
    assert _served(flood_reader, flooder, "flood") == 429


def test_a_refused_request_changes_nothing(limited):
    api, _ = limited
    from zaqar.api import Request

    post = Request("message_post", project_id="flood", client_id=CLIENT_ID,
                   params={"queue_name": "q", "messages": [{"body": 1}]})
    assert [api.handle(post).status for _ in range(6)] == [201] * 5 + [429]
    stats = api.handle(Request("queue_get_stats", project_id="other", params={"queue_name": "q"}))
    assert stats.status == 200
    assert api.ctx.store.queues.stats("flood", "q").total == 5


# -- a subscriber that does not read its pushes (review) ---------------------------------------------

def test_pushes_to_a_peer_that_does_not_read_are_bounded_and_the_peer_is_closed(tmp_path):
    """Pushes come from other threads whatever the peer reads: unbounded, one client grew memory for good."""
    import base64
    import os

    from tests.functional.ws_helpers import sqlite_api
    from zaqar.transport.websocket.server import PUSH_BACKLOG

    limit = 64 * 1024
    with sqlite_api(tmp_path) as api:
        server = websocket.WebSocketServer(api, websocket.Settings(
            port=0, workers=2, max_buffered=limit, send_timeout=30.0, permessage_deflate=False))
        server.start()
        peer = socket.create_connection(("127.0.0.1", server.address[1]), timeout=10)
        try:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never reads
            key = base64.b64encode(os.urandom(16)).decode()
            peer.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            deadline = time.monotonic() + 10
            while not server._by_id:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            ((connection_id, channel),) = server._by_id.items()
            document = {"body": "x" * 10_000}
            most = 0
            for _ in range(2000):  # 20 MB of pushes
                server.push(connection_id, document)
                most = max(most, channel.buffered)
            assert most <= PUSH_BACKLOG * limit + 20_000  # at most one push past the bound
            while not channel.closing:  # the next sweep closes it (1008)
                assert time.monotonic() < deadline, "the peer that reads nothing was kept"
                time.sleep(0.05)
        finally:
            peer.close()
            server.stop(grace=0.2)


def test_websocket_connections_use_tcp_keepalive(tmp_path):
    """A peer gone without FIN or RST is found by TCP keep-alive (idle_timeout is 0 by default)."""
    from tests.functional.ws_helpers import serve, sqlite_api
    from zaqar.transport.websocket.connection import KEEPALIVE_IDLE

    with sqlite_api(tmp_path) as api:
        server = serve(api)
        peer = socket.create_connection(("127.0.0.1", server.address[1]), timeout=10)
        try:
            deadline = time.monotonic() + 10
            while not server.reactor.channels():
                assert time.monotonic() < deadline
                time.sleep(0.01)
            (channel,) = server.reactor.channels()
            assert channel.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert channel.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE
        finally:
            peer.close()
            server.stop(grace=0.2)
