"""RFC 6455 framing for the server side, without sockets: bytes in, messages out.

# PERF: ws4py unmasks every payload byte in a Python loop and validates text
# frames with a Python UTF-8 automaton (~49 µs for a 337-byte JSON request,
# benchmarks/README.md); here a payload is unmasked as one big integer XOR
# (~1 µs) and text is left to the JSON decoder, which rejects bad UTF-8 with
# the protocol's own 400 answer (websocket.md §5) instead of a close.

Refused with a close code (``ProtocolError``): unmasked client frames, reserved
bits or opcodes, fragmented or oversize control frames, a continuation with
nothing to continue or a new message inside a fragmented one (1002).

A data message over ``max_message`` bytes is not a reason to close
(websocket.md §7, §11): it comes out as one ``Oversize`` event (answered with
a 400) as soon as a frame header shows it, and the rest of it is skipped, its
payload dropped as it arrives, never buffered.
Each frame of a fragmented message counts its header toward the limit too, so
empty fragments cannot pile up. Only a message beyond ``discard_limit``
(``DISCARD_LIMIT``, or 4 x ``max_message`` if that is more), which no client
sends by mistake, closes the connection (1009): reading it to the end would
only spend bandwidth on it. Both are decided from frame headers.

permessage-deflate (RFC 7692), once the handshake negotiated it: RSV1 marks
the first frame of a compressed message and nothing else (1002 elsewhere);
the joined payload is inflated with the RFC's ``00 00 ff ff`` tail, never
beyond ``max_message`` bytes into memory (a small frame may inflate to
gigabytes), and data that does not inflate closes with 1007. A compressed
message over the limit (on the wire or once inflated) is skipped too; while
the peer compresses against its previous messages (context takeover) the
skipped part is still inflated, in small pieces that are dropped, so the next
message inflates right; inflating it beyond ``discard_limit`` closes with 1009.
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


@dataclasses.dataclass(frozen=True, slots=True)
class Oversize:
    """A data message over the size limit, skipped unread; the protocol answers it with a 400."""

    binary: bool


# Bytes of one message beyond which skipping it is no longer worth it and the connection closes (1009).
DISCARD_LIMIT = 16 * 1024 * 1024
_CHUNK = 64 * 1024  # bytes a skipped compressed message is inflated at a time, then dropped


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

    def decompress(self, payload: bytes, limit: int, discard_limit: int) -> bytes | None:
        """The message ``payload`` (all fragments, joined) inflated, at most ``limit`` bytes.

        Returns None when it inflates beyond ``limit``: with context takeover the
        rest is inflated (and dropped) anyway, as the peer's next message refers
        to it.

        Raises:
            ProtocolError: 1009 when it inflates beyond ``discard_limit``, 1007
                when it is not valid deflate data.
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
            if not self.params.client_no_context_takeover:
                self._inflater = inflater
                self.skip(inflater.unconsumed_tail, discard_limit - len(data))
            self._end(inflater)
            return None
        self._end(inflater)
        return data

    def skip(self, payload: bytes, budget: int) -> int:
        """Inflate part of a message being skipped, dropping what comes out; returns how much did.

        Only needed with context takeover (``following``), to keep the window in step with the peer's.

        Raises:
            ProtocolError: 1009 beyond ``budget`` bytes, 1007 for invalid data.
        """
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = zlib.decompressobj(-max(9, self.params.client_window_bits))
        produced = 0
        try:
            while True:
                out = inflater.decompress(payload, _CHUNK)
                produced += len(out)
                if produced > budget:
                    raise ProtocolError(1009, "Message too large once inflated.")
                payload = inflater.unconsumed_tail
                if not payload and len(out) < _CHUNK:
                    return produced
        except zlib.error:
            self._inflater = None
            raise ProtocolError(1007, "Invalid compressed data.") from None

    @property
    def following(self) -> bool:
        """Whether a skipped message must still be inflated: the peer's next ones may refer to it."""
        return not self.params.client_no_context_takeover

    def end_skipped(self, budget: int) -> None:
        """The skipped message ended: close it as the peer did (the RFC's tail), ready for the next."""
        inflater = self._inflater
        if inflater is not None:
            self.skip(TAIL, budget)
            self._end(inflater)

    def _end(self, inflater: zlib._Decompress) -> None:
        # A peer that ended its stream (BFINAL, §7.2.3.3 allows it) starts the next one afresh.
        keep = not (self.params.client_no_context_takeover or inflater.eof)
        self._inflater = inflater if keep else None


