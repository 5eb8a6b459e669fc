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

Connection limits (``ConnectionLimits``, per listener): beyond ``total`` open
connections, or ``per_address`` from one client address, a new connection
gets the listener's refusal (an HTTP 503) and is closed once the peer has had
a moment to read it. Counting costs one dict update under the reactor's lock
per accepted and per closed connection, and nothing when the limits are off.
"""

from __future__ import annotations

import dataclasses
import errno
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
_REFUSAL_LINGER = 1.0  # seconds a refused peer has to read its answer before the socket closes
MAX_LINGERING_REFUSALS = 128  # beyond this, refusals are sent and closed at once (best effort)
_REFUSAL_LOG_INTERVAL = 10.0  # at most one warning per listener this often, however many refusals
# accept() failures that last until connections close: the listener rests until the next sweep.
_STARVED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# Why a connection was refused; passed to ``ConnectionLimits.refusal``.
SERVER_FULL = "server"
ADDRESS_FULL = "address"


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many connections one listener keeps open; 0 means unlimited.

    ``refusal(reason)`` gives the bytes a refused peer is sent before the
    connection closes (``reason`` is ``SERVER_FULL`` or ``ADDRESS_FULL``), so
    it learns why instead of seeing a bare reset.
    """

    total: int = 0
    per_address: int = 0
    refusal: Callable[[str], bytes] | None = None

    @property
    def active(self) -> bool:
        return bool(self.total or self.per_address)


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft open-files limit toward ``wanted`` (never past the hard limit).

    Returns the soft limit now in force. Every connection is a file; many
    systems start services with a soft limit of 1024 and a far higher hard one.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    target = wanted if hard == infinite else min(wanted, hard)
    if soft != infinite and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            LOG.warning("cannot raise the open-files limit to %d: %s", target, exc)
    return wanted if soft == infinite else soft


