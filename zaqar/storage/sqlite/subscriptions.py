"""Subscriptions: who gets notified of a queue's messages.

Rows live in the ``subscriptions`` table (see ``schema``), independent of the
queue record. A row is live while ``expires > now``; expired rows are
filtered out of every read and deleted by every write on the same queue
before it looks at anything, so an expired subscription never blocks a new
one with the same subscriber. ``gc`` deletes the rest.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from zaqar.storage import base, errors
from zaqar.storage.cache import Uncached
from zaqar.storage.projects import project_key
from zaqar.storage.sqlite.common import Database
from zaqar.storage.sqlite.generations import GenerationCache

# id = 16 hex digits of a creation stamp (microseconds since the epoch, forced
# to grow strictly within a queue and a process) + 8 random hex digits. Equal
# widths make string order equal creation order.
_SUBSCRIPTION_ID = re.compile(r"[0-9a-f]{24}")
_STAMP_DIGITS = 16
_MAX_STAMP = 16**_STAMP_DIGITS - 1

# The columns ``_from_row`` expects, in order.
_COLUMNS = "id, subscriber, ttl, updated, options, confirmed"


def subscriptions_key(pk: str, queue: str) -> str:
    """The cache key of a queue's subscription rows (the shared-counter cache, ``generations``)."""
    return f"s\x1f{pk}\x1f{queue}"


def _is_subscription_id(value: str) -> bool:
    return isinstance(value, str) and _SUBSCRIPTION_ID.fullmatch(value) is not None


class _Stamps:
    """Creation stamps that grow strictly within this process, whatever the clock does.

    The clock may repeat a value (coarse clocks, fake clocks in tests) or step
    back; ids minted by one process still sort in creation order. Across
    processes, the caller passes a floor read under the write lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = -1

    def next(self, now: float, floor: int) -> int:
        with self._lock:
            stamp = max(int(now * 1_000_000), self._last + 1, floor, 0)
            if stamp > _MAX_STAMP:
                raise errors.BackendUnavailable(reason="subscription id space exhausted")
            self._last = stamp
            return stamp


_STAMPS = _Stamps()


def _new_id(stamp: int) -> str:
    return f"{stamp:0{_STAMP_DIGITS}x}{secrets.token_hex(4)}"


def _from_row(queue: str, row: tuple[Any, ...], now: float) -> base.Subscription:
    sid, subscriber, ttl, updated, options, confirmed = row
    return base.Subscription(
        id=sid,
        source=queue,
        subscriber=subscriber,
        ttl=int(ttl),
        age=int(now - updated),
        options=json.loads(options),
        confirmed=bool(confirmed),
    )


def _encode_options(options: Mapping[str, Any]) -> str:
    return json.dumps(dict(options))


def _purge_expired(conn: sqlite3.Connection, pk: str, queue: str, now: float) -> None:
    conn.execute(
        "DELETE FROM subscriptions WHERE project = ? AND queue = ? AND expires <= ?", (pk, queue, now)
    )


def _stamp_floor(conn: sqlite3.Connection, pk: str, queue: str) -> int:
    """One past the newest id's stamp in the queue, so ids grow across processes too."""
    (newest,) = conn.execute(
        "SELECT MAX(id) FROM subscriptions WHERE project = ? AND queue = ?", (pk, queue)
    ).fetchone()
    if newest is None or not _is_subscription_id(newest):
        return 0
    return int(newest[:_STAMP_DIGITS], 16) + 1


def _holder(
    conn: sqlite3.Connection, pk: str, queue: str, subscriber: str, exclude: str | None = None
) -> errors.SubscriptionAlreadyExists | None:
    """The conflict to raise when another row of the queue holds ``subscriber``."""
    row = conn.execute(
        "SELECT id, confirmed FROM subscriptions WHERE project = ? AND queue = ? AND subscriber = ?",
        (pk, queue, subscriber),
    ).fetchone()
    if row is None or row[0] == exclude:
        return None
    return errors.SubscriptionAlreadyExists(sid=row[0], confirmed=bool(row[1]))


