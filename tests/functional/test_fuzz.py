"""Fuzzing both transports: random and malformed input never gets a 500, nor changes stored data.

Four targets: the HTTP app in process (falcon's test client), the websocket
protocol in process, and the real HTTP and websocket servers on sockets
(raw request bytes, raw frames). For every answer: never a 5xx, errors in the
documented shapes (HTTP ``{"title", "description"?}``; websocket
``{"error"}`` or ``{"exception", "error"}``), every JSON answer readable by a
strict parser; and a request that was refused left everything a client can
observe of the seeded projects as it was.

Examples are derived from a fixed seed (``derandomize``), so a run is
repeatable; ``ZAQAR_FUZZ_EXAMPLES`` scales every target (default 1: about a
thousand examples in total, a few seconds) for a longer hunt, and
``ZAQAR_FUZZ_EXPLORE=1`` draws from a new random seed on each run.
Generation lives in ``fuzzing.py``.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.functional import fuzzing
from tests.functional.test_http_server import Reader
from tests.functional.test_limits import Peer
from tests.unit.transport.test_websocket_frames import client_frame
from zaqar.api import Limits
from zaqar.transport import websocket, wsgi
from zaqar.transport.websocket import frames, protocol

SCALE = float(os.environ.get("ZAQAR_FUZZ_EXAMPLES", "1"))
EXPLORE = os.environ.get("ZAQAR_FUZZ_EXPLORE") == "1"  # a new random seed each run, to hunt for new bugs


def profile(examples: int) -> settings:
    """Repeatable runs of ``examples`` (times ``SCALE``) examples, with no time limit per example."""
    return settings(max_examples=max(1, int(examples * SCALE)), derandomize=not EXPLORE, database=None,
                    deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[fuzzing.World]:
    world = fuzzing.World(tmp_path)
    yield world
    world.store.close()


def _request(method: str, path: str, body: bytes) -> dict:
    headers = {"Client-ID": fuzzing.CLIENT_ID, "X-Project-ID": fuzzing.PROJECT,
               "Content-Type": "application/json"}
    return {"method": method, "path": path, "query": "", "headers": headers, "body": body}


# Bugs the fuzzer found, kept as fixed examples (each run checks them first).
FOUND_OVER_HTTP = [
    _request("POST", "/v2/queues/fizbit/purge", b'{"resource_types": [[]]}'),  # was a 500
    _request("POST", "/v2/queues/fizbit/messages", b'{"messages": [{"body": 1e400, "ttl": 60}]}'),  # Infinity
    _request("PUT", "/v2/queues/fresh", b'{"color": -1e400}'),  # stored, then served as -Infinity
]
FOUND_OVER_WEBSOCKET = [
    ({"action": "queue_purge", "headers": {"Client-ID": fuzzing.CLIENT_ID, "X-Project-ID": fuzzing.PROJECT},
      "body": {"queue_name": "fizbit", "resource_types": [[]]}}, binary, "envelope", 0)
    for binary in (False, True)
]


def _with_examples(found: list, **name: str):  # type: ignore[no-untyped-def]
    def decorate(test):  # type: ignore[no-untyped-def]
        for value in found:
            test = example(**{name["argument"]: value})(test)
        return test
    return decorate


def test_http_app(world: fuzzing.World) -> None:
    clients = {}

    @profile(400)
    @given(request=fuzzing.http_requests())
    @_with_examples(FOUND_OVER_HTTP, argument="request")
    def run(request: dict) -> None:
        if world.generation not in clients:
            clients.clear()
            clients[world.generation] = falcon.testing.TestClient(wsgi.build_app(world.api))
        client = clients[world.generation]
        before = world.snapshot()
        body = request["body"]
        result = client.simulate_request(
            request["method"], world.fill(request["path"]), query_string=world.fill(request["query"]) or None,
            headers=request["headers"], body=body and world.fill(body.decode("latin-1")).encode("latin-1"))
        fuzzing.check_http_answer(request["method"], result.status_code,
                                  result.headers.get("content-type", ""), result.content)
        world.settle(result.status_code >= 400, before)

    run()


def test_websocket_protocol(world: fuzzing.World) -> None:
    @profile(400)
    @given(frame=fuzzing.frames())
    @_with_examples(FOUND_OVER_WEBSOCKET, argument="frame")
    def run(frame: tuple[object, bool, str, int]) -> None:
        data, binary = fuzzing.encode_frame(world.fill, frame), frame[1]
        before = world.snapshot()
        reply = protocol.handle_frame(world.api, data, binary, protocol.Session(subscriber="http://h/c"))
        status = fuzzing.check_ws_reply(fuzzing.decode_reply(reply, binary))
        world.settle(status >= 400, before)

    run()


def _responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Every response in ``data``; each must be complete and framed by Content-Length."""
    found = []
    while data:
        head, separator, data = data.partition(b"\r\n\r\n")
        assert separator, f"an incomplete response head: {head[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = 0 if status < 200 or status in (204, 304) else int(headers["content-length"])
        assert len(data) >= length, "a truncated response body"
        found.append((status, headers, data[:length]))
        data = data[length:]
    return found


