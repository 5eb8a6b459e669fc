"""RFC 6455 framing for the server side, without sockets: bytes in, messages out.

# PERF: ws4py unmasks every payload byte in a Python loop and validates text
# frames with a Python UTF-8 automaton (~49 µs for a 337-byte JSON request,
# benchmarks/README.md); here a payload is unmasked as one big integer XOR
# (~1 µs) and text is left to the JSON decoder, which rejects bad UTF-8 with
# the protocol's own 400 answer (websocket.md §5) instead of a close.

Refused with a close code (``ProtocolError``): unmasked client frames, reserved
bits or opcodes, fragmented or oversize control frames, a continuation with
nothing to continue or a new message inside a fragmented one (1002), and a
message over ``max_message`` bytes (1009), detected from the frame header
before its payload is buffered.

permessage-deflate (RFC 7692), once the handshake negotiated it: RSV1 marks
the first frame of a compressed message and nothing else (1002 elsewhere);
the joined payload is inflated with the RFC's ``00 00 ff ff`` tail, never
beyond ``max_message`` bytes (1009: a small frame may inflate to gigabytes),
and data that does not inflate closes with 1007.
"""

from __future__ import annotations

import dataclasses
import struct
import time
import zlib

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_DATA = frozenset({OP_TEXT, OP_BINARY})
_CONTROL = frozenset({OP_CLOSE, OP_PING, OP_PONG})
_RSV1, _RSV23 = 0x40, 0x30

# Close codes a peer may send (RFC 6455 §7.4); 1005, 1006 and 1015 never travel in a frame.
_VALID_CLOSE = frozenset(range(1000, 1012)) - {1004, 1005, 1006} | frozenset(range(3000, 5000))


class ProtocolError(Exception):
    """The peer broke the framing rules; close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """A complete data message (all its fragments joined)."""

    data: bytes
    binary: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Control:
    """A ping, pong or close frame (payload already unmasked)."""

    opcode: int
    payload: bytes


def unmask(payload: bytes | bytearray, key: bytes) -> bytes:
    size = len(payload)
    if not size:
        return b""
    mask = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(size, "big")


def frame(opcode: int, payload: bytes, compressed: bool = False) -> bytes:
    """One unmasked, unfragmented server frame; ``compressed`` sets RSV1 (permessage-deflate)."""
    first = 0x80 | opcode | (_RSV1 if compressed else 0)
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:123])


def close_code(payload: bytes) -> int | None:
    """The code of a received close frame; None for none. Raises ProtocolError for a bad one."""
    if not payload:
        return None
    if len(payload) == 1:
        raise ProtocolError(1002, "Malformed close frame.")
    (code,) = struct.unpack("!H", payload[:2])
    if code not in _VALID_CLOSE:
        raise ProtocolError(1002, "Invalid close code.")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(1007, "Close reason is not UTF-8.") from None
    return int(code)


# -- permessage-deflate (RFC 7692) ------------------------------------------------------------------
TAIL = b"\x00\x00\xff\xff"  # the empty stored block a sync flush ends with; not sent (§7.2.1)
# PERF: level 1 and 6 compress a ~350-byte MessagePack reply in ~3.5 vs ~4.5 µs (zlib 1.2.13) and to
# the same size once the previous reply is in the window; 1 keeps the cost lowest for larger bodies.
LEVEL = 1
# PERF: memLevel 2 costs 20.6 KiB RSS per compressor at 12 window bits against 25.8 KiB (4) and
# 91 KiB (8, zlib's default), at the same size and speed for replies of a few KiB.
MEM_LEVEL = 2


@dataclasses.dataclass(frozen=True, slots=True)
class DeflateParams:
    """What a connection's permessage-deflate negotiation settled (RFC 7692 §7.1).

    ``server_window_bits`` is the window our compressor uses; ``client_window_bits``
    the largest the client may use, so our inflater's. Without context takeover
    a side starts every message from an empty window.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_window_bits: int = 15
    client_window_bits: int = 15


