"""The benchmark clients of every transport: raw HTTP/1.1 and a minimal websocket client.

Why hand-written clients: the load generator must cost far less than the server
it measures, so requests are built once as bytes and only the status (and, for
a claim, the claimed messages) is decoded. Every client counts the bytes it
wrote (``sent``) and read (``received``), headers and frame headers included.

An ``HttpClient`` or ``WsClient`` serves one thread and one queue with the same
calls, whatever the transport: ``post() -> status`` (``batch`` messages),
``claim() -> (status, delete tokens)``, ``delete(token) -> status``,
``stats() -> status`` (``queue_get_stats``) and ``queue_list() -> status``
(``queue_list``, one page of ``LIST_LIMIT``).

``WsConn(deflate=True)`` offers permessage-deflate (RFC 7692) as browsers do
(``client_max_window_bits``, context takeover both ways) and, once the server
accepts, compresses every message it sends and inflates every compressed one
it reads, with zlib: the byte counts are then what a browser would move.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import struct
import zlib
from typing import Any

import msgpack

from benchmarks.http_bench import PROJECT, TTL, Conn, Target, build_request

CLAIM_LIMIT = 10
LIST_LIMIT = 10
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFLATE_OFFER = b"permessage-deflate; client_max_window_bits"  # what Chrome and Firefox send
DEFLATE_TAIL = b"\x00\x00\xff\xff"


def message(thread: int) -> dict[str, Any]:
    """The message every scenario posts (~100 bytes of JSON, as in http_bench)."""
    return {"ttl": TTL, "body": {"event": "bench", "thread": thread, "seq": 0, "data": "x" * 64}}


def _messages(thread: int, batch: int) -> list[dict[str, Any]]:
    return [message(thread) for _ in range(batch)]


class CountingConn(Conn):
    """http_bench's raw HTTP/1.1 connection, counting bytes."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.sent = 0
        self.received = 0

    def request(self, data: bytes) -> tuple[int, bytes]:
        self.sent += len(data)
        return super().request(data)

    def _recv(self) -> bytes:
        chunk = super()._recv()
        self.received += len(chunk)
        return chunk


class HttpClient:
    """``new_connection``: every request on a new TCP connection (``Connection: close``)."""

    def __init__(self, target: Target, queue: str, client_id: str, thread: int, new_connection: bool, *,
                 batch: int = 1, project: str = PROJECT) -> None:
        self.conn = CountingConn(target.host, target.port)
        self.new_connection, self.batch = new_connection, batch

        def request(method: str, path: str, body: bytes | None = None) -> bytes:
            return build_request(method, path, target.hostport, client_id, body, close=new_connection,
                                 project=project)

        self.post_request = request("POST", f"/v2/queues/{queue}/messages",
                                    json.dumps({"messages": _messages(thread, batch)}).encode())
        self.claim_request = request("POST", f"/v2/queues/{queue}/claims?limit={CLAIM_LIMIT}",
                                     b'{"ttl": 300, "grace": 60}')
        self.stats_request = request("GET", f"/v2/queues/{queue}/stats")
        self.list_request = request("GET", f"/v2/queues?limit={LIST_LIMIT}")
        head = request("DELETE", "/")
        self.delete_rest = head[head.index(b"\r\n"):]  # everything but the request line
        self.last_reply = b""

    @property
    def sent(self) -> int:
        return self.conn.sent

    @property
    def received(self) -> int:
        return self.conn.received

    def _request(self, data: bytes) -> tuple[int, bytes]:
        try:
            status, body = self.conn.request(data)
        finally:
            if self.new_connection:
                self.conn.close()
        self.last_reply = body
        return status, body

    def post(self) -> int:
        return self._request(self.post_request)[0]

    def claim(self) -> tuple[int, list[Any]]:
        status, body = self._request(self.claim_request)
        if status != 201:
            return status, []
        return status, [m["href"] for m in json.loads(body)["messages"]]  # href carries ?claim_id=

    def delete(self, href: Any) -> int:
        return self._request(b"DELETE " + href.encode() + b" HTTP/1.1" + self.delete_rest)[0]

    def stats(self) -> int:
        return self._request(self.stats_request)[0]

    def queue_list(self) -> int:
        return self._request(self.list_request)[0]

    def close(self) -> None:
        self.conn.close()


class WsError(Exception):
    pass


