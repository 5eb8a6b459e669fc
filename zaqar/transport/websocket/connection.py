"""One websocket connection on the reactor: the upgrade, then frames in and replies out.

The worker that reads a connection answers its frames itself, one at a
time and in arrival order (websocket.md §1), so a reply needs no hand-off
between threads. Pushed notifications come from other threads and only
append a frame to the connection's output.

With permessage-deflate and context takeover, the peer inflates messages in
the order they reach the wire, each against the ones before: so a compressed
message is compressed and queued in one step under ``send_lock``, whichever
thread sends it (``send_message``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from zaqar.transport.reactor import Channel, Reactor
from zaqar.transport.websocket import frames, handshake, protocol

if TYPE_CHECKING:
    from zaqar.transport.websocket.server import WebSocketServer

LOG = logging.getLogger("zaqar.transport.websocket")
MIN_COMPRESSED = 64  # bytes of payload below which a message is sent uncompressed
# PERF: seconds without a compressed message after which a connection's compressor (~21 KiB) is
# freed: 1000 more deflate connections beside 1000 quiet for 12 s grew RSS by 16.5 KiB each, not 34.
DEFLATE_IDLE = 10.0


# TCP keep-alive: a peer gone without a FIN or RST (NAT timeout, power loss) is found after about
# 60 + 4 x 15 s and its connection closed, where it otherwise held its slot (and its subscriptions)
# for good with idle_timeout at its default of 0.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 60, 15, 4


def _keep_alive(sock: Any) -> None:
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE), ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
                          ("TCP_KEEPCNT", KEEPALIVE_PROBES)):
        if hasattr(socket, option):  # Linux; elsewhere the system's defaults apply
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class WebSocketChannel(Channel):
    """Opening (reading the upgrade request), then open, then closing (our close frame sent)."""

    def __init__(
        self, server: WebSocketServer, reactor: Reactor, sock: Any, address: tuple[str, int]
    ) -> None:
        super().__init__(reactor, sock, address)
        _keep_alive(sock)
        settings = server.settings
        self.server = server
        self.id = str(uuid.uuid4())
        self.send_timeout = settings.send_timeout
        self.max_buffered = settings.max_buffered
        self.session = protocol.Session(subscriber=server.notification_url + self.id,
                                        push_token=server.push_token(self.id))
        self._head: bytearray | None = bytearray()  # None once the connection is open
        self._max_frame = settings.max_frame_size
        self._parser = frames.FrameParser(settings.max_frame_size)
        self._handshake_deadline = time.monotonic() + settings.handshake_timeout
        self.closing = False
        self._overflowed = False  # pushes outran what the peer reads: closed by the next sweep
        self.deflate: frames.PerMessageDeflate | None = None  # set by the handshake when negotiated
        self.send_lock: threading.Lock | None = None  # with deflate: compress + queue, atomically

    # -- input ---------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._head is not None:
            data = self._opening(data)
            if self._head is not None or self.closing:
                return
        parser = self._parser
        parser.feed(data)
        while not self.closing:
            if self.buffered >= self.max_buffered:
                self.backlog = True  # answered once the peer reads what it was sent
                return
            try:
                event = parser.next_event()
            except frames.ProtocolError as exc:
                LOG.info("closing websocket %s: %s", self.id, exc.reason)
                self.close_with(exc.code, exc.reason)
                return
            if event is None:
                return
            if isinstance(event, frames.Message):
                self.send_message(self.server.answer(self.session, event.data, event.binary), event.binary)
            elif isinstance(event, frames.Control):
                self._control(event)
            else:  # skipped unread, too large: answered, and the connection goes on (websocket.md §7)
                LOG.debug("websocket %s sent a message over %d bytes", self.id, self._max_frame)
                self.send_message(protocol.oversize(event.binary, self._max_frame), event.binary)

    def _opening(self, data: bytes) -> bytes:
        """Collect the upgrade request; answer it; return the bytes that followed it."""
        assert self._head is not None
        self._head += data
        head, found, rest = bytes(self._head).partition(b"\r\n\r\n")
        if not found:
            if len(self._head) > handshake.MAX_HEAD:
                self._refuse(handshake.HandshakeError("request head too large",
                                                      "431 Request Header Fields Too Large"))
            return b""
        try:
            headers = handshake.parse(head)
            handshake.check_origin(self.server.origins, headers)
        except handshake.HandshakeError as exc:
            self._refuse(exc)
            return b""
        self._head = None
        agreed = None
        if self.server.settings.permessage_deflate:
            agreed = handshake.negotiate_deflate(headers.get("sec-websocket-extensions"))
        if agreed is not None:
            # Before ``opened``: no push can reach this connection before its codec is in place.
            self.deflate = self._parser.deflate = frames.PerMessageDeflate(agreed[0])
            self.send_lock = threading.Lock()
        self.write(handshake.accept(headers["sec-websocket-key"], agreed[1] if agreed else None))
        self.server.opened(self)
        return rest

    # -- output (any thread) ------------------------------------------------------------------
    def send_message(self, payload: bytes, binary: bool) -> bool:
        """Queue one data message (compressed when that pays); False once the connection is closing.

        # PERF: payloads under MIN_COMPRESSED bytes go as they are: a 33-byte push
        # unlike anything before it deflates to 33 bytes (65 to 59, 105 to 77) for
        # ~1.7 µs of zlib against ~0.2 µs to frame it plainly.
        """
        opcode = frames.OP_BINARY if binary else frames.OP_TEXT
        deflate, lock = self.deflate, self.send_lock
        if deflate is None or lock is None or len(payload) < MIN_COMPRESSED:
            return self.write(frames.frame(opcode, payload))
        with lock:  # the compressor's order is the wire's order
            return self.write(frames.frame(opcode, deflate.compress(payload), compressed=True))

    def _refuse(self, error: handshake.HandshakeError) -> None:
        LOG.info("refused websocket handshake from %s: %s", self.address[0], error)
        self.closing = True
        self.write(handshake.refuse(error))
        self.finish()

    def _control(self, event: frames.Control) -> None:
        if event.opcode == frames.OP_PING:
            self.write(frames.frame(frames.OP_PONG, event.payload))
        elif event.opcode == frames.OP_CLOSE:
            try:
                code = frames.close_code(event.payload)
            except frames.ProtocolError as exc:
                self.close_with(exc.code, exc.reason)
                return
            self.close_with(1000 if code is None else code, "")  # the closing handshake's echo

    def eof_received(self) -> None:
        self.close()  # no close frame: the peer is gone, replies included

    # -- closing -------------------------------------------------------------------------------
    def close_with(self, code: int, reason: str, linger: float = 2.0) -> None:
        """Send a close frame and stop answering; the connection ends once the peer has it."""
        if self.closing:
            return
        self.closing = True
        self.write(frames.close_frame(code, reason))
        self.finish(linger)

    def overflowed(self) -> None:
        """A push was dropped: too much unsent output (any thread; the sweeper closes, as owner)."""
        if not self._overflowed:
            self._overflowed = True
            LOG.warning("websocket %s does not read its pushes (%d bytes unsent): closing it", self.id,
                        self.buffered)

    def timed_out(self, now: float) -> None:
        if self._overflowed and not self.closing:
            self.close_with(1008, "Pushes are not being read.")
            return
        if self._head is not None:
            if now > self._handshake_deadline:
                self._refuse(handshake.HandshakeError("handshake took too long", "408 Request Timeout"))
            return
        self._release_idle_compressor(now)
        deadline = self.session.auth_deadline
        if deadline is not None and now >= deadline and not self.closing:
            LOG.info("closing websocket %s: its token expired", self.id)
            self.close_with(4003, "Authentication expired.")  # websocket.md §8.1
            return
        idle = self.server.settings.idle_timeout
        if idle and not self.closing and now - self.last_received > idle:
            LOG.info("closing idle websocket %s", self.id)
            self.close_with(1001, "Idle timeout.")

    def _release_idle_compressor(self, now: float) -> None:
        """Free the compressor of a connection quiet for DEFLATE_IDLE seconds (~21 KiB each).

        A subscriber pushed to now and then, or a client that went quiet, then
        keeps only its inflater; the next message compresses from an empty window.
        """
        deflate, lock = self.deflate, self.send_lock
        if deflate is not None and lock is not None and deflate.idle(now, DEFLATE_IDLE):
            with lock:  # a push may be compressing right now
                deflate.release_idle(now, DEFLATE_IDLE)

    def connection_lost(self) -> None:
        self.server.closed(self)