class PerMessageDeflate:
    """One connection's compressor and inflater, created on first use and kept only while needed.

    # PERF: a connection that never sent a compressed message holds neither; one
    # that has exchanged some holds ~21 KiB (compressor, 12 window bits, MEM_LEVEL 2)
    # and ~13 KiB (inflater, 12 bits): 1000 such connections grew the server's RSS
    # by 37.5 KiB each against 4.5 KiB plain (transport_bench --connections 1000
    # [--deflate]). Without context takeover each is dropped after its message.
    # The compressor may go whenever we like (``release_idle``): the peer's inflater
    # only ever reads back what we refer to; the inflater must stay, as the peer's
    # next message may refer to any of the window.
    # PERF: deflate costs ~1.06x server CPU per message on post1 and ~1.15x on consume
    # (harness, MessagePack): zlib's own ~4.3 µs an exchange, plus the GIL hand-offs
    # of its three calls (CPython's zlib releases the GIL around each), which cost
    # more than that under contention. msgs/s drops to 0.87-0.96x for the same reason.
    # NOTE: ``compress`` and ``release_idle`` are not thread-safe: the caller serialises
    # them with the write of each frame, so the peer inflates in compression order.
    """

    __slots__ = ("params", "_deflater", "_inflater", "_deflated_at")

    def __init__(self, params: DeflateParams) -> None:
        self.params = params
        self._deflater: zlib._Compress | None = None
        self._inflater: zlib._Decompress | None = None
        self._deflated_at = 0.0  # time.monotonic() of the last compress

    def idle(self, now: float, seconds: float) -> bool:
        """True when a compressor is held but has not been used for ``seconds``."""
        return self._deflater is not None and now - self._deflated_at > seconds

    def release_idle(self, now: float, seconds: float) -> None:
        """Drop a compressor unused for ``seconds``; the next message starts from an empty window."""
        if self.idle(now, seconds):
            self._deflater = None

    def compress(self, payload: bytes) -> bytes:
        """``payload`` deflated as one message, the trailing ``00 00 ff ff`` removed (§7.2.1)."""
        deflater = self._deflater
        if deflater is None:
            deflater = zlib.compressobj(LEVEL, zlib.DEFLATED, -self.params.server_window_bits, MEM_LEVEL)
        data = deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH)
        self._deflater = None if self.params.server_no_context_takeover else deflater
        self._deflated_at = time.monotonic()
        # NOTE: a sync flush ends with that empty stored block, even for an empty payload (which
        # leaves b"\x00": the block's header byte, §7.2.3.6); anything else goes whole, also valid.
        return data[:-4] if data.endswith(TAIL) else data

    def decompress(self, payload: bytes, limit: int) -> bytes:
        """The message ``payload`` (all fragments, joined) inflated, at most ``limit`` bytes.

        Raises:
            ProtocolError: 1009 when it inflates beyond ``limit`` (inflating stops
                there), 1007 when it is not valid deflate data.
        """
        inflater = self._inflater
        if inflater is None:
            # NOTE: 9 at least: zlib's deflate turns a window of 8 bits into 9, so a peer told 8 may use 9.
            inflater = zlib.decompressobj(-max(9, self.params.client_window_bits))
        try:
            data = inflater.decompress(payload + TAIL, limit + 1)
        except zlib.error:
            self._inflater = None
            raise ProtocolError(1007, "Invalid compressed data.") from None
        if len(data) > limit or inflater.unconsumed_tail:
            raise ProtocolError(1009, "Message too large once inflated.")
        # A peer that ended its stream (BFINAL, §7.2.3.3 allows it) starts the next one afresh.
        keep = not (self.params.client_no_context_takeover or inflater.eof)
        self._inflater = inflater if keep else None
        return data


class FrameParser:
    """Feed bytes with ``feed``; take messages and control frames with ``next_event``.

    ``deflate``: the connection's permessage-deflate codec once negotiated
    (None: RSV1 is refused like the other reserved bits).
    """

    def __init__(self, max_message: int, deflate: PerMessageDeflate | None = None) -> None:
        self._buf = bytearray()
        self._max = max_message
        self._parts: list[bytes] = []  # fragments of the message in progress
        self._size = 0
        self._binary = False
        self._compressed = False  # the message in progress had RSV1 on its first frame
        self.deflate = deflate

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as events."""
        return len(self._buf) + self._size

    def next_event(self) -> Message | Control | None:
        """The next complete message or control frame, None until more bytes arrive."""
        while True:
            parsed = self._next_frame()
            if parsed is None:
                return None
            fin, opcode, payload = parsed
            if opcode in _CONTROL:
                return Control(opcode, payload)
            self._parts.append(payload)
            if fin:
                data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
                self._parts, self._size = [], 0
                if self._compressed:
                    assert self.deflate is not None  # _check refused RSV1 without it
                    data = self.deflate.decompress(data, self._max)
                return Message(data, self._binary)

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        fin, opcode = bool(first & 0x80), first & 0x0F
        if not second & 0x80:
            raise ProtocolError(1002, "Client frames must be masked.")
        size, offset = second & 0x7F, 2
        if size == 126:
            if len(buf) < 4:
                return None
            (size,) = struct.unpack_from("!H", buf, 2)
            offset = 4
        elif size == 127:
            if len(buf) < 10:
                return None
            (size,) = struct.unpack_from("!Q", buf, 2)
            offset = 10
        self._check(fin, opcode, first & (_RSV1 | _RSV23), size)
        end = offset + 4 + size
        if len(buf) < end:
            return None
        payload = unmask(buf[offset + 4:end], bytes(buf[offset:offset + 4]))
        del buf[:end]
        if opcode in _DATA:
            self._binary = opcode == OP_BINARY
            self._compressed = bool(first & _RSV1)
        if opcode not in _CONTROL:
            self._size += size
        return fin, opcode, payload

    def _check(self, fin: bool, opcode: int, rsv: int, size: int) -> None:
        """Refuse a frame from its header alone, before its payload is waited for."""
        if rsv:
            if rsv != _RSV1 or self.deflate is None:
                raise ProtocolError(1002, "Reserved bits set that no extension negotiated.")
            if opcode not in _DATA:  # RFC 7692 §6: only the first frame of a data message
                raise ProtocolError(1002, "RSV1 is only allowed on the first frame of a data message.")
        if opcode in _CONTROL:
            if not fin or size > 125:
                raise ProtocolError(1002, "Control frames must be whole and at most 125 bytes.")
            return
        if opcode in _DATA:
            if self._parts:
                raise ProtocolError(1002, "A new message started inside a fragmented one.")
        elif opcode == OP_CONTINUATION:
            if not self._parts:
                raise ProtocolError(1002, "Continuation frame without a message to continue.")
        else:
            raise ProtocolError(1002, f"Unknown opcode {opcode}.")
        if self._size + size > self._max:
            raise ProtocolError(1009, "Frame too large.")
