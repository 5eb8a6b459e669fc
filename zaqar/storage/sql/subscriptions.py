"""Subscriptions: who gets notified of a queue's messages.

Uniqueness of (project, queue, subscriber) rests on a unique index over the
subscriber's SHA-256 (see ``tables``), so the server arbitrates concurrent
creators: each one first removes an expired holder of the subscriber (an
expired subscription is as good as deleted and must not block a new one),
then inserts inside a savepoint. The loser of a race waits on the winner's
uncommitted index entry, gets a duplicate-key error once the winner commits,
and reads the holder back (at READ COMMITTED a new statement sees the
committed row) to report its id and confirmation.

Ids are 16 hex digits of the clock's microseconds followed by 8 random hex
digits, so they sort in creation order; a per-driver counter keeps them
increasing when the clock stands still (a fake clock, or two creates within
one microsecond).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from zaqar.storage import base, errors
from zaqar.storage.cache import Cache, Uncached
from zaqar.storage.projects import project_key
from zaqar.storage.sql import invalidation
from zaqar.storage.sql.database import Database, Work
from zaqar.storage.sql.tables import subscriptions

s = subscriptions.c

_SUBSCRIPTION_ID = re.compile(r"[0-9a-f]{24}")
_MAX_STAMP = 16**16 - 1

# The columns ``_from_row`` expects, in order.
_COLUMNS = (s.id, s.queue, s.subscriber, s.ttl, s.updated, s.options, s.confirmed)
# What ``live`` keeps in the cache per subscription: ``_COLUMNS`` and the expiry.
_CACHED_COLUMNS = (*_COLUMNS, s.expires)


def is_subscription_id(value: object) -> bool:
    """Whether ``value`` could name a subscription; others are answered without a query."""
    return isinstance(value, str) and _SUBSCRIPTION_ID.fullmatch(value) is not None


def subscriber_hash(subscriber: str) -> str:
    return hashlib.sha256(subscriber.encode("utf-8", "surrogatepass")).hexdigest()


def delete_expired(conn: sa.Connection, now: float) -> int:
    """Remove every expired subscription (garbage collection); return how many went."""
    return int(conn.execute(sa.delete(subscriptions).where(s.expires <= now)).rowcount)


def _of_queue(pk: str, queue: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (s.project == pk, s.queue == queue)


def _from_row(row: Sequence[Any], now: float) -> base.Subscription:
    sid, queue, subscriber, ttl, updated, options, confirmed = row
    return base.Subscription(
        id=sid,
        source=queue,
        subscriber=subscriber,
        ttl=int(ttl),
        age=int(now - updated),
        options=json.loads(options),
        confirmed=bool(confirmed),
    )


def _marker_bound(marker: str) -> str:
    """A bound the server accepts that selects the same ids as ``marker``.

    PostgreSQL text cannot hold NUL. Ids never contain one, so cutting the
    marker at its first NUL changes no comparison with an id: an id either
    differs from the marker before that point or continues the kept prefix
    with a character greater than NUL.
    """
    return marker.split("\x00", 1)[0]


def _taken(
    conn: sa.Connection, pk: str, queue: str, digest: str, now: float
) -> errors.SubscriptionAlreadyExists | None:
    """The error naming the live subscription that holds a subscriber, or None when none does."""
    stmt = sa.select(s.id, s.confirmed).where(
        *_of_queue(pk, queue), s.subscriber_hash == digest, s.expires > now
    )
    holder = conn.execute(stmt).first()
    if holder is None:
        return None
    return errors.SubscriptionAlreadyExists(sid=holder.id, confirmed=bool(holder.confirmed))


def _clear_expired_holder(conn: sa.Connection, pk: str, queue: str, digest: str, now: float) -> None:
    conn.execute(
        sa.delete(subscriptions).where(*_of_queue(pk, queue), s.subscriber_hash == digest, s.expires <= now)
    )


class SubscriptionController(base.SubscriptionController):
    def __init__(self, db: Database, clock: base.Clock, cache: Cache | Uncached | None = None) -> None:
        self._db = db
        self._clock = clock
        self._cache = cache if cache is not None else Uncached()
        self._id_lock = threading.Lock()
        self._last_stamp = -1

    def _write(self, pk: str, queue: str, work: Work[Any]) -> Any:
        """Run ``work`` as a write that changes the queue's subscriptions.

        Every process's cached ``live`` is invalidated: over NOTIFY when the transaction
        commits, and in this process right away, also when the write failed (it may have
        committed).
        """
        key = invalidation.subscriptions_key(pk, queue)
        return invalidation.write_invalidating(self._db, self._cache, key, work)

    def _new_id(self, now: float) -> str:
        with self._id_lock:
            stamp = min(max(int(now * 1_000_000), self._last_stamp + 1, 0), _MAX_STAMP)
            self._last_stamp = stamp
        return f"{stamp:016x}{secrets.token_hex(4)}"

    def create(
        self, project: str | None, queue: str, subscriber: str, ttl: int, options: Mapping[str, Any]
    ) -> str:
        pk = project_key(project)
        digest = subscriber_hash(subscriber)
        raw_options = json.dumps(dict(options))

        def work(conn: sa.Connection) -> str:
            now = self._clock()
            _clear_expired_holder(conn, pk, queue, digest, now)
            sid = self._new_id(now)
            row = {
                "project": pk,
                "queue": queue,
                "id": sid,
                "subscriber": subscriber,
                "subscriber_hash": digest,
                "ttl": ttl,
                "updated": now,
                "expires": now + ttl,
                "options": raw_options,
                "confirmed": False,
            }
            try:
                # The savepoint keeps the transaction usable after a duplicate
                # (PostgreSQL aborts the whole transaction otherwise).
                with conn.begin_nested():
                    conn.execute(sa.insert(subscriptions).values(row))
            except sa_exc.IntegrityError:
                taken = _taken(conn, pk, queue, digest, now)
                if taken is not None:
                    raise taken from None
                # An id collision, or the holder went meanwhile: ``write`` runs it all again.
                raise
            return sid

        sid: str = self._write(pk, queue, work)
        return sid

    def get(self, project: str | None, queue: str, subscription_id: str) -> base.Subscription:
        if not is_subscription_id(subscription_id):
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        pk = project_key(project)

        def work(conn: sa.Connection) -> base.Subscription | None:
            now = self._clock()
            stmt = sa.select(*_COLUMNS).where(*_of_queue(pk, queue), s.id == subscription_id, s.expires > now)
            row = conn.execute(stmt).first()
            return None if row is None else _from_row(row, now)

        found = self._db.read(work)
        if found is None:
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        return found

    def list(
        self, project: str | None, queue: str, *, marker: str | None = None, limit: int = 10
    ) -> list[base.Subscription]:
        if limit <= 0:
            return []
        return self._select(project_key(project), queue, marker, limit)

    def live(self, project: str | None, queue: str) -> list[base.Subscription]:
        # PERF: the notifier asks this on every post, mostly of queues nobody subscribes to.
        # Cached on PostgreSQL as raw rows with their expiry (an empty list too), filtered
        # and aged by this driver's clock on every call, so expiry needs no invalidation.
        pk = project_key(project)
        rows = self._cache.get(invalidation.subscriptions_key(pk, queue), lambda: self._read_rows(pk, queue))
        if not rows:
            return []
        now = self._clock()
        return [_from_row(row[:-1], now) for row in rows if row[-1] > now]

    def _read_rows(self, pk: str, queue: str) -> list[tuple[Any, ...]]:
        """Every subscription of the queue, expired ones too, as ``_CACHED_COLUMNS`` tuples."""
        stmt = sa.select(*_CACHED_COLUMNS).where(*_of_queue(pk, queue)).order_by(s.id)
        rows: list[tuple[Any, ...]] = self._db.read(lambda conn: [tuple(r) for r in conn.execute(stmt)])
        return rows

    def _select(self, pk: str, queue: str, marker: str | None, limit: int | None) -> list[base.Subscription]:
        def work(conn: sa.Connection) -> list[base.Subscription]:
            now = self._clock()
            stmt = sa.select(*_COLUMNS).where(*_of_queue(pk, queue), s.expires > now)
            if marker is not None:
                stmt = stmt.where(s.id > _marker_bound(marker))
            stmt = stmt.order_by(s.id)
            if limit is not None:
                stmt = stmt.limit(limit)
            return [_from_row(row, now) for row in conn.execute(stmt)]

        return self._db.read(work)

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
        if not is_subscription_id(subscription_id):
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        pk = project_key(project)
        raw_options = None if options is None else json.dumps(dict(options))
        digest = None if subscriber is None else subscriber_hash(subscriber)
        key = (*_of_queue(pk, queue), s.id == subscription_id)

        def work(conn: sa.Connection) -> None:
            now = self._clock()
            # FOR UPDATE: a concurrent delete or update of this row waits for this one.
            current = conn.execute(
                sa.select(s.subscriber_hash).where(*key, s.expires > now).with_for_update()
            ).first()
            if current is None:
                raise errors.SubscriptionDoesNotExist(sid=subscription_id)
            values: dict[str, Any] = {}
            if ttl is not None:
                values.update(ttl=ttl, updated=now, expires=now + ttl)
            if raw_options is not None:
                values["options"] = raw_options
            if subscriber is not None and digest is not None:
                values.update(subscriber=subscriber, subscriber_hash=digest)
                if digest != current.subscriber_hash:
                    _clear_expired_holder(conn, pk, queue, digest, now)
            if not values:
                return
            try:
                with conn.begin_nested():
                    conn.execute(sa.update(subscriptions).where(*key).values(values))
            except sa_exc.IntegrityError:
                taken = None if digest is None else _taken(conn, pk, queue, digest, now)
                if taken is not None:
                    raise taken from None
                raise

        self._write(pk, queue, work)

    def confirm(self, project: str | None, queue: str, subscription_id: str, confirmed: bool) -> None:
        if not is_subscription_id(subscription_id):
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        pk = project_key(project)

        def work(conn: sa.Connection) -> int:
            stmt = (
                sa.update(subscriptions)
                .where(*_of_queue(pk, queue), s.id == subscription_id, s.expires > self._clock())
                .values(confirmed=bool(confirmed))
            )
            # MySQL reports matched rather than changed rows (the dialect sets
            # CLIENT_FOUND_ROWS), so confirming twice still counts as found.
            return int(conn.execute(stmt).rowcount)

        if self._write(pk, queue, work) == 0:
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)

    def delete(self, project: str | None, queue: str, subscription_id: str) -> None:
        if not is_subscription_id(subscription_id):
            return
        pk = project_key(project)
        stmt = sa.delete(subscriptions).where(*_of_queue(pk, queue), s.id == subscription_id)
        self._write(pk, queue, lambda conn: conn.execute(stmt))

    def delete_all(self, project: str | None, queue: str) -> None:
        pk = project_key(project)
        stmt = sa.delete(subscriptions).where(*_of_queue(pk, queue))
        self._write(pk, queue, lambda conn: conn.execute(stmt))
