"""A process-local read cache for remote stores, kept right across processes by an invalidation channel.

Every post reads its queue's metadata (the API layer applies defaults and
limits from it) and asks whether anyone subscribes to the queue (the
notifier). Both change rarely, but on Redis and PostgreSQL each read is a
network round trip: on a post that is two round trips out of three. So the
Redis and PostgreSQL drivers keep such reads here, under opaque string keys
they choose, and every write that changes one of them tells every process:

* locally, at once: the write invalidates the key before it returns, so this
  process's next read sees it (``invalidate``, also after a failed write,
  which may have been applied);
* remotely, through the store: the write publishes the key on the store's
  invalidation channel atomically with the change itself (``PUBLISH`` inside
  the Lua script or MULTI block on Redis, ``pg_notify`` inside the
  transaction on PostgreSQL, delivered at commit). A ``Listener`` thread per
  driver receives the keys and invalidates them here.

What a client can observe across processes: a write through process B is
seen by process A as soon as B's invalidation reaches A's listener (one
server-to-client hop, normally well under a millisecond); until then A may
answer from the value it had. Nothing stays stale longer than that:

* The read/invalidate race: a value read from the store is stored only if no
  invalidation arrived while it was being read (``generation``), so a read
  that started before a remote write but finished after its invalidation
  cannot put the old value back.
* While the channel is down or reconnecting, invalidations could be missed,
  so the cache is flushed and bypassed (every read goes to the store) until
  the listener is subscribed again. A connection that dies silently is found
  by a heartbeat: no answer within ``heartbeat`` seconds of a ping counts as
  lost, so that is the longest A can miss B's writes while the store itself
  still answers A.
* Nothing negative is cached (a loader returning None): a missing queue
  record appears without any invalidation when a post creates it lazily.
* Values that expire by time (subscriptions) are cached raw, with their
  expiry, and the driver filters them by its own clock on every read.

SQLite has no channel; its driver keeps the same reads in a cache of its own
checked against counters in shared memory (``zaqar.storage.sqlite.generations``).
MySQL/MariaDB (no LISTEN/NOTIFY) reads the store every time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol, TypeVar

LOG = logging.getLogger(__name__)

T = TypeVar("T")

# Keys kept at most; past that the oldest entry goes (insertion order).
MAX_ENTRIES = 50_000
# Seconds the listener waits for a message before it checks whether it should stop.
POLL = 0.5
# Silence after which the listener pings, and how long it then waits for any answer.
HEARTBEAT = 5.0
# Pause between reconnection attempts, doubling from the first to the last.
BACKOFF = (0.05, 5.0)


class Channel(Protocol):
    """One connection to a store's invalidation channel; used by one listener thread only."""

    def subscribe(self) -> None:
        """Connect and subscribe; return once the store confirmed it. Raises on failure."""

    def receive(self, timeout: float) -> list[str] | None:
        """Keys invalidated, waiting at most ``timeout`` s; ``[]`` for other traffic, None for silence.

        Raises when the connection is lost.
        """

    def ping(self) -> None:
        """Ask the store for an answer that a later ``receive`` will report as traffic."""

    def close(self) -> None: ...


class ChannelLost(Exception):
    """The invalidation channel stopped answering."""


