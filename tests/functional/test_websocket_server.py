"""The websocket listener of a real zaqar-server, over real sockets."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
import uuid

import msgpack
import pytest
import websocket
from zaqarclient.transport import request as zc_request
from zaqarclient.transport import ws as zc_ws

from tests.server import running_server

pytestmark = pytest.mark.slow

H = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "ws-tests"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("ws-server")) as srv:
        yield srv


def _connect(server, timeout=30):
    return websocket.create_connection(server.ws_url, timeout=timeout)


def _call(conn, action, body=None, binary=False):
    document = {"action": action, "headers": H, "body": body or {}}
    if binary:
        conn.send_binary(msgpack.packb(document, use_bin_type=True))
        opcode, data = conn.recv_data()
        assert opcode == websocket.ABNF.OPCODE_BINARY
        return msgpack.unpackb(data, raw=False)
    conn.send(json.dumps(document))
    opcode, data = conn.recv_data()
    assert opcode == websocket.ABNF.OPCODE_TEXT
    return json.loads(data)


def _close_code(conn) -> int:
    frame = conn.recv_frame()  # raw frame: the client library would answer a close itself
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    return struct.unpack("!H", frame.data[:2])[0]


def test_replies_come_in_request_order_and_encoding(server):
    conn = _connect(server)
    try:
        for i in range(5):
            conn.send(json.dumps({"action": "message_post", "headers": H,
                                  "body": {"queue_name": "order", "messages": [{"body": i}]}}))
        replies = [json.loads(conn.recv()) for _ in range(5)]
        assert [r["request"]["body"]["messages"][0]["body"] for r in replies] == list(range(5))
        listed = _call(conn, "message_list", {"queue_name": "order", "echo": True}, binary=True)
        assert [m["body"] for m in listed["body"]["messages"]] == list(range(5))
    finally:
        conn.close()


@pytest.mark.parametrize("frame, binary", [(b"{not json", False), (b"\xc1", True), (b"[1]", False)])
def test_malformed_frames_get_400_and_the_connection_stays_open(server, frame, binary):
    conn = _connect(server)
    try:
        if binary:
            conn.send_binary(frame)
            reply = msgpack.unpackb(conn.recv(), raw=False)
        else:
            conn.send(frame.decode("latin-1"))
            reply = json.loads(conn.recv())
        assert reply["headers"] == {"status": 400}
        assert _call(conn, "queue_list")["headers"] == {"status": 200}
    finally:
        conn.close()


_BAD_ENVELOPES = [
    pytest.param([1, 2], "Unexpected body type. Expected dict or dict like.", id="non-object"),
    pytest.param({"headers": H}, "None is not a valid action", id="no-action"),
    pytest.param({"action": "queue_explode", "headers": H}, "queue_explode is not a valid action",
                 id="unknown-action"),
    pytest.param({"action": "message_post", "body": {"queue_name": "kept", "messages": [{"body": 1}]}},
                 "Schema validation failed.", id="missing-headers"),
    pytest.param({"action": "message_post", "headers": H, "body": {"queue_name": "kept"}},
                 "Schema validation failed.", id="missing-field"),
    pytest.param({"action": "message_post", "headers": H, "body": {"queue_name": "kept", "messages": "x"}},
                 "Schema validation failed.", id="wrong-type"),
]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
@pytest.mark.parametrize("document, error", _BAD_ENVELOPES)
def test_bad_envelopes_get_400_change_nothing_and_keep_the_connection(server, binary, document, error):
    conn = _connect(server)
    try:
        _call(conn, "message_post", {"queue_name": "kept", "messages": [{"body": "keep"}]}, binary)
        before = _call(conn, "message_list", {"queue_name": "kept", "echo": True}, binary)["body"]
        if binary:
            conn.send_binary(msgpack.packb(document, use_bin_type=True))
            reply = msgpack.unpackb(conn.recv(), raw=False)
        else:
            conn.send(json.dumps(document))
            reply = json.loads(conn.recv())
        assert (reply["headers"], reply["body"]) == ({"status": 400}, {"error": error})
        after = _call(conn, "message_list", {"queue_name": "kept", "echo": True}, binary)["body"]
        assert after == before
    finally:
        conn.close()


@pytest.mark.parametrize("action, body", [
    ("pool_list", {}), ("pool_get", {"pool_name": "p"}), ("flavor_list", {}),
    ("flavor_create", {"flavor_name": "f", "pool_list": ["p"]}),
])
def test_pool_and_flavor_actions_answer_404_when_pooling_is_off(server, action, body):
    conn = _connect(server)
    try:
        reply = _call(conn, action, body)
        assert reply["headers"] == {"status": 404}
        assert reply["body"] == {"exception": f"{action} is not available on this server.", "error": None}
    finally:
        conn.close()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
def test_an_oversize_frame_gets_400_and_the_connection_goes_on(server, binary):
    """websocket.md §7: larger frames are answered 400 {"error": ...}, not closed (§11)."""
    conn = _connect(server)
    big = {"action": "message_post", "headers": H,
           "body": {"queue_name": "big", "messages": [{"body": "x" * (400 * 1024)}]}}
    try:
        if binary:
            conn.send_binary(msgpack.packb(big, use_bin_type=True))
            opcode, data = conn.recv_data()
            assert opcode == websocket.ABNF.OPCODE_BINARY  # answered in the frame's own encoding
            reply = msgpack.unpackb(data, raw=False)
        else:
            conn.send(json.dumps(big))
            reply = json.loads(conn.recv())
        assert reply == {"request": {"action": None, "body": {}, "headers": {}, "api": "v2"},
                         "headers": {"status": 400},
                         "body": {"error": f"Frame is too large. Max size: {(256 + 64) * 1024} bytes."}}
        assert _call(conn, "queue_get_stats", {"queue_name": "big"}, binary)["headers"] == {"status": 404}
    finally:
        conn.close()


def test_ping_is_answered_with_pong(server):
    conn = _connect(server)
    try:
        conn.ping(b"are-you-there")
        opcode, data = conn.recv_data(control_frame=True)
        assert (opcode, data) == (websocket.ABNF.OPCODE_PONG, b"are-you-there")
    finally:
        conn.close()


def test_five_hundred_connections_at_once_each_get_their_reply(server):
    conns = [_connect(server) for _ in range(500)]
    try:
        for i, conn in enumerate(conns):
            conn.send(json.dumps({"action": "queue_create", "headers": H,
                                  "body": {"queue_name": f"many-{i}"}}))
        for i, conn in enumerate(conns):
            reply = json.loads(conn.recv())
            assert reply["request"]["body"]["queue_name"] == f"many-{i}"
            assert reply["headers"]["status"] in (201, 204)
    finally:
        for conn in conns:
            conn.close()
    check = _connect(server)
    try:
        names = []
        marker = None
        while True:
            body = {"limit": 20, **({"marker": marker} if marker else {})}
            page = _call(check, "queue_list", body)["body"]["queues"]
            if not page:
                break
            names += [q["name"] for q in page]
            marker = page[-1]["name"]
        assert {f"many-{i}" for i in range(500)} <= set(names)
    finally:
        check.close()


def test_python_zaqarclient_websocket_transport(server):
    conf = {"auth_opts": {"backend": "noauth", "options": {"os_auth_token": "t", "os_project_id": "zc"}}}
    with zc_ws.WebsocketTransport(conf) as transport:

        def send(action, body):
            return transport.send(zc_request.Request(server.ws_url, action, content=json.dumps(body)))

        assert send("queue_create", {"queue_name": "zcq"}).status_code in (201, 204)
        posted = send("message_post", {"queue_name": "zcq", "messages": [{"body": {"n": 1}}]})
        assert posted.status_code == 201
        listed = json.loads(send("message_list", {"queue_name": "zcq", "echo": True}).content)
        assert [m["body"] for m in listed["messages"]] == [{"n": 1}]
        claim = json.loads(send("claim_create", {"queue_name": "zcq"}).content)
        mid = claim["messages"][0]["id"]
        deleted = send("message_delete", {"queue_name": "zcq", "message_id": mid,
                                          "claim_id": claim["claim_id"]})
        assert deleted.status_code == 204
        assert json.loads(send("message_list", {"queue_name": "zcq", "echo": True}).content)["messages"] == []


def test_shutdown_closes_connections_with_1001(tmp_path):
    with running_server(tmp_path) as srv:
        conn = _connect(srv)
        try:
            assert _call(conn, "queue_list")["headers"] == {"status": 200}
            assert srv.stop() == 0
            assert _close_code(conn) == 1001
        finally:
            conn.shutdown()


def test_idle_connections_are_closed_after_the_configured_timeout(tmp_path):
    options = {"drivers:transport:websocket": {"idle_timeout": "1"}}
    with running_server(tmp_path, options=options) as srv:
        idle, busy = _connect(srv), _connect(srv)
        try:
            for _ in range(4):  # keep one connection talking for ~2 s
                assert _call(busy, "ping_node")["headers"] == {"status": 204}
                time.sleep(0.5)
            assert _close_code(idle) == 1001
            assert _call(busy, "ping_node")["headers"] == {"status": 204}
        finally:
            idle.shutdown()
            busy.shutdown()


def _raw_upgrade(srv) -> socket.socket:
    """A websocket opened by hand, so the test controls how (and whether) it reads."""
    sock = socket.create_connection(("127.0.0.1", int(srv.ws_url.rsplit(":", 1)[1].rstrip("/"))))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    return sock


def _masked_text_frame(document) -> bytes:
    payload = json.dumps(document).encode()
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    if length > 125:
        header = bytes([0x81, 0x80 | 126]) + struct.pack("!H", length)
    else:
        header = bytes([0x81, 0x80 | length])
    return header + mask + masked


def test_a_peer_that_never_reads_delays_nobody_and_is_dropped(tmp_path):
    options = {"drivers:transport:websocket": {"send_timeout": "2", "workers": "2"}}
    with running_server(tmp_path, options=options) as srv:
        writer = _connect(srv)
        try:
            body = "x" * 10_000
            for _ in range(20):
                _call(writer, "message_post", {"queue_name": "wide", "messages": [{"body": body}]})
        finally:
            writer.close()
        hog = _raw_upgrade(srv)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        request = _masked_text_frame({"action": "message_list", "headers": H,
                                      "body": {"queue_name": "wide", "echo": True, "limit": 20}})
        hog.settimeout(5)
        with contextlib.suppress(OSError):  # the server may stop reading us: that is the point
            for _ in range(200):
                hog.sendall(request)
        other = _connect(srv, timeout=5)
        try:
            started = time.monotonic()
            assert _call(other, "queue_list")["headers"] == {"status": 200}
            assert time.monotonic() - started < 2
            time.sleep(3.5)  # past send_timeout: the hog is dropped, the others live on
            assert _call(other, "ping_node")["headers"] == {"status": 204}
        finally:
            other.close()
        hog.settimeout(5)
        closed = False
        while not closed:  # drain what was sent before the drop, then see the end of the stream
            try:
                closed = not hog.recv(65536)
            except ConnectionResetError:
                closed = True
            except TimeoutError:
                break
        assert closed, "the server kept a peer that left its replies unread past send_timeout"
        hog.close()


def test_slow_handshakes_do_not_block_new_connections(tmp_path):
    options = {"drivers:transport:websocket": {"handshake_timeout": "3"}}
    with running_server(tmp_path, options=options) as srv:
        port = int(srv.ws_url.rsplit(":", 1)[1].rstrip("/"))
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        try:
            for sock in slow:
                sock.sendall(b"GET / HTTP/1.1\r\n")  # and never finish the request
            started = time.monotonic()
            conn = _connect(srv, timeout=5)
            assert _call(conn, "ping_node")["headers"] == {"status": 204}
            conn.close()
            assert time.monotonic() - started < 2.5  # blocked, it would wait out the 3 s deadline
            slow[0].settimeout(5)
            assert slow[0].recv(100).startswith(b"HTTP/1.1 408")  # the deadline covers the whole head
        finally:
            for sock in slow:
                sock.close()