def address_key(host: str) -> str:
    """The client a connection is counted against: its IPv4 address, or its IPv6 /64.

    One IPv6 host usually holds a whole /64, so counting single IPv6
    addresses would let it open as many connections as it likes.
    """
    if ":" not in host:
        return host
    if host.startswith("::ffff:") and "." in host:  # IPv4-mapped, from a dual-stack listener
        return host[7:]
    try:
        packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
    except OSError:
        return host
    # PERF: inet_pton/ntop take ~0.5 µs here, the ipaddress module ~8 µs.
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8))


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
        self.slot: tuple[_Listener, str] | None = None  # counted against this listener and client
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
                data = self._recv()
                if data is None:
                    break
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

    def _recv(self) -> bytes | None:
        """What the socket has: None when nothing now, ``b""`` when the peer is gone."""
        try:
            return self.sock.recv(_READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return b""

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
        while (data := self._recv()) is not None:
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


class _Refused(Channel):
    """A connection over a limit: sent its refusal, then drained and closed (see ``Channel.finish``)."""

    def __init__(
        self, reactor: Reactor, sock: socket.socket, address: tuple[str, int], answer: bytes
    ) -> None:
        super().__init__(reactor, sock, address)
        self.linger_until = time.monotonic() + _REFUSAL_LINGER
        self._out += answer
        self._flush_locked()  # nobody else knows this channel yet
        if not self._out:
            self._shut = True
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                LOG.debug("shutdown %s: %s", address, exc)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - lingering channels only drain
        return None

    def connection_lost(self) -> None:
        self.reactor._refusal_closed()


ChannelFactory = Callable[["Reactor", socket.socket, tuple[str, int]], Channel]


class _Listener:
    """A listening socket, what it makes of a connection, and its connection counts."""

    __slots__ = ("sock", "factory", "limits", "open", "by_address", "refused", "warned_at", "starved_at")

    def __init__(self, sock: socket.socket, factory: ChannelFactory, limits: ConnectionLimits | None) -> None:
        self.sock, self.factory = sock, factory
        self.limits = limits if limits is not None and limits.active else None
        self.open = 0
        self.by_address: dict[str, int] = {}
        self.refused = 0  # since the last warning
        self.warned_at = 0.0
        self.starved_at = -_REFUSAL_LOG_INTERVAL  # last warning that accept() failed (no fds)


class Reactor:
    """Listeners, channels and the worker threads that serve them."""

    def __init__(self, name: str, workers: int, *, sweep_interval: float = 0.5) -> None:
        self.name = name
        self._workers = workers
        self._sweep_interval = sweep_interval
        self._epoll = select.epoll()
        self._listeners: dict[int, _Listener] = {}
        self._channels: dict[int, Channel] = {}
        self._lock = threading.Lock()  # guards registration and connection counts against _forget
        self._starved: set[int] = set()  # listeners resting after accept() ran out of descriptors
        self._lingering = 0  # refused connections still being drained
        self._wake_r, self._wake_w = os.pipe()
        self._running = False
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    # -- set-up ---------------------------------------------------------------------------
    def listen(
        self, bind: str, port: int, factory: ChannelFactory, backlog: int = 1024,
        limits: ConnectionLimits | None = None,
    ) -> socket.socket:
        """Accept connections on ``bind:port``, each served by ``factory``'s channel, within ``limits``."""
        listener = socket.create_server((bind, port), backlog=backlog, reuse_port=False)
        listener.setblocking(False)
        self._listeners[listener.fileno()] = _Listener(listener, factory, limits)
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
        listener = self._listeners[fd]
        starved = False
        try:
            for _ in range(64):
                try:
                    sock, address = listener.sock.accept()
                except BlockingIOError:
                    break
                except OSError as exc:  # e.g. out of file descriptors: keep serving the others
                    # NOTE: the connection stays queued, so a listener re-armed at once is ready
                    # at once: workers spun at 100 % CPU logging 100,000 warnings a second.
                    starved = exc.errno in _STARVED
                    now = time.monotonic()
                    if not starved or now - listener.starved_at >= _REFUSAL_LOG_INTERVAL:
                        LOG.warning("%s: accept failed: %s", self.name, exc)
                        listener.starved_at = now if starved else listener.starved_at
                    break
                sock.setblocking(False)
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                address = address[:2]
                slot = None
                if listener.limits is not None:
                    key = address_key(address[0]) if listener.limits.per_address else ""
                    refused = self._admit(listener, key)
                    if refused is not None:
                        self._refuse(listener, sock, address, refused)
                        continue
                    slot = (listener, key)
                self._open(listener, sock, address, slot)
        finally:
            if starved:
                with self._lock:
                    self._starved.add(fd)  # re-armed by the next sweep
            elif self._running:
                self._rearm_listener(fd)

    def _rearm_listener(self, fd: int) -> None:
        try:
            self._epoll.modify(fd, _IN | _ONESHOT)
        except OSError as exc:  # NOTE: stop_listening() closed it meanwhile
            LOG.debug("%s: re-arming a listener failed: %s", self.name, exc)

    def _open(self, listener: _Listener, sock: socket.socket, address: tuple[str, int],
              slot: tuple[_Listener, str] | None) -> None:
        try:
            channel = listener.factory(self, sock, address)
        except Exception:
            LOG.exception("%s: setting up a connection from %s failed", self.name, address)
            if slot is not None:
                self._release_slot(slot)
            sock.close()
            return
        channel.slot = slot
        self._adopt(channel)

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
            slot, channel.slot = channel.slot, None
            if slot is not None:
                self._release_locked(slot)
        try:
            channel.sock.close()
        except OSError as exc:
            LOG.debug("close %s: %s", channel.address, exc)

    # -- connection limits ----------------------------------------------------------------
    def _admit(self, listener: _Listener, key: str) -> str | None:
        """Count a new connection against ``listener``; the reason it is refused instead, if any."""
        limits = listener.limits
        assert limits is not None
        with self._lock:
            if limits.total and listener.open >= limits.total:
                return SERVER_FULL
            if limits.per_address:
                count = listener.by_address.get(key, 0)
                if count >= limits.per_address:
                    return ADDRESS_FULL
                listener.by_address[key] = count + 1
            listener.open += 1
        return None

    def _release_slot(self, slot: tuple[_Listener, str]) -> None:
        with self._lock:
            self._release_locked(slot)

    @staticmethod
    def _release_locked(slot: tuple[_Listener, str]) -> None:
        listener, key = slot
        listener.open -= 1
        if listener.limits is not None and listener.limits.per_address:
            count = listener.by_address[key] - 1
            if count:
                listener.by_address[key] = count
            else:
                del listener.by_address[key]

    def _refuse(
        self, listener: _Listener, sock: socket.socket, address: tuple[str, int], reason: str
    ) -> None:
        """Tell the peer why (the listener's refusal) and close, without serving it."""
        limits = listener.limits
        assert limits is not None
        self._log_refusal(listener, reason)
        answer = limits.refusal(reason) if limits.refusal is not None else b""
        with self._lock:
            linger = bool(answer) and self._lingering < MAX_LINGERING_REFUSALS
            if linger:
                self._lingering += 1
        if not linger:
            # NOTE: under a connection flood, no fd waits on a peer: answer what fits and close.
            try:
                sock.send(answer)
            except OSError:
                pass
            sock.close()
            return
        self._adopt(_Refused(self, sock, address, answer))

    def _refusal_closed(self) -> None:
        with self._lock:
            self._lingering -= 1

    def _log_refusal(self, listener: _Listener, reason: str) -> None:
        """One warning per ``_REFUSAL_LOG_INTERVAL``: a connection flood must not flood the log too."""
        listener.refused += 1
        now = time.monotonic()
        if now - listener.warned_at >= _REFUSAL_LOG_INTERVAL:
            limits = listener.limits
            assert limits is not None
            what = (f"{limits.total} connections" if reason == SERVER_FULL
                    else f"{limits.per_address} connections from one address")
            LOG.warning("%s: refused %d connection(s) since the last warning: at most %s", self.name,
                        listener.refused, what)
            listener.refused, listener.warned_at = 0, now

    # -- deadlines ------------------------------------------------------------------------
    def _sweep_loop(self) -> None:
        while not self._stopped.wait(self._sweep_interval):
            with self._lock:
                starved, self._starved = self._starved, set()
            for fd in starved:
                if self._running and fd in self._listeners:
                    self._rearm_listener(fd)
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
        for fd, listener in list(self._listeners.items()):
            try:
                self._epoll.unregister(fd)
            except OSError as exc:
                LOG.debug("unregister listener: %s", exc)
            listener.sock.close()
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
