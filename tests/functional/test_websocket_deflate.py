"""permessage-deflate over real sockets: negotiation, compressed replies and pushes, the limits.

The client is written out here with zlib (websocket-client, which the other
websocket tests use, never offers the extension), so these tests see every
frame's RSV1 bit and the server is checked against RFC 7692, not against itself.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import zlib
from collections.abc import Iterator

import msgpack
import pytest
import websocket

from tests.functional.ws_helpers import serve, sqlite_api
from tests.server import running_server
from tests.unit.transport.test_websocket_frames import client_frame
from zaqar import bootstrap, conf
from zaqar.api import Api
from zaqar.transport.websocket import WebSocketServer, frames


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    with sqlite_api(tmp_path) as made:
        yield made


HEADERS = {"Client-ID": "3381af92-2b9e-11e3-b191-71861300734c", "X-Project-ID": "deflate"}
TAIL = b"\x00\x00\xff\xff"
BROWSER_OFFER = "permessage-deflate; client_max_window_bits"




@pytest.fixture
def server(api) -> Iterator[WebSocketServer]:
    srv = serve(api)
    yield srv
    srv.stop(grace=0.5)


class DeflatePeer:
    """A websocket client that offers ``offer`` and, when the server agrees, compresses like a browser."""

    def __init__(self, address: tuple[str, int], offer: str | None = BROWSER_OFFER) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        extensions = f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else ""
        self.sock.sendall(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                           f"{extensions}\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        found = re.search(rb"(?im)^Sec-WebSocket-Extensions: (.*)\r?$", head)
        self.agreed = found[1].decode().strip() if found else None
        bits = re.search(r"client_max_window_bits=(\d+)", self.agreed or "")
        self.compressor = zlib.compressobj(6, zlib.DEFLATED, -int(bits[1]) if bits else -15)
        self.inflater = zlib.decompressobj(-15)
        self.rsv1: list[bool] = []  # of every data frame received, in order

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def _frame(self) -> tuple[int, int, bytes]:
        while len(self.buf) < 2:
            self._more()
        size, offset = self.buf[1] & 0x7F, 2
        if size >= 126:
            offset = 4 if size == 126 else 10
            while len(self.buf) < offset:
                self._more()
            size = int.from_bytes(self.buf[2:offset], "big")
        while len(self.buf) < offset + size:
            self._more()
        first, payload = self.buf[0], self.buf[offset:offset + size]
        self.buf = self.buf[offset + size:]
        return first, first & 0x0F, payload

    def receive(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame, inflated when it has RSV1."""
        first, opcode, payload = self._frame()
        if opcode in (frames.OP_TEXT, frames.OP_BINARY):
            self.rsv1.append(bool(first & 0x40))
            if first & 0x40:
                payload = self.inflater.decompress(payload + TAIL)
        else:
            assert not first & 0x70, "control frames never carry reserved bits"
        return opcode, payload

    def send(self, payload: bytes, binary: bool = False, compress: bool = True) -> None:
        opcode = frames.OP_BINARY if binary else frames.OP_TEXT
        if not (compress and self.agreed):
            self.sock.sendall(client_frame(opcode, payload))
            return
        data = self.compressor.compress(payload) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(client_frame(opcode, data[:-4], rsv=0x40))

    def call(self, action: str, body: dict | None = None, binary: bool = False) -> dict:
        document = {"action": action, "headers": HEADERS, "body": body or {}}
        self.send(msgpack.packb(document) if binary else json.dumps(document).encode(), binary)
        opcode, payload = self.receive()
        assert opcode == (frames.OP_BINARY if binary else frames.OP_TEXT)
        return msgpack.unpackb(payload) if binary else json.loads(payload)

    def close_code(self) -> int:
        opcode, payload = self.receive()
        assert opcode == frames.OP_CLOSE
        return int(struct.unpack("!H", payload[:2])[0])

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def peers() -> Iterator[list[DeflatePeer]]:
    opened: list[DeflatePeer] = []
    yield opened
    for peer in opened:
        peer.close()


def _peer(peers: list[DeflatePeer], server: WebSocketServer,
          offer: str | None = BROWSER_OFFER) -> DeflatePeer:
    peer = DeflatePeer(server.address, offer)
    peers.append(peer)
    return peer


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
def test_a_browser_offer_gets_compressed_replies_in_both_encodings(server, peers, binary):
    peer = _peer(peers, server)
    assert peer.agreed == "permessage-deflate; client_max_window_bits=12"
    for i in range(5):
        message = {"body": {"i": i, "t": "x" * 80}}
        reply = peer.call("message_post", {"queue_name": "z", "messages": [message]}, binary)
        assert reply["headers"] == {"status": 201}
        assert reply["request"]["body"]["messages"][0]["body"]["i"] == i
    listed = peer.call("message_list", {"queue_name": "z", "echo": True}, binary)
    assert [m["body"]["i"] for m in listed["body"]["messages"]] == list(range(5))
    assert peer.rsv1 == [True] * 6


