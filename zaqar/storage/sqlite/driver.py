"""The embedded SQLite message store: one database file, no server to run.

URI: ``sqlite:///<absolute path>[?synchronous=full|normal][&consume_synchronous=normal|full]``, e.g.
``sqlite:////var/lib/zaqar/zaqar.sqlite``. Parent directories are created.
"""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable

from zaqar.storage import base, errors
from zaqar.storage.sqlite import schema
from zaqar.storage.sqlite.claims import ClaimController
from zaqar.storage.sqlite.common import Database, unavailable
from zaqar.storage.sqlite.generations import GenerationCache, Generations
from zaqar.storage.sqlite.messages import MessageController
from zaqar.storage.sqlite.queues import QueueController
from zaqar.storage.sqlite.subscriptions import SubscriptionController

_SCHEME = "sqlite://"

# synchronous=full (default): every commit fsyncs the WAL, so a message whose
# post was acknowledged survives a power loss or kernel crash.
# synchronous=normal: the WAL is fsynced only at checkpoints; commits stay
# atomic and survive a crash of the process, but the last acknowledged
# transactions can be lost on power loss. Several times faster on slow disks.
_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}

# consume_synchronous=normal (default): claims and deletes commit without an fsync of
# their own (the next post's fsync covers them). They survive a crash of the process;
# a power loss may undo the last ones, which only makes those messages deliverable
# again: at-least-once delivery already allows that, and no acknowledged post is lost.
# PERF: saves ~70 µs of CPU per delete and ~100 µs per claim (benchmarks/hotpath_bench.py,
# sqlite against sqlite-normal). consume_synchronous=full fsyncs them too.

# gc() deletes in batches so it never holds the write lock long enough to
# stall posters and claimers behind a large backlog of expired messages.
_GC_BATCH = 1000


def parse_uri(uri: str) -> tuple[str, str]:
    """Split a store URI into (absolute file path, SQLite ``synchronous`` level).

    The path is everything after ``sqlite://`` up to ``?`` with its leading
    slashes collapsed, so ``sqlite:////tmp/x`` and ``sqlite:///tmp/x`` both
    mean ``/tmp/x``. Unknown query options are ignored, so one URI can carry
    options for later versions.
    """
    if not uri.startswith(_SCHEME):
        raise errors.BackendUnavailable(reason=f"not a sqlite URI: {uri!r}")
    rest, _, query = uri[len(_SCHEME) :].partition("?")
    path = "/" + rest.lstrip("/") if rest.startswith("/") else rest
    if not os.path.isabs(path) or path == "/":
        raise errors.BackendUnavailable(reason=f"sqlite URI must name an absolute file path: {uri!r}")
    options = urllib.parse.parse_qs(query, keep_blank_values=True)
    level = options.get("synchronous", ["full"])[-1].lower()
    if level not in _SYNCHRONOUS:
        raise errors.BackendUnavailable(reason=f"synchronous must be 'full' or 'normal', not {level!r}")
    return path, _SYNCHRONOUS[level]


def consume_level(uri: str) -> str:
    """The ``synchronous`` level of claims and deletes (``consume_synchronous``, default normal)."""
    query = uri.partition("?")[2]
    level = urllib.parse.parse_qs(query).get("consume_synchronous", ["normal"])[-1].lower()
    if level not in _SYNCHRONOUS:
        raise errors.BackendUnavailable(
            reason=f"consume_synchronous must be 'full' or 'normal', not {level!r}")
    return _SYNCHRONOUS[level]


class DataDriver(base.DataDriver):
    """Message store in one SQLite file; safe to share between threads and processes."""

    capabilities = frozenset(
        {base.Capability.FIFO, base.Capability.CLAIMS, base.Capability.DURABILITY, base.Capability.AOD}
    )

    def __init__(self, uri: str, *, clock: base.Clock = time.time,
                 cache_clock: Callable[[], float] = time.monotonic) -> None:
        """``cache_clock`` (monotonic seconds) ages cached metadata and subscriptions (``generations``)."""
        path, synchronous = parse_uri(uri)
        self._clock = clock
        self._db = Database(path, synchronous, consume_level(uri))
        self._prepare(path)
        try:
            # NOTE: beside the file itself, as SQLite puts its -wal and -shm: a process opening the
            # database through a symbolic link must share the counters of one opening it directly.
            self._cache = GenerationCache(Generations(os.path.realpath(path) + "-gen"), clock=cache_clock)
        except OSError as exc:
            self._db.close()
            raise unavailable(exc) from exc
        self._queues = QueueController(self._db, clock, self._cache)
        self._messages = MessageController(self._db, clock)
        self._claims = ClaimController(self._db, clock)
        self._subscriptions = SubscriptionController(self._db, clock, self._cache)

    def _prepare(self, path: str) -> None:
        """Open the file once now, so a bad path fails at startup rather than on first request."""
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            conn = self._db.connection()
            schema.enable_wal(conn)
            schema.ensure_schema(conn)
        except (OSError, sqlite3.Error, schema.SchemaError) as exc:
            self._db.close()
            raise unavailable(exc) from exc
        except errors.BackendUnavailable:
            self._db.close()
            raise

    @property
    def queues(self) -> QueueController:
        return self._queues

    @property
    def messages(self) -> MessageController:
        return self._messages

    @property
    def claims(self) -> ClaimController:
        return self._claims

    @property
    def subscriptions(self) -> SubscriptionController:
        return self._subscriptions

    def is_alive(self) -> bool:
        try:
            with self._db.read() as conn:
                conn.execute("SELECT 1 FROM queues LIMIT 1").fetchall()
        except Exception:
            return False
        return True

    def gc(self) -> int:
        now = self._clock()
        removed = 0
        while True:
            with self._db.write(consume=True) as conn:
                batch = conn.execute(
                    "DELETE FROM messages WHERE rowid IN"
                    " (SELECT rowid FROM messages WHERE expires <= ? LIMIT ?)",
                    (now, _GC_BATCH),
                ).rowcount
            removed += batch
            if batch < _GC_BATCH:
                break
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM claims WHERE expires <= ? AND NOT EXISTS (SELECT 1 FROM messages AS m"
                " WHERE m.project = claims.project AND m.queue = claims.queue AND m.claim_id = claims.id"
                " AND m.claim_expires > ?)",
                (now, now),
            )
            conn.execute("DELETE FROM subscriptions WHERE expires <= ?", (now,))
        return removed

    def close(self) -> None:
        self._db.close()
        self._cache.close()