def ws_mask(key: bytes, data: bytes) -> bytes:
    n = len(data)
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(pad, "little")).to_bytes(n, "little")


class WsConn:
    """A minimal RFC 6455 client: handshake, masked single frames out, unfragmented frames in.

    ``deflate``: offer permessage-deflate; ``compressed`` says whether the server accepted it.
    """

    def __init__(self, host: str, port: int, timeout: float = 30.0, *, deflate: bool = False) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sent = 0
        self.received = 0
        key = base64.b64encode(os.urandom(16))
        offer = b"Sec-WebSocket-Extensions: " + DEFLATE_OFFER + b"\r\n" if deflate else b""
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\n"
                          b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                          b"\r\nSec-WebSocket-Version: 13\r\n" + offer + b"\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise WsError(f"connection closed during the handshake: {data!r}")
            data += chunk
        head, _, self.buf = data.partition(b"\r\n\r\n")
        expected = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        if not head.startswith(b"HTTP/1.1 101 ") or b"Sec-WebSocket-Accept: " + expected not in head:
            raise WsError(f"handshake refused: {head!r}")
        self._deflate_setup(head if deflate else b"")

    def _deflate_setup(self, head: bytes) -> None:
        """The codecs of what the server answered to our offer (none: no ``permessage-deflate``)."""
        found = re.search(rb"(?im)^Sec-WebSocket-Extensions:\s*(.*?)\s*$", head)
        params = [p.strip() for p in found[1].split(b";")] if found else []
        self.compressed = bool(params) and params[0] == b"permessage-deflate"
        values = dict(p.partition(b"=")[::2] for p in params[1:])
        unknown = set(values) - {b"server_no_context_takeover", b"client_no_context_takeover",
                                 b"server_max_window_bits", b"client_max_window_bits"}
        if self.compressed and unknown:
            raise WsError(f"server answered with unknown permessage-deflate parameters {unknown}")
        self._client_bits = int(values.get(b"client_max_window_bits") or 15)
        self._server_bits = int(values.get(b"server_max_window_bits") or 15)
        self._reset_compressor = b"client_no_context_takeover" in values
        self._reset_inflater = b"server_no_context_takeover" in values
        self._compressor: Any = None
        self._inflater: Any = None

    @staticmethod
    def frame(payload: bytes, binary: bool, opcode: int = 0, rsv1: bool = False) -> bytes:
        """A masked, final frame (text, binary, or ``opcode``); build once and send as often as needed."""
        n = len(payload)
        first = bytes([0x80 | (0x40 if rsv1 else 0) | (opcode or (0x2 if binary else 0x1))])
        if n < 126:
            length = bytes([0x80 | n])
        elif n < 65536:
            length = b"\xfe" + struct.pack(">H", n)
        else:
            length = b"\xff" + struct.pack(">Q", n)
        key = os.urandom(4)
        return first + length + key + ws_mask(key, payload)

    def data_frame(self, payload: bytes, binary: bool) -> bytes:
        """The frame of one message: compressed when deflate was agreed (then good for one send only)."""
        if not self.compressed:
            return self.frame(payload, binary)
        if self._compressor is None:
            self._compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self._client_bits)
        data = self._compressor.compress(payload) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if self._reset_compressor:
            self._compressor = None
        return self.frame(data[:-4] if data.endswith(DEFLATE_TAIL) else data, binary, rsv1=True)

    def _inflate(self, payload: bytes) -> bytes:
        if self._inflater is None:
            self._inflater = zlib.decompressobj(-self._server_bits)
        data: bytes = self._inflater.decompress(payload + DEFLATE_TAIL)
        if self._reset_inflater:
            self._inflater = None
        return data

    def send(self, frame: bytes) -> None:
        self.sock.sendall(frame)
        self.sent += len(frame)

    def read(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame, inflated when it came compressed."""
        buf = self.buf
        while True:
            if len(buf) >= 2:
                size, pos = buf[1] & 0x7F, 2
                if size == 126 and len(buf) >= 4:
                    size, pos = struct.unpack_from(">H", buf, 2)[0], 4
                elif size == 127 and len(buf) >= 10:
                    size, pos = struct.unpack_from(">Q", buf, 2)[0], 10
                if size < 126 or pos > 2:
                    if buf[1] & 0x80:
                        raise WsError("server sent a masked frame")
                    if len(buf) >= pos + size:
                        if not buf[0] & 0x80:
                            raise WsError("server sent a fragmented message")
                        if buf[0] & 0x40 and not self.compressed:
                            raise WsError("server set RSV1 without permessage-deflate")
                        self.buf = buf[pos + size:]
                        payload = buf[pos:pos + size]
                        return buf[0] & 0x0F, self._inflate(payload) if buf[0] & 0x40 else payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WsError("connection closed by the server")
            self.received += len(chunk)
            buf += chunk

    def roundtrip(self, frame: bytes) -> bytes:
        self.send(frame)
        opcode, payload = self.read()
        if opcode == 0x8:
            code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
            raise WsError(f"server closed the connection: {code} {payload[2:]!r}")
        if opcode not in (0x1, 0x2):
            raise WsError(f"unexpected opcode {opcode}")
        return payload

    def close(self) -> None:
        try:
            self.send(self.frame(struct.pack(">H", 1000), binary=False, opcode=0x8))
        except OSError:
            pass
        self.sock.close()


class WsClient:
    """``binary``: MessagePack in binary frames; otherwise JSON in text frames.

    ``deflate``: negotiate permessage-deflate. Requests are then compressed as
    they are sent (the compressor's window moves on with every message), where
    plain frames are built once.
    """

    def __init__(self, target: Target, ws_port: int, queue: str, client_id: str, thread: int,
                 binary: bool, *, batch: int = 1, project: str = PROJECT, deflate: bool = False) -> None:
        self.ws = WsConn(target.host, ws_port, deflate=deflate)
        if deflate and not self.ws.compressed:
            raise WsError("the server did not accept permessage-deflate")
        self.binary, self.batch = binary, batch
        self.headers = {"Client-ID": client_id, "X-Project-ID": project}
        self.queue = queue
        self.post_frame = self._frame("message_post", {"queue_name": queue,
                                                       "messages": _messages(thread, batch)})
        self.claim_frame = self._frame("claim_create", {"queue_name": queue, "limit": CLAIM_LIMIT,
                                                        "ttl": 300, "grace": 60})
        self.stats_frame = self._frame("queue_get_stats", {"queue_name": queue})
        self.list_frame = self._frame("queue_list", {"limit": LIST_LIMIT})
        self.last_reply: Any = None

    def _encode(self, doc: Any) -> bytes:
        return msgpack.packb(doc, use_bin_type=True) if self.binary else json.dumps(doc).encode()

    def _frame(self, action: str, body: dict[str, Any]) -> bytes:
        """What ``_call`` sends: the frame itself (plain), or the payload to compress (deflate)."""
        payload = self._encode({"action": action, "headers": self.headers, "body": body})
        return payload if self.ws.compressed else WsConn.frame(payload, self.binary)

    @property
    def sent(self) -> int:
        return self.ws.sent

    @property
    def received(self) -> int:
        return self.ws.received

    def _call(self, frame: bytes, action: str) -> tuple[int, Any]:
        payload = self.ws.roundtrip(self.ws.data_frame(frame, self.binary) if self.ws.compressed else frame)
        doc = msgpack.unpackb(payload, raw=False) if self.binary else json.loads(payload)
        self.last_reply = doc
        echoed = doc.get("request", {}).get("action") if isinstance(doc, dict) else None
        if echoed != action:  # the protocol answers in request order: anything else is a server bug
            raise WsError(f"reply to {action} echoes {echoed!r}: {str(doc)[:300]}")
        return doc["headers"]["status"], doc["body"]

    def post(self) -> int:
        return self._call(self.post_frame, "message_post")[0]

    def claim(self) -> tuple[int, list[Any]]:
        status, body = self._call(self.claim_frame, "claim_create")
        if status != 201:
            return status, []
        return status, [(m["id"], body["claim_id"]) for m in body["messages"]]

    def delete(self, token: Any) -> int:
        message_id, claim_id = token
        frame = self._frame("message_delete", {"queue_name": self.queue, "message_id": message_id,
                                               "claim_id": claim_id})
        return self._call(frame, "message_delete")[0]

    def stats(self) -> int:
        return self._call(self.stats_frame, "queue_get_stats")[0]

    def queue_list(self) -> int:
        return self._call(self.list_frame, "queue_list")[0]

    def close(self) -> None:
        self.ws.close()


Client = HttpClient | WsClient
