"""One websocket connection: ws4py does the framing, this class only moves bytes.

Frames are read on the server's I/O thread and answered on a worker pool;
each connection's frames are answered one at a time, in arrival order
(websocket.md §1), while different connections proceed in parallel.
"""

from __future__ import annotations

import collections
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


class ZaqarSocket(WebSocket):  # type: ignore[misc]
    """A server-side connection bound to a frame handler and a worker pool."""

    def __init__(self, sock: Any, handler: FrameHandler, workers: Executor, max_frame: int) -> None:
        super().__init__(sock)
        self.id = str(uuid.uuid4())
        self._handler, self._workers, self._max_frame = handler, workers, max_frame
        self._write_lock = threading.Lock()
        self._pending: collections.deque[tuple[bytes, bool]] = collections.deque()
        self._pending_lock = threading.Lock()
        self._draining = False
        self.last_seen = time.monotonic()
        self.discard_until: float | None = None

    def close_and_discard(self, code: int, reason: str, linger: float = 2.0) -> None:
        """Send a close frame, then read and drop input for a while before closing the socket.

        Closing a socket with unread input makes the kernel send a reset,
        which can destroy the close frame before the peer reads it; the peer
        would then never learn why (e.g. 1009, frame too large).
        """
        self.close(code, reason)
        self.discard_until = time.monotonic() + linger

    # -- reading (I/O thread) ---------------------------------------------
    def once(self) -> bool:
        """Read what the socket has and process every complete frame already buffered.

        ws4py's ``once`` handles one buffer's worth per call; without the loop a
        second frame that arrived in the same packet would wait for more input.
        """
        self.last_seen = time.monotonic()
        if self.discard_until is not None:
            return self._discard()
        if not self._once_checked():
            return False
        while self.buf and not self.terminated:
            if not self._once_checked():
                return False
        return True

    def _discard(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except OSError:
            return False
        return bool(data) and time.monotonic() < (self.discard_until or 0)

    def _once_checked(self) -> bool:
        ok = bool(super().once())
        message = self.stream.message if self.stream is not None else None
        buffered = len(message.data) if message is not None and message.data else 0
        if ok and buffered + self.reading_buffer_size > self._max_frame:
            LOG.info("closing %s: frame over %d bytes", self.id, self._max_frame)
            self.close_and_discard(1009, "Frame too large.")
        return ok

    def received_message(self, message: Any) -> None:
        data = bytes(message.data) if message.data is not None else b""
        with self._pending_lock:
            self._pending.append((data, bool(message.is_binary)))
            if self._draining:
                return
            self._draining = True
        self._workers.submit(self._drain)

    # -- answering (worker threads) ----------------------------------------
    def _drain(self) -> None:
        while True:
            with self._pending_lock:
                if not self._pending or self.terminated:
                    self._draining = False
                    self._pending.clear()
                    return
                data, binary = self._pending.popleft()
            try:
                reply = self._handler(data, binary)
                self.send(reply, binary=binary)
            except Exception:
                LOG.exception("failed to answer a frame on %s; closing it", self.id)
                self.close(1011, "Internal error.")

    def _write(self, b: bytes) -> None:
        # NOTE: replies (workers), pongs (I/O thread) and closes may race; frames must not interleave.
        with self._write_lock:
            super()._write(b)

    def unhandled_error(self, error: Exception) -> None:
        LOG.debug("connection %s dropped: %s", self.id, error)
