"""A read cache for the SQLite store that every process sharing the database file keeps right.

Why: every post reads its queue's metadata (the API layer applies defaults
and limits from it) and asks whether anyone subscribes to the queue (the
notifier); both change rarely. On SQLite each read is a transaction: ~15 µs
of CPU and three places where the worker thread lets go of the GIL, and on a
loaded server every such place is where the other workers convoy. Processes
may share one database file (uwsgi or gunicorn workers, several
zaqar-server processes), so a cache in one process must learn of another's
writes, and SQLite has no channel to tell it.

How: a small file beside the database (``<database>-gen``) holds ``SLOTS``
64-bit counters, mapped into every process that opens the database, as
SQLite maps its own ``-shm`` file. A key hashes to a slot. A write that
changes a cached key commits first, then increments the key's slot (under
a lock, so increments from many threads and processes never collide). A
read notes the slot's value *before* it loads from the database, and the
entry is served only while the slot still holds that value. A value loaded
before a commit is therefore dropped as soon as the writer's increment
lands, and that is before the writer's own request is answered: once a
client saw its write acknowledged, no process serves it the old value.

The one gap is a writer that dies between its commit and its increment (or
a tool changing the file without zaqar): entries older than ``MAX_AGE``
seconds are loaded again whatever the counters say, which bounds it.
Nothing negative is cached (a loader returning None), because a post
creates a queue record lazily without incrementing anything.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

SLOTS = 1024  # a power of two: keys sharing a slot only invalidate each other now and then
MAX_AGE = 5.0  # seconds an entry may be served without being loaded again
MAX_ENTRIES = 50_000  # past that the oldest entry goes (insertion order)

_COUNTER = struct.Struct("<Q")
_SIZE = SLOTS * _COUNTER.size


def slot_of(key: str) -> int:
    """The counter guarding ``key``: the same in every process (``hash()`` is salted per process)."""
    return zlib.crc32(key.encode()) & (SLOTS - 1)


class Generations:
    """The shared counters of one database file."""

    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask applies, as to the database
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)  # new bytes read as zero; a racing process does the same
            self._map = mmap.mmap(fd, _SIZE)  # MAP_SHARED: every process sees every increment
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._lock = threading.Lock()  # flock serialises processes; threads share this fd's lock

    def read(self, slot: int) -> int:
        value: int = _COUNTER.unpack_from(self._map, slot * _COUNTER.size)[0]
        return value

    def bump(self, slot: int) -> None:
        offset = slot * _COUNTER.size
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                _COUNTER.pack_into(self._map, offset, _COUNTER.unpack_from(self._map, offset)[0] + 1)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if not self._map.closed:
                self._map.close()
                os.close(self._fd)


class GenerationCache:
    """Cached reads by key, checked against the shared counters on every hit.

    Thread-safe: entries are replaced whole, and a hit costs a dict lookup and
    one 8-byte read of shared memory. ``clock`` (monotonic seconds) ages entries.
    """

    def __init__(self, generations: Generations, *, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_ENTRIES) -> None:
        self._generations, self._clock, self._max_entries = generations, clock, max_entries
        self._entries: dict[str, tuple[int, int, float, object]] = {}  # key -> (slot, counter, at, value)
        self._closed = False
        self.loads = 0  # reads that went to the database (for tests and diagnostics)

    def get(self, key: str, load: Callable[[], T]) -> T:
        """The cached value of ``key``, else ``load()`` (kept unless it is None)."""
        if self._closed:
            return load()  # the closed store raises its own error
        entry = self._entries.get(key)
        slot = entry[0] if entry is not None else slot_of(key)
        counter = self._generations.read(slot)
        now = self._clock()
        if entry is not None and entry[1] == counter and now - entry[2] < MAX_AGE:
            return entry[3]  # type: ignore[return-value]
        self.loads += 1
        value = load()
        if value is not None:
            if key not in self._entries and len(self._entries) >= self._max_entries:
                self._evict_oldest()
            self._entries[key] = (slot, counter, now, value)
        return value

    def _evict_oldest(self) -> None:
        try:
            oldest = next(iter(self._entries))
        except (RuntimeError, StopIteration):
            # NOTE: another thread changed the dict while this one looked (it is not locked, so
            # hits stay a lookup): nothing is evicted now, and the next load over the cap tries again.
            return
        self._entries.pop(oldest, None)

    def invalidate(self, key: str) -> None:
        """After a committed (or possibly committed) write of ``key``: every process reloads it."""
        self._entries.pop(key, None)
        if not self._closed:
            self._generations.bump(slot_of(key))

    def close(self) -> None:
        self._closed = True
        self._entries = {}
        self._generations.close()
