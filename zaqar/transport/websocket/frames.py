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
"""

from __future__ import annotations

import dataclasses
import struct

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_DATA = frozenset({OP_TEXT, OP_BINARY})
_CONTROL = frozenset({OP_CLOSE, OP_PING, OP_PONG})

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


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, unfragmented server frame."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, size) + payload


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


class FrameParser:
    """Feed bytes with ``feed``; take messages and control frames with ``next_event``."""

    def __init__(self, max_message: int) -> None:
        self._buf = bytearray()
        self._max = max_message
        self._parts: list[bytes] = []  # fragments of the message in progress
        self._size = 0
        self._binary = False

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
                return Message(data, self._binary)

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        fin, opcode = bool(first & 0x80), first & 0x0F
        if first & 0x70:
            raise ProtocolError(1002, "Reserved bits set (no extension was negotiated).")
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
        self._check(fin, opcode, size)
        end = offset + 4 + size
        if len(buf) < end:
            return None
        payload = unmask(buf[offset + 4:end], bytes(buf[offset:offset + 4]))
        del buf[:end]
        if opcode in _DATA:
            self._binary = opcode == OP_BINARY
        if opcode not in _CONTROL:
            self._size += size
        return fin, opcode, payload

    def _check(self, fin: bool, opcode: int, size: int) -> None:
        """Refuse a frame from its header alone, before its payload is waited for."""
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