class SubscriptionController(base.SubscriptionController):
    def __init__(
        self, db: Database, clock: base.Clock, cache: GenerationCache | Uncached | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        self._cache = cache if cache is not None else Uncached()

    @contextlib.contextmanager
    def _changing(self, pk: str, queue: str) -> Iterator[sqlite3.Connection]:
        """A write transaction on the queue's subscriptions, then every process's cached rows dropped."""
        try:
            with self._db.write() as conn:
                yield conn
        finally:
            self._cache.invalidate(subscriptions_key(pk, queue))  # also after a failed commit

    def create(
        self, project: str | None, queue: str, subscriber: str, ttl: int, options: Mapping[str, Any]
    ) -> str:
        now = self._clock()
        pk = project_key(project)
        encoded = _encode_options(options)
        # The write lock is held from the first statement, so the check and
        # the insert are atomic against every other thread and process.
        with self._changing(pk, queue) as conn:
            floor = _stamp_floor(conn, pk, queue)
            _purge_expired(conn, pk, queue, now)
            conflict = _holder(conn, pk, queue, subscriber)
            if conflict is not None:
                raise conflict
            sid = _new_id(_STAMPS.next(now, floor))
            conn.execute(
                "INSERT INTO subscriptions (project, queue, id, subscriber, ttl, created, updated,"
                " expires, options, confirmed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (pk, queue, sid, subscriber, ttl, now, now, now + ttl, encoded),
            )
        return sid

    def get(self, project: str | None, queue: str, subscription_id: str) -> base.Subscription:
        if not _is_subscription_id(subscription_id):
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        now = self._clock()
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM subscriptions"
                " WHERE project = ? AND queue = ? AND id = ? AND expires > ?",
                (project_key(project), queue, subscription_id, now),
            ).fetchone()
        if row is None:
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        return _from_row(queue, row, now)

    def list(
        self, project: str | None, queue: str, *, marker: str | None = None, limit: int = 10
    ) -> list[base.Subscription]:
        if limit <= 0:
            return []
        now = self._clock()
        sql = f"SELECT {_COLUMNS} FROM subscriptions WHERE project = ? AND queue = ? AND expires > ?"
        params: list[Any] = [project_key(project), queue, now]
        if marker is not None:
            sql += " AND id > ?"
            params.append(marker)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        with self._db.read() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_from_row(queue, row, now) for row in rows]

    def update(
        self,
        project: str | None,
        queue: str,
        subscription_id: str,
        *,
        subscriber: str | None = None,
        ttl: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not _is_subscription_id(subscription_id):
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        now = self._clock()
        pk = project_key(project)
        assignments: list[str] = []
        params: list[Any] = []
        if subscriber is not None:
            assignments.append("subscriber = ?")
            params.append(subscriber)
        if ttl is not None:
            assignments.append("ttl = ?, updated = ?, expires = ?")
            params += [ttl, now, now + ttl]
        if options is not None:
            assignments.append("options = ?")
            params.append(_encode_options(options))
        with self._changing(pk, queue) as conn:
            # Expired rows go first: an expired target is missing, and an
            # expired holder of the new subscriber is no conflict.
            _purge_expired(conn, pk, queue, now)
            found = conn.execute(
                "SELECT 1 FROM subscriptions WHERE project = ? AND queue = ? AND id = ?",
                (pk, queue, subscription_id),
            ).fetchone()
            if found is None:
                raise errors.SubscriptionDoesNotExist(sid=subscription_id)
            if subscriber is not None:
                conflict = _holder(conn, pk, queue, subscriber, exclude=subscription_id)
                if conflict is not None:
                    raise conflict
            if assignments:
                conn.execute(
                    f"UPDATE subscriptions SET {', '.join(assignments)}"
                    " WHERE project = ? AND queue = ? AND id = ?",
                    (*params, pk, queue, subscription_id),
                )

    def confirm(self, project: str | None, queue: str, subscription_id: str, confirmed: bool) -> None:
        if not _is_subscription_id(subscription_id):
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        now = self._clock()
        pk = project_key(project)
        with self._changing(pk, queue) as conn:
            cursor = conn.execute(
                "UPDATE subscriptions SET confirmed = ?"
                " WHERE project = ? AND queue = ? AND id = ? AND expires > ?",
                (1 if confirmed else 0, pk, queue, subscription_id, now),
            )
            if cursor.rowcount == 0:
                raise errors.SubscriptionDoesNotExist(sid=subscription_id)

    def delete(self, project: str | None, queue: str, subscription_id: str) -> None:
        if not _is_subscription_id(subscription_id):
            return
        pk = project_key(project)
        with self._changing(pk, queue) as conn:
            conn.execute(
                "DELETE FROM subscriptions WHERE project = ? AND queue = ? AND id = ?",
                (pk, queue, subscription_id),
            )

    def delete_all(self, project: str | None, queue: str) -> None:
        pk = project_key(project)
        with self._changing(pk, queue) as conn:
            conn.execute("DELETE FROM subscriptions WHERE project = ? AND queue = ?", (pk, queue))

    def live(self, project: str | None, queue: str) -> list[base.Subscription]:
        # PERF: the notifier asks this on every post, mostly of queues nobody subscribes to. The
        # rows are cached (an empty list too) with their expiry and filtered per call, so expiry
        # and age follow this driver's clock without any invalidation.
        pk = project_key(project)
        rows = self._cache.get(subscriptions_key(pk, queue), lambda: self._read_rows(pk, queue))
        if not rows:
            return []
        now = self._clock()
        return [_from_row(queue, row[1:], now) for row in rows if row[0] > now]

    def _read_rows(self, pk: str, queue: str) -> list[tuple[Any, ...]]:
        with self._db.read() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(
                f"SELECT expires, {_COLUMNS} FROM subscriptions WHERE project = ? AND queue = ? ORDER BY id",
                (pk, queue),
            ).fetchall()
        return rows
