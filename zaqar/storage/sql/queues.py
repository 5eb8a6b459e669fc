"""Queue records, their metadata and their statistics.

Also home of the two statements on the queue row that posting and
dead-lettering share (lazy creation and sequence allocation), because they
differ between PostgreSQL and MySQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql, postgresql

from zaqar.storage import base, errors
from zaqar.storage.cache import Cache, Uncached
from zaqar.storage.projects import project_key
from zaqar.storage.sql import invalidation
from zaqar.storage.sql.database import Database
from zaqar.storage.sql.tables import claims, messages, queues

_MISSING = object()
# Rows fetched per round trip while filtering queues by metadata.
_FILTER_PAGE = 200


def _key(pk: str, name: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (queues.c.project == pk, queues.c.name == name)


def create_if_missing(conn: sa.Connection, pk: str, name: str, metadata: str) -> bool:
    """Insert the queue record unless it exists; True if this call created it."""
    row = {"project": pk, "name": name, "metadata": metadata, "seq": 0}
    if conn.dialect.name == "postgresql":
        stmt = postgresql.insert(queues).values(row).on_conflict_do_nothing().returning(queues.c.seq)
        return conn.execute(stmt).first() is not None
    # MySQL has no "do nothing" that tells whether a row was inserted (INSERT
    # IGNORE also hides unrelated errors), so a savepoint confines the duplicate.
    try:
        with conn.begin_nested():
            conn.execute(sa.insert(queues).values(row))
    except sa_exc.IntegrityError:
        return False
    return True


def reserve_seqs(conn: sa.Connection, pk: str, name: str, count: int) -> int:
    """Reserve ``count`` consecutive positions at the end of the queue; return the first.

    Creates the queue record when missing (lazy creation) in the same atomic
    statement that bumps its counter, which also locks the row until the
    transaction ends: concurrent posters get disjoint, increasing ranges and
    commit one after another, each batch contiguous.
    """
    row = {"project": pk, "name": name, "metadata": "{}", "seq": count}
    if conn.dialect.name == "postgresql":
        pg_stmt = (
            postgresql.insert(queues)
            .values(row)
            .on_conflict_do_update(
                index_elements=[queues.c.project, queues.c.name], set_={"seq": queues.c.seq + count}
            )
            .returning(queues.c.seq)
        )
        last = conn.execute(pg_stmt).scalar_one()
    else:
        my_stmt = mysql.insert(queues).values(row).on_duplicate_key_update(seq=queues.c.seq + count)
        conn.execute(my_stmt)
        last = conn.execute(sa.select(queues.c.seq).where(*_key(pk, name))).scalar_one()
    return int(last) - count + 1


def _matches(metadata: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    return all(metadata.get(key, _MISSING) == value for key, value in filters.items())


def _stamp(conn: sa.Connection, live: tuple[sa.ColumnElement[bool], ...], newest: bool) -> base.MessageStamp:
    order = messages.c.seq.desc() if newest else messages.c.seq
    mid, created = conn.execute(
        sa.select(messages.c.id, messages.c.created).where(*live).order_by(order).limit(1)
    ).one()
    return base.MessageStamp(id=mid, created=float(created))


class QueueController(base.QueueController):
    def __init__(self, db: Database, clock: base.Clock, cache: Cache | Uncached | None = None) -> None:
        self._db = db
        self._clock = clock
        self._cache = cache if cache is not None else Uncached()

    def create(self, project: str | None, name: str, metadata: Mapping[str, Any]) -> bool:
        raw = json.dumps(dict(metadata))
        return self._db.write(lambda conn: create_if_missing(conn, project_key(project), name, raw))

    def exists(self, project: str | None, name: str) -> bool:
        stmt = sa.select(sa.literal(1)).where(*_key(project_key(project), name))
        return self._db.read(lambda conn: conn.execute(stmt).first() is not None)

    def get_metadata(self, project: str | None, name: str) -> dict[str, Any]:
        # PERF: cached on PostgreSQL (the raw JSON, decoded per call so callers may change
        # what they get): every post and claim reads it, and a read transaction costs
        # ~1 ms of client CPU through the pool (pre-ping, isolation, BEGIN, SELECT, COMMIT).
        pk = project_key(project)
        raw = self._cache.get(invalidation.metadata_key(pk, name), lambda: self._read_metadata(pk, name))
        if raw is None:
            raise errors.QueueDoesNotExist(name=name, project=project)
        metadata: dict[str, Any] = json.loads(raw)
        return metadata

    def _read_metadata(self, pk: str, name: str) -> str | None:
        stmt = sa.select(queues.c.metadata).where(*_key(pk, name))
        raw: str | None = self._db.read(lambda conn: conn.execute(stmt).scalar())
        return raw

    def _changing(self, pk: str, name: str, work: Callable[[sa.Connection], Any]) -> Any:
        """Run ``work`` as a write that changes the queue's metadata (or drops the record).

        Every process's cached copy is invalidated: over NOTIFY when the transaction commits,
        and in this process right away, also when the write failed (it may have committed).
        """
        key = invalidation.metadata_key(pk, name)
        return invalidation.write_invalidating(self._db, self._cache, key, work)

    def set_metadata(self, project: str | None, name: str, metadata: Mapping[str, Any]) -> None:
        pk = project_key(project)
        stmt = sa.update(queues).where(*_key(pk, name)).values(metadata=json.dumps(dict(metadata)))
        # MySQL reports matched rather than changed rows (the dialect sets
        # CLIENT_FOUND_ROWS), so an unchanged document still counts as found.
        if self._changing(pk, name, lambda conn: conn.execute(stmt).rowcount) == 0:
            raise errors.QueueDoesNotExist(name=name, project=project)

    def update_metadata(
        self,
        project: str | None,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> dict[str, Any]:
        pk = project_key(project)
        key = _key(pk, name)
        # FOR UPDATE locks the queue row until the transaction ends, so a
        # concurrent update waits here and then reads what this one stored
        # (at READ COMMITTED a locking read sees the latest committed row).
        read = sa.select(queues.c.metadata).where(*key).with_for_update()

        def work(conn: sa.Connection) -> dict[str, Any]:
            raw = conn.execute(read).scalar()
            if raw is None:
                raise errors.QueueDoesNotExist(name=name, project=project)
            updated = change(json.loads(raw))
            conn.execute(sa.update(queues).where(*key).values(metadata=json.dumps(dict(updated))))
            return updated

        # An exception from ``change`` leaves ``work`` and rolls the transaction
        # back; ``write`` reruns ``work`` (and so ``change``) only when the server
        # aborted the transaction to break a deadlock.
        updated: dict[str, Any] = self._changing(pk, name, work)
        return updated

    def delete(self, project: str | None, name: str) -> None:
        pk = project_key(project)

        def work(conn: sa.Connection) -> None:
            # The queue row first: it waits for posters holding it, so the
            # message delete that follows sees everything they committed.
            conn.execute(sa.delete(queues).where(*_key(pk, name)))
            conn.execute(sa.delete(messages).where(messages.c.project == pk, messages.c.queue == name))
            conn.execute(sa.delete(claims).where(claims.c.project == pk, claims.c.queue == name))

        self._changing(pk, name, work)

    def list(
        self,
        project: str | None,
        *,
        marker: str | None = None,
        limit: int = 10,
        name: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[base.QueueInfo]:
        if limit <= 0:
            return []
        pk = project_key(project)
        if not filters:
            rows = self._db.read(lambda conn: conn.execute(self._page(pk, marker, name, limit)).all())
            return [base.QueueInfo(name=row.name, metadata=json.loads(row.metadata)) for row in rows]
        wanted = dict(filters)
        return self._db.read(lambda conn: self._filtered(conn, pk, marker, name, wanted, limit))

    @staticmethod
    def _page(pk: str, after: str | None, name: str | None, limit: int) -> sa.Select[Any]:
        stmt = sa.select(queues.c.name, queues.c.metadata).where(queues.c.project == pk)
        if after is not None:
            stmt = stmt.where(queues.c.name > after)
        if name is not None:
            # autoescape makes % and _ literal: the filter is a plain substring test.
            stmt = stmt.where(queues.c.name.contains(name, autoescape=True))
        return stmt.order_by(queues.c.name).limit(limit)

    def _filtered(
        self,
        conn: sa.Connection,
        pk: str,
        after: str | None,
        name: str | None,
        filters: Mapping[str, Any],
        limit: int,
    ) -> list[base.QueueInfo]:
        """Walk the ordered rows page by page, keeping metadata matches until the result is full.

        Filtering happens before the limit, so a page is short only at the
        end. Equality is Python's on the decoded JSON, as in every driver.
        """
        found: list[base.QueueInfo] = []
        while True:
            rows = conn.execute(self._page(pk, after, name, _FILTER_PAGE)).all()
            for row in rows:
                metadata = json.loads(row.metadata)
                if _matches(metadata, filters):
                    found.append(base.QueueInfo(name=row.name, metadata=metadata))
                    if len(found) >= limit:
                        return found
            if len(rows) < _FILTER_PAGE:
                return found
            after = rows[-1].name

    def count(self, project: str | None) -> int:
        stmt = sa.select(sa.func.count()).select_from(queues).where(queues.c.project == project_key(project))
        return int(self._db.read(lambda conn: conn.execute(stmt).scalar_one()))

    def stats(self, project: str | None, name: str) -> base.QueueStats:
        now = self._clock()
        live = (messages.c.project == project_key(project), messages.c.queue == name)
        live += (messages.c.expires > now,)
        held = sa.and_(messages.c.claim_id.is_not(None), messages.c.claim_expires > now)
        counts = sa.select(sa.func.count(), sa.func.sum(sa.case((held, 1), else_=0))).where(*live)

        def work(conn: sa.Connection) -> base.QueueStats:
            total, claimed = conn.execute(counts).one()
            if not total:
                return base.QueueStats(total=0, claimed=0, oldest=None, newest=None)
            oldest, newest = _stamp(conn, live, newest=False), _stamp(conn, live, newest=True)
            return base.QueueStats(total=int(total), claimed=int(claimed or 0), oldest=oldest, newest=newest)

        return self._db.read(work)
