"""The server core both transports run on: leader/follower workers over one epoll.

Every worker thread waits on the same epoll object. Connections are armed
with ``EPOLLONESHOT``, so the kernel hands a ready connection to exactly one
waiting worker, which reads it, answers every complete request on it in
order, writes the replies and re-arms it. No thread passes work to another.

# PERF: with an I/O thread feeding a worker pool, every request paid a queue
# put, a thread wake-up and a GIL hand-off; serving in the thread that read
# the request cut a bare falcon app's server CPU from 0.34 ms (cheroot) to
# 0.10 ms per request on this 2-core machine (benchmarks/README.md).

Ownership: a channel is *busy* while one thread serves it (a worker after an
event, or the sweeper enforcing a deadline). An event that finds its channel
busy is dropped: the owner re-arms the channel when it is done, and epoll
re-reports whatever is still ready at that moment, so nothing is lost. Other
threads (a notification push) only append to a channel's output under its
lock and, when nobody owns it, flush it and arm ``EPOLLOUT`` themselves.

Nothing here blocks on a peer: sockets are non-blocking, unsent bytes wait
in the channel's buffer, and a peer that stops reading first stops being
read from (``max_buffered``) and is finally dropped (``send_timeout``).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable

LOG = logging.getLogger("zaqar.transport")

_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_HUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_ONESHOT = select.EPOLLONESHOT
_READ_SIZE = 65536
_READS_PER_TURN = 4  # then re-arm, so one fast sender cannot hold a worker forever


class Channel:
    """One accepted connection. Subclasses turn bytes into replies.

    The reactor calls ``data_received``, ``eof_received`` and ``timed_out``
    only from the thread owning the channel, so subclasses need no lock for
    their parsing state; ``write`` may be called from any thread.
    """

    max_buffered = 4 * 1024 * 1024  # unsent bytes beyond which the peer is no longer read
    send_timeout = 30.0  # seconds a peer may leave our bytes unread before it is dropped

    def __init__(self, reactor: Reactor, sock: socket.socket, address: tuple[str, int]) -> None:
        self.reactor = reactor
        self.sock = sock
        self.fd = sock.fileno()
        self.address = address
        self.lock = threading.Lock()  # guards the fields below and the socket's output
        self.busy = False
        self.closed = False
        self.close_when_flushed = False
        self.linger_until: float | None = None  # draining input after our last word, then close
        self.eof = False
        # Input already read but not answered while the output was over ``max_buffered``; the
        # protocol sets it and is called again (``data_received(b"")``) once the peer has read.
        self.backlog = False
        self._out = bytearray()
        self._shut = False
        self.armed = 0  # the event mask epoll holds for us; 0 once an event was delivered
        now = time.monotonic()
        self.last_received = self.last_progress = now

    # -- what subclasses implement ----------------------------------------------------
    def data_received(self, data: bytes) -> None:
        """Bytes arrived; parse them and answer every complete request, in order."""
        raise NotImplementedError

    def eof_received(self) -> None:
        """The peer will send nothing more: by default, finish sending and close."""
        self.close_soon()

    def timed_out(self, now: float) -> None:
        """The sweeper's periodic look, as owner: enforce the protocol's deadlines."""

    def connection_lost(self) -> None:
        """The connection is closed (by either side); release what it holds."""

    # -- output (any thread) ----------------------------------------------------------
    def write(self, data: bytes) -> bool:
        """Queue bytes for the peer and send what the socket takes now; False once closing."""
        with self.lock:
            if self.closed or self.close_when_flushed or self.linger_until is not None:
                return False
            if not self._out:
                self.last_progress = time.monotonic()  # the stall clock starts with the backlog
            self._out += data
            self._flush_locked()
            if not self.busy:
                self._arm_locked()
        return True

    @property
    def buffered(self) -> int:
        return len(self._out)

    def _flush_locked(self) -> None:
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except BlockingIOError:
                return
            except OSError as exc:
                LOG.debug("peer %s went away: %s", self.address, exc)
                self._out.clear()
                self.close_when_flushed = True
                return
            del self._out[:sent]
            self.last_progress = time.monotonic()

    # -- closing (owner) -----------------------------------------------------------------
    def close_soon(self) -> None:
        """Close once every queued byte is sent (an answer that ends the connection)."""
        with self.lock:
            self.close_when_flushed = True

    def finish(self, linger: float = 2.0) -> None:
        """Send what is queued, then read and drop input for up to ``linger`` seconds, then close.

        Closing a socket with unread input makes the kernel send a reset,
        which can destroy our last reply (an error, a close frame) before the
        peer reads it; draining first lets the peer see why it was dropped.
        """
        with self.lock:
            if self.linger_until is None:
                self.linger_until = time.monotonic() + linger

    def close(self) -> None:
        """Close now, dropping unsent output."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self._out.clear()
        self.reactor._forget(self)
        try:
            self.connection_lost()
        except Exception:
            LOG.exception("cleaning up after connection %s failed", self.address)

    # -- the reactor's side (owner) ------------------------------------------------------
    def _serve(self, events: int) -> None:
        if self._out:
            with self.lock:
                self._flush_locked()
        if self.linger_until is not None:
            self._drain()
            return
        if self.backlog and len(self._out) < self.max_buffered:
            self.backlog = False
            self.data_received(b"")
        if self.backlog or self.eof or self.close_when_flushed or len(self._out) >= self.max_buffered:
            return
        if events & (_IN | _HUP):
            for _ in range(_READS_PER_TURN):
                try:
                    data = self.sock.recv(_READ_SIZE)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    self.eof = True
                    self.eof_received()
                    return
                self.last_received = time.monotonic()
                self.data_received(data)
                if self.closed or self.close_when_flushed or self.linger_until is not None:
                    return
                if len(data) < _READ_SIZE or len(self._out) >= self.max_buffered:
                    return

    def _drain(self) -> None:
        with self.lock:
            self._flush_locked()
            flushed = not self._out
        if flushed and not self._shut:
            self._shut = True
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self.close()
                return
        while True:
            try:
                data = self.sock.recv(_READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self.close()
                return
        if time.monotonic() > (self.linger_until or 0):
            self.close()

    def _check_stall(self, now: float) -> bool:
        """Drop a peer that left our bytes unread for ``send_timeout``; True if dropped."""
        if self._out and now - self.last_progress > self.send_timeout:
            LOG.info("dropping %s: %d bytes unread for %ss", self.address, len(self._out), self.send_timeout)
            self.close()
            return True
        return False

    def _release(self) -> None:
        """End of ownership: close if done, else make sure epoll waits for what we need now."""
        with self.lock:
            self.busy = False
            if self.closed:
                return
            done = self.close_when_flushed and not self._out
            if not done:
                self._arm_locked()
        if done:
            self.close()

    def _arm_locked(self) -> None:
        mask = _ONESHOT
        if self.linger_until is not None:
            mask |= _IN
        elif not (self.backlog or self.eof or self.close_when_flushed or len(self._out) >= self.max_buffered):
            mask |= _IN | select.EPOLLRDHUP
        if self._out or self.backlog:  # a backlog resumes on the next writable event
            mask |= _OUT
        if mask == self.armed:
            return
        try:
            self.reactor._epoll.modify(self.fd, mask)
        except OSError as exc:  # closed meanwhile
            LOG.debug("re-arming %s failed: %s", self.address, exc)
            return
        self.armed = mask


ChannelFactory = Callable[["Reactor", socket.socket, tuple[str, int]], Channel]


class Reactor:
    """Listeners, channels and the worker threads that serve them."""

    def __init__(self, name: str, workers: int, *, sweep_interval: float = 0.5) -> None:
        self.name = name
        self._workers = workers
        self._sweep_interval = sweep_interval
        self._epoll = select.epoll()
        self._listeners: dict[int, tuple[socket.socket, ChannelFactory]] = {}
        self._channels: dict[int, Channel] = {}
        self._lock = threading.Lock()  # guards registration against _forget
        self._wake_r, self._wake_w = os.pipe()
        self._running = False
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    # -- set-up ---------------------------------------------------------------------------
    def listen(self, bind: str, port: int, factory: ChannelFactory, backlog: int = 1024) -> socket.socket:
        listener = socket.create_server((bind, port), backlog=backlog, reuse_port=False)
        listener.setblocking(False)
        self._listeners[listener.fileno()] = (listener, factory)
        return listener

    def start(self) -> None:
        self._running = True
        self._epoll.register(self._wake_r, _IN)  # level-triggered: wakes every waiter at stop
        for fd in self._listeners:
            self._epoll.register(fd, _IN | _ONESHOT)
        for index in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"{self.name}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        sweeper = threading.Thread(target=self._sweep_loop, name=f"{self.name}-sweep", daemon=True)
        sweeper.start()
        self._threads.append(sweeper)

    def __len__(self) -> int:
        return len(self._channels)

    def channels(self) -> list[Channel]:
        return list(self._channels.values())

    # -- the workers ----------------------------------------------------------------------
    def _work(self) -> None:
        poll = self._epoll.poll
        while self._running:
            try:
                ready = poll(-1, 1)
            except InterruptedError:
                continue
            for fd, events in ready:
                if fd == self._wake_r:
                    return
                if fd in self._listeners:
                    self._accept(fd)
                    continue
                channel = self._channels.get(fd)
                if channel is not None:
                    self.own(channel, channel._serve, events, delivered=True)

    def own(
        self, channel: Channel, work: Callable[..., None], *args: object, delivered: bool = False
    ) -> bool:
        """Run ``work(*args)`` as the channel's owner; False if another thread owns it now.

        ``delivered``: called for an epoll event, which disarmed the channel
        (EPOLLONESHOT). Recorded under the lock, after any re-arm in flight,
        so the channel's owner re-arms it even when this event is dropped.
        """
        with channel.lock:
            if delivered:
                channel.armed = 0
            if channel.busy or channel.closed:
                return False
            channel.busy = True
        try:
            work(*args)
        except Exception:
            LOG.exception("error serving %s; dropping the connection", channel.address)
            channel.close()
        finally:
            channel._release()
        return True

    def _accept(self, fd: int) -> None:
        listener, factory = self._listeners[fd]
        try:
            for _ in range(64):
                try:
                    sock, address = listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:  # e.g. out of file descriptors: keep serving the others
                    LOG.warning("%s: accept failed: %s", self.name, exc)
                    break
                sock.setblocking(False)
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._adopt(factory(self, sock, address[:2]))
        finally:
            if self._running:
                self._epoll.modify(fd, _IN | _ONESHOT)

    def _adopt(self, channel: Channel) -> None:
        with self._lock:
            self._channels[channel.fd] = channel
            channel.armed = _IN | select.EPOLLRDHUP | _ONESHOT
            self._epoll.register(channel.fd, channel.armed)

    def _forget(self, channel: Channel) -> None:
        with self._lock:
            if self._channels.get(channel.fd) is channel:
                del self._channels[channel.fd]
                try:
                    self._epoll.unregister(channel.fd)
                except OSError as exc:
                    LOG.debug("unregister %s: %s", channel.address, exc)
        try:
            channel.sock.close()
        except OSError as exc:
            LOG.debug("close %s: %s", channel.address, exc)

    # -- deadlines ------------------------------------------------------------------------
    def _sweep_loop(self) -> None:
        while not self._stopped.wait(self._sweep_interval):
            now = time.monotonic()
            for channel in self.channels():
                self.own(channel, self._sweep, channel, now)

    @staticmethod
    def _sweep(channel: Channel, now: float) -> None:
        if channel.linger_until is not None:
            channel._drain()
        elif not channel._check_stall(now):
            channel.timed_out(now)

    # -- shutdown -------------------------------------------------------------------------
    def stop_listening(self) -> None:
        for fd, (listener, _) in list(self._listeners.items()):
            try:
                self._epoll.unregister(fd)
            except OSError as exc:
                LOG.debug("unregister listener: %s", exc)
            listener.close()
        self._listeners.clear()

    def stop(self, channels: Iterable[Channel] = ()) -> None:
        """Stop the workers and close every connection (after ``channels`` had their say)."""
        self.stop_listening()
        self._running = False
        self._stopped.set()
        os.write(self._wake_w, b"x")
        for thread in self._threads:
            thread.join(timeout=5)
        for channel in self.channels():
            channel.close()
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