class Cache:
    """Cached reads by key, used only while the invalidation channel is subscribed.

    Thread-safe. ``get`` on a hit is a dict lookup; the lock is taken only to
    store, invalidate and flush. The listener is started by the first ``get``,
    so a driver opened only to probe a store never connects a listener.
    """

    def __init__(self, open_channel: Callable[[], Channel], *, name: str,
                 max_entries: int = MAX_ENTRIES, heartbeat: float = HEARTBEAT) -> None:
        self._open_channel, self._name = open_channel, name
        self._max_entries, self._heartbeat = max_entries, heartbeat
        self._entries: dict[str, object] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self._active = False
        self.invalidations = 0  # applied so far, local and remote (for diagnostics and tests)
        self._listener: Listener | None = None
        self._closed = False
        self._ready = threading.Event()
        _ALL.add(self)

    @property
    def active(self) -> bool:
        """Whether reads may be served from memory (the channel is subscribed)."""
        return self._active

    def get(self, key: str, load: Callable[[], T]) -> T:
        """The cached value of ``key``, else ``load()`` (stored unless None or invalidated meanwhile)."""
        found = self._entries.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        if not self._active:
            if self._listener is None and not self._closed:
                self._start()
            return load()
        generation = self._generation
        value = load()
        if value is not None:
            with self._lock:
                if self._generation == generation and self._active:
                    if len(self._entries) >= self._max_entries:
                        del self._entries[next(iter(self._entries))]
                    self._entries[key] = value
        return value

    def wait_active(self, timeout: float) -> bool:
        """Start the listener if needed and wait until reads are cached; False on timeout."""
        if self._listener is None and not self._closed:
            self._start()
        return self._ready.wait(timeout)

    def invalidate(self, key: str) -> None:
        """Forget ``key``, and keep any read in flight from storing what it read."""
        with self._lock:
            self._generation += 1
            self.invalidations += 1
            self._entries.pop(key, None)

    def set_active(self, active: bool) -> None:
        """Flush everything; then cache (the channel is subscribed) or bypass (it is not)."""
        with self._lock:
            self._generation += 1
            self._entries = {}
            self._active = active and not self._closed
            if self._active:
                self._ready.set()
            else:
                self._ready.clear()

    def close(self) -> None:
        """Bypass for good and stop the listener (it exits within ``POLL`` seconds)."""
        self._closed = True
        self.set_active(False)
        if self._listener is not None:
            self._listener.stop()

    def _start(self) -> None:
        with self._lock:
            if self._listener is not None or self._closed:
                return
            self._listener = Listener(self, self._open_channel, name=self._name, heartbeat=self._heartbeat)
        self._listener.start()

    def _after_fork(self) -> None:
        """In a forked child the listener thread does not exist: start from scratch on next use."""
        self._lock = threading.Lock()
        self._generation += 1
        self._entries = {}
        self._active = False
        self._ready = threading.Event()
        self._listener = None


class Uncached:
    """The same interface for stores without an invalidation channel: every read goes to the store."""

    active = False

    def get(self, key: str, load: Callable[[], T]) -> T:
        return load()

    def invalidate(self, key: str) -> None:
        return None

    def wait_active(self, timeout: float) -> bool:
        return False

    def close(self) -> None:
        return None


_MISSING = object()
_ALL: weakref.WeakSet[Cache] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for cache in list(_ALL):
        cache._after_fork()


# NOTE: uwsgi and gunicorn may fork workers after the store was opened (preloading); a child
# inheriting an "active" cache without its listener thread would never see another invalidation.
os.register_at_fork(after_in_child=_reset_after_fork)


class Listener(threading.Thread):
    """Keeps one channel subscribed and applies the keys it delivers; reconnects with back-off."""

    def __init__(self, cache: Cache, open_channel: Callable[[], Channel], *, name: str,
                 heartbeat: float) -> None:
        super().__init__(name=f"zaqar-cache-{name}", daemon=True)
        self._cache, self._open_channel, self._heartbeat = cache, open_channel, heartbeat
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        pause = BACKOFF[0]
        outage = False  # warned about, and not yet over: one warning per outage, not per retry
        while not self._stopping.is_set():
            channel: Channel | None = None
            try:
                channel = self._open_channel()
                channel.subscribe()
                self._cache.set_active(True)
                if outage:
                    LOG.warning("cache invalidation channel %s is back", self.name)
                pause, outage = BACKOFF[0], False
                self._pump(channel)
            except Exception as exc:  # any failure means the same: flush, bypass, reconnect
                if not self._stopping.is_set() and not outage:
                    LOG.warning("cache invalidation channel %s lost (%s: %s); reading the store "
                                "directly until it is back", self.name, type(exc).__name__, exc)
                    outage = True
            finally:
                self._cache.set_active(False)
                if channel is not None:
                    _close_quietly(channel)
            self._stopping.wait(pause)
            pause = min(pause * 2, BACKOFF[1])

    def _pump(self, channel: Channel) -> None:
        heard = time.monotonic()
        pinged: float | None = None
        while not self._stopping.is_set():
            keys = channel.receive(POLL)
            now = time.monotonic()
            if keys is not None:
                heard, pinged = now, None
                for key in keys:
                    self._cache.invalidate(key)
            elif pinged is None and now - heard >= self._heartbeat:
                channel.ping()
                pinged = now
            elif pinged is not None and now - pinged >= self._heartbeat:
                raise ChannelLost(f"no answer to a ping in {self._heartbeat} s")


def _close_quietly(channel: Channel) -> None:
    try:
        channel.close()
    except Exception as exc:  # the connection is being thrown away anyway
        LOG.debug("closing cache channel failed: %s", exc)
