"""The websocket listener in process over real sockets: framing rules, closes and slow peers."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.functional.ws_helpers import serve, sqlite_api
from tests.unit.transport.test_websocket_frames import client_frame
from zaqar.api import Api
from zaqar.transport.websocket import WebSocketServer, frames

HEADERS = {"Client-ID": "3381af92-2b9e-11e3-b191-71861300734c", "X-Project-ID": "p"}


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    with sqlite_api(tmp_path) as made:
        yield made


@pytest.fixture
def server(api) -> Iterator[WebSocketServer]:
    srv = serve(api)
    yield srv
    srv.stop(grace=0.5)


_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_peers() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


class Peer:
    """A websocket client written out by hand, so tests control every byte."""

    def __init__(self, server: WebSocketServer) -> None:
        self.sock = socket.create_connection(server.address, timeout=10)
        _OPEN.append(self.sock)
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def frame(self) -> tuple[int, bytes]:
        while len(self.buf) < 2:
            self._more()
        size, offset = self.buf[1] & 0x7F, 2
        if size == 126:
            while len(self.buf) < 4:
                self._more()
            size, offset = struct.unpack("!H", self.buf[2:4])[0], 4
        elif size == 127:
            while len(self.buf) < 10:
                self._more()
            size, offset = struct.unpack("!Q", self.buf[2:10])[0], 10
        while len(self.buf) < offset + size:
            self._more()
        opcode, payload = self.buf[0] & 0x0F, self.buf[offset:offset + size]
        self.buf = self.buf[offset + size:]
        return opcode, payload

    def call(self, action: str, body: dict | None = None) -> dict:
        self.sock.sendall(client_frame(frames.OP_TEXT, json.dumps(
            {"action": action, "headers": HEADERS, "body": body or {}}).encode()))
        opcode, payload = self.frame()
        assert opcode == frames.OP_TEXT
        return json.loads(payload)

    def close_code(self) -> int:
        opcode, payload = self.frame()
        assert opcode == frames.OP_CLOSE
        return struct.unpack("!H", payload[:2])[0]


def test_a_fragmented_request_is_answered_once_whole(server):
    peer = Peer(server)
    data = json.dumps({"action": "queue_create", "headers": HEADERS, "body": {"queue_name": "frag"}}).encode()
    peer.sock.sendall(client_frame(frames.OP_TEXT, data[:10], fin=False)
                      + client_frame(frames.OP_PING, b"mid")
                      + client_frame(frames.OP_CONTINUATION, data[10:]))
    assert peer.frame() == (frames.OP_PONG, b"mid")
    opcode, payload = peer.frame()
    assert json.loads(payload)["headers"] == {"status": 201}
    peer.sock.close()


def test_text_that_is_not_utf8_gets_400_and_the_connection_stays_open(server):
    peer = Peer(server)
    peer.sock.sendall(client_frame(frames.OP_TEXT, b'{"action": "\xff"}'))
    reply = json.loads(peer.frame()[1])
    assert reply["headers"] == {"status": 400}
    assert "Can't decode text (JSON) request" in reply["body"]["error"]
    assert peer.call("ping_node")["headers"] == {"status": 204}
    peer.sock.close()


@pytest.mark.parametrize("data", [client_frame(frames.OP_TEXT, b"{}", masked=False),
                                  client_frame(0x3, b"{}")], ids=["unmasked", "unknown-opcode"])
def test_a_framing_violation_closes_with_1002_and_others_are_unaffected(server, data):
    peer, other = Peer(server), Peer(server)
    peer.sock.sendall(data)
    assert peer.close_code() == 1002
    assert other.call("ping_node")["headers"] == {"status": 204}
    peer.sock.close()
    other.sock.close()


def test_the_closing_handshake_echoes_the_peers_code(server):
    peer = Peer(server)
    peer.sock.sendall(client_frame(frames.OP_CLOSE, struct.pack("!H", 1000) + b"done"))
    assert peer.close_code() == 1000
    peer.sock.settimeout(5)
    assert peer.sock.recv(10) == b""  # and the server ends the connection
    peer.sock.close()


def test_a_peer_that_never_reads_has_a_bounded_backlog_and_is_dropped(api):
    server = serve(api, send_timeout=1.0, max_buffered=64 * 1024)
    try:
        peer = Peer(server)
        peer.call("message_post", {"queue_name": "wide", "messages": [{"body": "x" * 20_000}] * 5})
        listing = {"action": "message_list", "headers": HEADERS, "body": {"queue_name": "wide", "echo": True}}
        request = client_frame(frames.OP_TEXT, json.dumps(listing).encode())
        stop = threading.Event()
        biggest = []

        def flood() -> None:
            try:
                while not stop.is_set():
                    peer.sock.sendall(request * 50)
            except OSError:
                return

        writer = threading.Thread(target=flood, daemon=True)
        writer.start()
        deadline = time.monotonic() + 10
        while writer.is_alive() and time.monotonic() < deadline:
            biggest.append(max((c.buffered for c in server.reactor.channels()), default=0))
            time.sleep(0.02)
        stop.set()
        assert not writer.is_alive(), "the peer was never dropped"
        assert max(biggest) < 64 * 1024 + 200_000  # at most one reply beyond the cap
        assert Peer(server).call("ping_node")["headers"] == {"status": 204}
    finally:
        server.stop(grace=0.5)


def test_a_push_reaches_the_connection_that_subscribed(server):
    peer = Peer(server)
    created = peer.call("subscription_create", {"queue_name": "pushed", "ttl": 600})
    assert created["headers"] == {"status": 201}
    (connection_id,) = [c.id for c in server.reactor.channels()]
    assert server.push(connection_id, {"body": "hello", "queue_name": "pushed"})
    assert json.loads(peer.frame()[1]) == {"body": "hello", "queue_name": "pushed"}
    assert not server.push("no-such-connection", {"body": "lost"})
    peer.sock.close()


def test_stopping_closes_open_connections_with_1001(api):
    server = serve(api)
    peer = Peer(server)
    assert peer.call("ping_node")["headers"] == {"status": 204}
    server.stop(grace=1.0)
    assert peer.close_code() == 1001
    peer.sock.close()