class FrameParser:
    """Feed bytes with ``feed``; take messages, control frames and oversize notices with ``next_event``.

    ``deflate``: the connection's permessage-deflate codec once negotiated
    (None: RSV1 is refused like the other reserved bits). ``discard_limit``:
    the size of a message beyond which it closes the connection rather than
    being skipped; default ``DISCARD_LIMIT``, or 4 x ``max_message`` if larger.
    """

    def __init__(self, max_message: int, deflate: PerMessageDeflate | None = None,
                 discard_limit: int | None = None) -> None:
        self._buf = bytearray()
        self._max = max_message
        self._discard_limit = max(DISCARD_LIMIT, 4 * max_message) if discard_limit is None else discard_limit
        self._joined: bytearray | None = None  # the fragments so far of a fragmented message
        self._size = 0  # what the message in progress counts against the limits
        self._binary = False
        self._compressed = False  # the message in progress had RSV1 on its first frame
        self.deflate = deflate
        # An oversize message being skipped: the rest of the current frame's payload, whether that
        # frame ends the message, its mask when the inflater must follow (and where in the payload
        # we are), and what its inflating produced so far.
        self._oversize = False
        self._announce = False
        self._skipping = False
        self._skip = 0
        self._skip_fin = False
        self._skip_key: bytes | None = None
        self._skip_at = 0
        self._inflated = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as events."""
        return len(self._buf) + len(self._joined or b"")

    def next_event(self) -> Message | Control | Oversize | None:
        """The next complete message, control frame or skipped message; None until more bytes arrive."""
        while True:
            if self._skipping:
                if not self._skip_payload():
                    return None
                if self._skip_fin:
                    self._end_oversize()
                continue
            parsed = self._next_frame()
            if parsed is None:
                if not self._skipping:
                    return None
                if self._announce:  # the frame just read made its message oversize: say so now
                    self._announce = False
                    return Oversize(self._binary)
                continue
            fin, opcode, payload = parsed
            if opcode in _CONTROL:
                return Control(opcode, payload)
            if self._joined is not None or not fin:
                whole = self._join(fin, payload)
                if whole is None:
                    continue
                payload = whole
            self._size = 0
            if self._compressed:
                return self._inflate(payload)
            return Message(payload, self._binary)

    def _join(self, fin: bool, payload: bytes) -> bytes | None:
        """Add a fragment; the whole message once ``fin``, else None."""
        joined = self._joined
        if joined is None:
            self._joined = bytearray(payload)
            return None
        joined += payload
        if not fin:
            return None
        self._joined = None
        return bytes(joined)

    def _inflate(self, payload: bytes) -> Message | Oversize:
        assert self.deflate is not None  # _check refused RSV1 without it
        inflated = self.deflate.decompress(payload, self._max, self._discard_limit)
        if inflated is None:
            return Oversize(self._binary)
        return Message(inflated, self._binary)

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
        data = opcode not in _CONTROL
        if data:
            # NOTE: a fragmented message's frames count their headers too: empty fragments add up.
            cost = size if fin and self._joined is None else size + offset + 4
            if self._oversize or self._size + cost > self._max:
                return self._start_skip(fin, opcode, first, offset, size, cost)
        end = offset + 4 + size
        if len(buf) < end:
            return None
        payload = unmask(buf[offset + 4:end], bytes(buf[offset:offset + 4]))
        del buf[:end]
        if data:
            self._size += cost
            if opcode != OP_CONTINUATION:
                self._binary = opcode == OP_BINARY
                self._compressed = bool(first & _RSV1)
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
            if self._joined is not None or self._oversize:
                raise ProtocolError(1002, "A new message started inside a fragmented one.")
        elif opcode == OP_CONTINUATION:
            if self._joined is None and not self._oversize:
                raise ProtocolError(1002, "Continuation frame without a message to continue.")
        else:
            raise ProtocolError(1002, f"Unknown opcode {opcode}.")

    # -- oversize messages: skipped, never buffered --------------------------------------------
    def _start_skip(self, fin: bool, opcode: int, first: int, offset: int, size: int, cost: int) -> None:
        """Skip this data frame, its payload as it arrives; None (the frame yields no event now).

        Raises:
            ProtocolError: 1009 once the message passes ``discard_limit``.
        """
        self._size += cost
        if self._size > self._discard_limit:
            raise ProtocolError(1009, "Message too large.")
        buf = self._buf
        if len(buf) < offset + 4:
            self._size -= cost  # counted again once the mask key is here
            return None
        key = bytes(buf[offset:offset + 4])
        del buf[:offset + 4]
        if opcode in _DATA:
            self._binary = opcode == OP_BINARY
            self._compressed = bool(first & _RSV1)
        deflate = self.deflate if self._compressed else None
        following = deflate is not None and deflate.following
        if not self._oversize:  # the message turns oversize here: drop what it had so far, and tell
            self._oversize, self._announce, self._inflated = True, True, 0
            joined, self._joined = self._joined, None
            if following and joined:
                assert deflate is not None
                self._inflated += deflate.skip(bytes(joined), self._discard_limit)
        self._skipping, self._skip, self._skip_fin = True, size, fin
        self._skip_key, self._skip_at = (key if following else None), 0
        return None

    def _skip_payload(self) -> bool:
        """Drop what arrived of the skipped frame's payload (inflating it if need be); True once all."""
        buf = self._buf
        count = min(self._skip, len(buf))
        if count:
            key = self._skip_key
            if key is not None:
                assert self.deflate is not None
                turn = self._skip_at % 4
                chunk = unmask(buf[:count], key[turn:] + key[:turn])
                self._inflated += self.deflate.skip(chunk, self._discard_limit - self._inflated)
                self._skip_at += count
            del buf[:count]
            self._skip -= count
        if self._skip:
            return False
        self._skipping = False
        return True

    def _end_oversize(self) -> None:
        if self._skip_key is not None and self.deflate is not None:
            self.deflate.end_skipped(self._discard_limit - self._inflated)
        # NOTE: without context takeover the inflater was never touched: nothing to reset.
        self._oversize, self._size, self._skip_fin, self._skip_key = False, 0, False, None