def test_uncompressed_requests_are_still_answered_on_a_deflate_connection(server, peers):
    peer = _peer(peers, server)
    peer.send(json.dumps({"action": "queue_list", "headers": HEADERS, "body": {}}).encode(), compress=False)
    assert json.loads(peer.receive()[1])["headers"] == {"status": 200}


def test_small_messages_go_uncompressed_each_decided_on_its_own(server, peers):
    peer = _peer(peers, server)
    assert peer.call("subscription_create", {"queue_name": "tiny", "ttl": 600})["headers"] == {"status": 201}
    connection = server_connection(server)
    assert server.push(connection, {"n": 1})  # a few bytes: not worth deflating
    assert json.loads(peer.receive()[1]) == {"n": 1}
    assert server.push(connection, {"n": 2, "text": "y" * 200})
    assert json.loads(peer.receive()[1]) == {"n": 2, "text": "y" * 200}
    assert peer.rsv1 == [True, False, True]


def server_connection(server: WebSocketServer) -> str:
    """The id of the server's only open connection."""
    (channel,) = [c for c in server.reactor.channels() if getattr(c, "id", None)]
    return str(channel.id)


def test_pushes_from_other_threads_interleave_with_replies_and_all_inflate(server, peers):
    # Context takeover both ways: one push compressed and queued out of order with a reply would
    # make the client inflate garbage or fail, so every document below is checked whole.
    peer = _peer(peers, server)
    peer.call("subscription_create", {"queue_name": "busy", "ttl": 600})
    connection = server_connection(server)
    pushes, requests = 500, 300
    start = threading.Barrier(3)

    def push(worker: int) -> None:
        start.wait()
        for n in range(pushes):
            assert server.push(connection, {"worker": worker, "n": n, "pad": "p" * (n % 150)})

    threads = [threading.Thread(target=push, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    start.wait()
    received: dict[int, list[int]] = {0: [], 1: []}
    for i in range(requests):
        document = {"action": "queue_get_stats", "headers": HEADERS, "body": {"queue_name": "busy", "i": i}}
        peer.send(json.dumps(document).encode())
        while True:
            doc = json.loads(peer.receive()[1])
            if "request" not in doc:
                assert doc["pad"] == "p" * (doc["n"] % 150)
                received[doc["worker"]].append(doc["n"])
                continue
            assert doc["request"]["body"]["i"] == i
            break
    for t in threads:
        t.join()
    while len(received[0]) + len(received[1]) < 2 * pushes:
        doc = json.loads(peer.receive()[1])
        received[doc["worker"]].append(doc["n"])
    assert received == {0: list(range(pushes)), 1: list(range(pushes))}  # each thread's, in its order


@pytest.mark.parametrize("offer, agreed", [
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    ("permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
     "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"),
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate", "permessage-deflate"),
])
def test_negotiated_parameters_are_kept_for_the_whole_connection(server, peers, offer, agreed):
    peer = _peer(peers, server, offer)
    assert peer.agreed == agreed
    for i in range(4):
        if "server_no_context_takeover" in agreed:
            peer.inflater = zlib.decompressobj(-15)  # each reply must inflate on its own
        if "client_no_context_takeover" in agreed:
            peer.compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        reply = peer.call("queue_create", {"queue_name": f"kept-{i}", "metadata": {"pad": "m" * 300}})
        assert reply["headers"] == {"status": 201}


@pytest.mark.parametrize("offer", [None, "permessage-deflate; mystery", "x-webkit-deflate-frame"])
def test_without_an_acceptable_offer_the_connection_is_plain_and_rsv1_is_refused(server, peers, offer):
    peer = _peer(peers, server, offer)
    assert peer.agreed is None
    assert peer.call("queue_list")["headers"] == {"status": 200}
    assert peer.rsv1 == [False]
    peer.sock.sendall(client_frame(frames.OP_TEXT, b"\x4b\x04\x00", rsv=0x40))
    assert peer.close_code() == 1002


@pytest.mark.parametrize("text, enabled", [
    ("", True), ("[drivers:transport:websocket]\npermessage_deflate = false\n", False),
], ids=["default", "off"])
def test_the_config_switch_reaches_the_listener(tmp_path, text, enabled):
    (tmp_path / "zaqar.conf").write_text(text)
    loaded = conf.load([], config_files=[str(tmp_path / "zaqar.conf")])
    assert bootstrap.websocket_settings(loaded, bootstrap.limits_from(loaded)).permessage_deflate is enabled


def test_deflate_can_be_switched_off(api, peers):
    server = serve(api, permessage_deflate=False)
    try:
        peer = _peer(peers, server)
        assert peer.agreed is None
        assert peer.call("ping_node")["headers"] == {"status": 204}
    finally:
        server.stop(grace=0.5)


def test_a_deflate_bomb_closes_with_1009_and_others_are_unaffected(api, peers):
    server = serve(api, max_frame_size=64 * 1024)
    try:
        peer, other = _peer(peers, server), _peer(peers, server)
        bomb = zlib.compressobj(9, zlib.DEFLATED, -12)
        data = bomb.compress(bytes(20_000_000)) + bomb.flush(zlib.Z_SYNC_FLUSH)
        assert len(data) < 64 * 1024
        peer.sock.sendall(client_frame(frames.OP_BINARY, data[:-4], rsv=0x40))
        assert peer.close_code() == 1009
        assert other.call("ping_node")["headers"] == {"status": 204}
    finally:
        server.stop(grace=0.5)


@pytest.mark.parametrize("data", [
    client_frame(frames.OP_PING, b"p", rsv=0x40),
    client_frame(frames.OP_TEXT, b"\x4b", fin=False, rsv=0x40) + client_frame(frames.OP_CONTINUATION, b"\x04",
                                                                              rsv=0x40),
], ids=["rsv1-on-ping", "rsv1-on-continuation"])
def test_rsv1_outside_a_first_data_frame_closes_with_1002(server, peers, data):
    peer = _peer(peers, server)
    peer.sock.sendall(data)
    assert peer.close_code() == 1002


def test_undecodable_compressed_data_closes_with_1007(server, peers):
    peer = _peer(peers, server)
    peer.sock.sendall(client_frame(frames.OP_TEXT, b"\xff\xff\xff", rsv=0x40))
    assert peer.close_code() == 1007


def test_a_fragmented_compressed_request_is_answered(server, peers):
    peer = _peer(peers, server)
    document = json.dumps({"action": "queue_create", "headers": HEADERS, "body": {"queue_name": "frag"}})
    data = peer.compressor.compress(document.encode()) + peer.compressor.flush(zlib.Z_SYNC_FLUSH)
    peer.sock.sendall(client_frame(frames.OP_TEXT, data[:6], fin=False, rsv=0x40)
                      + client_frame(frames.OP_PING, b"mid")
                      + client_frame(frames.OP_CONTINUATION, data[6:-4]))
    assert peer.receive() == (frames.OP_PONG, b"mid")
    assert json.loads(peer.receive()[1])["headers"] == {"status": 201}


# -- a real zaqar-server --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_server_compresses_replies_and_notifications_and_plain_clients_still_work(tmp_path):
    with running_server(tmp_path) as srv:
        host, port = srv.ws_url.removeprefix("ws://").rstrip("/").split(":")
        peer = DeflatePeer((host, int(port)))
        plain = websocket.create_connection(srv.ws_url, timeout=10)  # offers nothing
        try:
            assert peer.agreed == "permessage-deflate; client_max_window_bits=12"
            assert peer.call("subscription_create", {"queue_name": "real", "ttl": 600}, True)["headers"] == {
                "status": 201}
            bodies = [{"n": n, "text": "grüße " * 20} for n in range(5)]
            messages = [{"body": b} for b in bodies]
            plain.send(json.dumps({"action": "message_post", "headers": HEADERS,
                                   "body": {"queue_name": "real", "messages": messages}}))
            assert json.loads(plain.recv())["headers"] == {"status": 201}
            seen: set[int] = set()
            while len(seen) < len(bodies):  # pushed through the notifier, at least once each
                document = msgpack.unpackb(peer.receive()[1])
                assert document["body"] == bodies[document["body"]["n"]]
                seen.add(document["body"]["n"])
            peer.send(json.dumps({"action": "queue_get_stats", "headers": HEADERS,
                                  "body": {"queue_name": "real"}}).encode())
            while (frame := peer.receive())[0] != frames.OP_TEXT:
                assert msgpack.unpackb(frame[1])["body"]["n"] in seen  # a retried push may come late
            assert json.loads(frame[1])["body"]["messages"]["total"] == 5
            assert all(peer.rsv1)
        finally:
            peer.close()
            plain.close()
