"""One websocket connection on the reactor: the upgrade, then frames in and replies out.

The worker that reads a connection answers its frames itself, one at a
time and in arrival order (websocket.md §1), so a reply needs no hand-off
between threads. Pushed notifications come from other threads and only
append a frame to the connection's output.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from zaqar.transport.reactor import Channel, Reactor
from zaqar.transport.websocket import frames, handshake, protocol

if TYPE_CHECKING:
    from zaqar.transport.websocket.server import WebSocketServer

LOG = logging.getLogger("zaqar.transport.websocket")


class WebSocketChannel(Channel):
    """Opening (reading the upgrade request), then open, then closing (our close frame sent)."""

    def __init__(
        self, server: WebSocketServer, reactor: Reactor, sock: Any, address: tuple[str, int]
    ) -> None:
        super().__init__(reactor, sock, address)
        settings = server.settings
        self.server = server
        self.id = str(uuid.uuid4())
        self.send_timeout = settings.send_timeout
        self.max_buffered = settings.max_buffered
        self.session = protocol.Session(subscriber=server.notification_url + self.id)
        self._head: bytearray | None = bytearray()  # None once the connection is open
        self._parser = frames.FrameParser(settings.max_frame_size)
        self._handshake_deadline = time.monotonic() + settings.handshake_timeout
        self.closing = False

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
                reply = self.server.answer(self.session, event.data, event.binary)
                self.write(frames.frame(frames.OP_BINARY if event.binary else frames.OP_TEXT, reply))
            else:
                self._control(event)

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
        except handshake.HandshakeError as exc:
            self._refuse(exc)
            return b""
        self._head = None
        self.write(handshake.accept(headers["sec-websocket-key"]))
        self.server.opened(self)
        return rest

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

    def timed_out(self, now: float) -> None:
        if self._head is not None:
            if now > self._handshake_deadline:
                self._refuse(handshake.HandshakeError("handshake took too long", "408 Request Timeout"))
            return
        idle = self.server.settings.idle_timeout
        if idle and not self.closing and now - self.last_received > idle:
            LOG.info("closing idle websocket %s", self.id)
            self.close_with(1001, "Idle timeout.")

    def connection_lost(self) -> None:
        self.server.closed(self)
