"""One websocket connection: ws4py does the framing, this class only moves bytes.

Frames are read on the server's I/O thread and answered on a worker pool;
each connection's frames are answered one at a time, in arrival order
(websocket.md §1), while different connections proceed in parallel.

No thread ever blocks on a peer: the socket is non-blocking, outgoing bytes
go to a per-connection buffer that the I/O thread flushes when the socket is
writable, and a peer that does not read its replies is throttled (its frames
are no longer read, and no further replies are produced) and finally dropped.
So one slow or hostile client cannot stall the others or grow the server's
memory without bound.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from ws4py.websocket import WebSocket

LOG = logging.getLogger("zaqar.transport.websocket")

FrameHandler = Callable[[bytes, bool], bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    max_frame: int = 320 * 1024  # largest inbound message; larger closes with 1009
    max_pending: int = 8  # frames read but not yet answered; beyond this, stop reading
    max_buffered: int = 4 * 1024 * 1024  # unsent reply bytes; beyond this, stop answering
    stall_timeout: float = 30.0  # seconds a peer may leave replies unread before it is dropped


class ZaqarSocket(WebSocket):  # type: ignore[misc]
    """A server-side connection bound to a frame handler and a worker pool.

    ``on_change`` is called whenever what the connection waits for changes
    (read, write, or to be dropped), so the server can update its poller.
    """

    def __init__(
        self,
        sock: Any,
        handler: FrameHandler,
        workers: Executor,
        limits: Limits,
        on_change: Callable[[ZaqarSocket], None],
    ) -> None:
        super().__init__(sock)
        self.id = str(uuid.uuid4())
        self.fd = sock.fileno()
        self._handler, self._workers, self._limits, self._on_change = handler, workers, limits, on_change
        self._lock = threading.Lock()  # guards _out, _pending, _draining, dead
        self._out = bytearray()
        self._pending: collections.deque[tuple[bytes, bool]] = collections.deque()
        self._draining = False
        self.dead = False  # the peer is gone or was given up on: answer nothing more
        self.last_seen = self.last_sent = time.monotonic()
        self.discard_until: float | None = None
        self.session: Any = None  # the protocol's per-connection state, set by the server

    # -- what the poller should wait for -------------------------------------
    def wants_read(self) -> bool:
        with self._lock:
            return (not self.dead and len(self._pending) < self._limits.max_pending
                    and len(self._out) < self._limits.max_buffered)

    def wants_write(self) -> bool:
        with self._lock:
            return bool(self._out) and not self.dead

    def stalled(self, now: float) -> bool:
        with self._lock:
            return bool(self._out) and now - self.last_sent > self._limits.stall_timeout

    # -- reading (I/O thread) ---------------------------------------------------
    def once(self) -> bool:
        """Read what the socket has and process every complete frame already buffered.

        ws4py's ``once`` handles one buffer's worth per call; without the loop a
        second frame that arrived in the same packet would wait for more input.
        """
        self.last_seen = time.monotonic()
        if self.discard_until is not None:
            return self._discard()
        try:
            if not self._once_checked():
                return False
            while self.buf and not self.terminated and self.discard_until is None:
                if not self._once_checked():
                    return False
        except BlockingIOError:
            return True  # woken without data: nothing to do
        return not self.dead

    def _discard(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return bool(data) and time.monotonic() < (self.discard_until or 0)

    def _once_checked(self) -> bool:
        ok = bool(super().once())
        message = self.stream.message if self.stream is not None else None
        buffered = len(message.data) if message is not None and message.data else 0
        if ok and buffered + self.reading_buffer_size > self._limits.max_frame:
            LOG.info("closing %s: frame over %d bytes", self.id, self._limits.max_frame)
            self.close_and_discard(1009, "Frame too large.")
        return ok

    def close_and_discard(self, code: int, reason: str, linger: float = 2.0) -> None:
        """Send a close frame, then read and drop input for a while before closing the socket.

        Closing a socket with unread input makes the kernel send a reset,
        which can destroy the close frame before the peer reads it; the peer
        would then never learn why (e.g. 1009, frame too large).
        """
        self.close(code, reason)
        self.discard_until = time.monotonic() + linger

    def received_message(self, message: Any) -> None:
        data = bytes(message.data) if message.data is not None else b""
        with self._lock:
            if self.dead:
                return
            self._pending.append((data, bool(message.is_binary)))
        self._schedule()
        self._on_change(self)

    # -- answering (worker threads) ---------------------------------------------
    def _schedule(self) -> None:
        """Start a drain on the pool unless one runs, nothing waits, or the peer is not reading."""
        with self._lock:
            if self._draining or not self._pending or self.dead:
                return
            if len(self._out) >= self._limits.max_buffered:
                return  # resumed by flush() once the peer reads
            self._draining = True
        self._workers.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._pending or self.dead or len(self._out) >= self._limits.max_buffered:
                    self._draining = False
                    break
                data, binary = self._pending.popleft()
            try:
                reply = self._handler(data, binary)
                if self.dead:  # dropped meanwhile: ws4py's stream may already be gone
                    break
                self.send(reply, binary=binary)
            except Exception:
                if not self.dead:
                    LOG.exception("failed to answer a frame on %s; dropping it", self.id)
                self.give_up()
                break
        self._on_change(self)

    # -- writing (any thread) ----------------------------------------------------
    def _write(self, b: bytes) -> None:
        """ws4py's only way out (replies, pongs, closes): buffer, then send what the socket takes."""
        self.send_raw(b)

    def send_raw(self, b: bytes) -> None:
        """Queue bytes exactly as given (also the handshake's 101 reply) and flush what fits."""
        with self._lock:
            if self.dead:
                return
            if not self._out:
                self.last_sent = time.monotonic()  # the stall clock starts with the backlog
            self._out += b
        self.flush()
        self._on_change(self)

    def flush(self) -> None:
        """Send buffered bytes without blocking; resume answering once the backlog is gone."""
        with self._lock:
            while self._out and not self.dead and self.sock is not None:
                try:
                    sent = self.sock.send(self._out)
                except BlockingIOError:
                    break
                except OSError as exc:
                    LOG.debug("peer of %s went away: %s", self.id, exc)
                    self._mark_dead()
                    break
                del self._out[:sent]
                self.last_sent = time.monotonic()
            resume = not self._draining and bool(self._pending) and len(self._out) < self._limits.max_buffered
        if resume:
            self._schedule()

    def give_up(self) -> None:
        """Answer nothing more; the server drops the connection on its next look."""
        with self._lock:
            self._mark_dead()
        self._on_change(self)

    def _mark_dead(self) -> None:
        self.dead = True
        self._pending.clear()
        self._out.clear()

    def unhandled_error(self, error: Exception) -> None:
        LOG.debug("connection %s dropped: %s", self.id, error)