def _read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def test_http_server_on_sockets(world: fuzzing.World) -> None:
    server = wsgi.HttpServer(wsgi.build_app(world.api),
                             wsgi.Settings(port=0, threads=2, max_body=Limits().body_cap, request_timeout=5))
    server.start()
    try:
        @profile(120)
        @given(requests=st.lists(fuzzing.raw_requests(), min_size=1, max_size=3))
        def run(requests: list[bytes]) -> None:
            before = world.snapshot()
            with socket.create_connection(server.address, timeout=10) as sock:
                sock.sendall(world.fill(b"".join(requests).decode("latin-1")).encode("latin-1"))
                sock.shutdown(socket.SHUT_WR)
                answers = _responses(_read_all(sock))
            for status, headers, body in answers:
                fuzzing.check_http_answer("GET", status, headers.get("content-type", ""), body,
                                          allowed=fuzzing.SERVER_REFUSALS)
            if all(status >= 400 or status == 100 for status, _, _ in answers):
                assert world.snapshot() == before, "a rejected request changed stored data"

        run()
        with socket.create_connection(server.address, timeout=10) as sock:  # and it still serves
            sock.sendall(b"GET /v2/queues HTTP/1.1\r\nHost: t\r\nClient-ID: " + fuzzing.CLIENT_ID.encode()
                         + b"\r\nX-Project-ID: fuzz\r\n\r\n")
            assert Reader(sock).response()[0] == 200
    finally:
        server.stop()


OPCODES = st.sampled_from([frames.OP_TEXT, frames.OP_BINARY, frames.OP_CONTINUATION, frames.OP_PING,
                           frames.OP_PONG, frames.OP_CLOSE]) | st.integers(0, 15)


@st.composite
def ws_frames(draw: st.DrawFn) -> tuple[tuple[object, bool, str, int], int, int, bool, int, int | None]:
    """One frame: its message, opcode, rsv bits, fin, mask, and the close code a close frame asks for."""
    opcode = draw(OPCODES)
    message = draw(fuzzing.frames())
    binary, code, cut = message[1], None, None
    if opcode == frames.OP_CLOSE:
        code = draw(st.sampled_from([1000, 1001, 1003, 3000, 4999, 1005, 999, 5000]) | st.integers(0, 65535))
        message = (struct.pack("!H", code) + draw(st.binary(max_size=10)), binary, "bytes", 0)
    elif opcode in (frames.OP_PING, frames.OP_PONG):
        cut = draw(st.integers(0, 130))
    elif opcode == frames.OP_TEXT and binary or opcode == frames.OP_BINARY and not binary:
        opcode = frames.OP_BINARY if binary else frames.OP_TEXT
    fin = draw(fuzzing.CHOICE[9]) > 0
    masked = draw(fuzzing.CHOICE[19]) > 0
    rsv = draw(st.sampled_from([0, 0, 0, 0x40]))
    return message, opcode, rsv, fin, masked, code if cut is None else -cut - 1


def _frame_bytes(world: fuzzing.World, frame: tuple) -> bytes:
    message, opcode, rsv, fin, masked, extra = frame
    payload = fuzzing.encode_frame(world.fill, message)
    if extra is not None and extra < 0:  # a control frame: cut to the given size
        payload = payload[: -extra - 1]
    return client_frame(opcode, payload, fin=fin, masked=masked, rsv=rsv)


def _close_code(frame: tuple) -> int | None:
    extra = frame[-1]
    return extra if extra is not None and extra >= 0 else None


# Close codes the server sends of its own accord (frames.py); any other must echo the peer's.
SERVER_CLOSE_CODES = {1000, 1002, 1007, 1009}


def _server_frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    while len(data) >= 2:
        size, offset = data[1] & 0x7F, 2
        if size >= 126:
            offset = 4 if size == 126 else 10
            size = int.from_bytes(data[2:offset], "big")
        assert len(data) >= offset + size, "a truncated frame from the server"
        yield data[0] & 0x0F, data[offset:offset + size]
        data = data[offset + size:]
    assert not data


def _quiet(world: fuzzing.World, server: websocket.WebSocketServer, timeout: float = 10.0) -> dict:
    """The state once earlier connections are gone, with the subscriptions bound to them.

    Those are deleted off the request path after their connection closes
    (websocket.md §9.2), so they may still be going when the next example starts.
    """
    deadline = time.monotonic() + timeout
    while True:
        state = world.snapshot()
        if server.notification_url not in json.dumps(state) and not len(server):
            return state
        assert time.monotonic() < deadline, "connection-bound subscriptions outlived their connections"
        time.sleep(0.01)


def test_websocket_server_on_sockets(world: fuzzing.World) -> None:
    server = websocket.WebSocketServer(world.api, websocket.Settings(port=0, workers=2, max_frame_size=4096))
    server.start()
    try:
        @profile(120)
        @given(sent=st.lists(ws_frames(), min_size=1, max_size=4))
        def run(sent: list[tuple]) -> None:
            before = _quiet(world, server)
            peer = Peer(server)
            assert peer.status == 101
            goodbye = client_frame(frames.OP_CLOSE, struct.pack("!H", 1000))
            peer.sock.sendall(b"".join(_frame_bytes(world, frame) for frame in sent) + goodbye)
            peer.sock.shutdown(socket.SHUT_WR)
            received = peer.reader.buf + _read_all(peer.sock)
            peer.sock.close()
            statuses = []
            for opcode, payload in _server_frames(received):
                if opcode == frames.OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0]
                    assert code in SERVER_CLOSE_CODES | {_close_code(frame) for frame in sent}, code
                elif opcode in (frames.OP_TEXT, frames.OP_BINARY):
                    reply = fuzzing.decode_reply(payload, opcode == frames.OP_BINARY)
                    statuses.append(fuzzing.check_ws_reply(reply))
                else:
                    assert opcode == frames.OP_PONG, opcode
            if all(status >= 400 for status in statuses):
                assert world.snapshot() == before, "a rejected frame changed stored data"

        run()
        assert Peer(server).call("queue_list", fuzzing.PROJECT)["headers"] == {"status": 200}  # still serving
    finally:
        server.stop(grace=0.2)
