"""Claims: leases on batches of messages, plus dead-lettering at claim time.

A claim picks its candidates with ``SELECT ... ORDER BY seq LIMIT n FOR
UPDATE SKIP LOCKED`` and tags them in the same transaction. The row locks
keep the candidates from every other claim, pop or delete until the tags are
committed, and SKIP LOCKED makes a concurrent claimer pass over rows another
one is taking instead of queueing behind it. A row that another claim tagged
and committed after this statement began is re-checked by the server against
the WHERE clause (now live-claimed, so left out), so two live claims never
hold the same message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from zaqar import randomness
from zaqar.storage import base, errors
from zaqar.storage.projects import project_key
from zaqar.storage.sql.database import Database
from zaqar.storage.sql.messages import (
    MESSAGE_COLUMNS,
    claim_is_live,
    in_queue,
    is_claim_id,
    message_from_row,
    new_message_id,
    not_live_claimed,
)
from zaqar.storage.sql.queues import reserve_seqs
from zaqar.storage.sql.tables import claims, messages

m = messages.c
c = claims.c

# Everything of a message row a dead-letter move carries over, in insert order.
_MOVED = (m.id, m.body, m.ttl, m.created, m.expires, m.available, m.client_id, m.claim_count)


def _lease(
    conn: sa.Connection,
    where: Sequence[sa.ColumnElement[bool]],
    *,
    claim_id: str,
    claim_expires: float,
    ttl: int,
    grace: int,
    bump: int,
) -> None:
    """Tag rows with the claim and stretch the lifetime of those that would die before it does.

    The SET order matters on MySQL, which evaluates assignments left to
    right: ``ttl`` must still compare against the old ``expires``.
    PostgreSQL evaluates every right-hand side against the old row anyway.
    """
    dies_first = m.expires < claim_expires
    conn.execute(
        sa.update(messages)
        .where(*where)
        .ordered_values(
            (m.claim_id, claim_id),
            (m.claim_expires, claim_expires),
            (m.claim_count, m.claim_count + bump),
            (m.ttl, sa.case((dies_first, ttl + grace), else_=m.ttl)),
            (m.expires, sa.case((dies_first, claim_expires + grace), else_=m.expires)),
        )
    )


def _id_taken(conn: sa.Connection, pk: str, queue: str, mid: str) -> bool:
    stmt = sa.select(sa.literal(1)).where(*in_queue(pk, queue), m.id == mid)
    return conn.execute(stmt).first() is not None


def _move_to_dead_letter(
    conn: sa.Connection, pk: str, queue: str, seqs: Sequence[int], dead_letter: base.DeadLetter, now: float
) -> None:
    """Re-post messages at the end of the dead-letter queue, keeping id, body and claim count.

    The rows are already locked by the candidate selection. The kept id is
    checked first: it can only be taken when two queues' ids collide, and
    then the message gets a fresh id rather than failing the claim.
    """
    rows = conn.execute(sa.select(*_MOVED).where(*in_queue(pk, queue), m.seq.in_(seqs)).order_by(m.seq)).all()
    conn.execute(sa.delete(messages).where(*in_queue(pk, queue), m.seq.in_(seqs)))
    first = reserve_seqs(conn, pk, dead_letter.queue, len(rows))
    for offset, row in enumerate(rows):
        seq = first + offset
        mid, body, ttl, created, expires, available, client_id, claim_count = row
        if dead_letter.ttl is not None:
            ttl, expires = dead_letter.ttl, now + dead_letter.ttl
        if _id_taken(conn, pk, dead_letter.queue, mid):
            mid = new_message_id(seq)
        conn.execute(
            sa.insert(messages).values(
                project=pk,
                queue=dead_letter.queue,
                seq=seq,
                id=mid,
                body=body,
                ttl=ttl,
                created=created,
                expires=expires,
                available=available,
                client_id=client_id,
                claim_count=claim_count,
            )
        )


def _candidates(conn: sa.Connection, pk: str, queue: str, limit: int, now: float) -> list[Any]:
    """Lock the oldest available messages nobody else is locking; (seq, claim_count) rows."""
    stmt = (
        sa.select(m.seq, m.claim_count)
        .where(*in_queue(pk, queue), m.expires > now, m.available <= now, not_live_claimed(now))
        .order_by(m.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(conn.execute(stmt).all())


class ClaimController(base.ClaimController):
    def __init__(self, db: Database, clock: base.Clock) -> None:
        self._db = db
        self._clock = clock

    def create(
        self,
        project: str | None,
        queue: str,
        *,
        ttl: int,
        grace: int,
        limit: int,
        dead_letter: base.DeadLetter | None = None,
    ) -> tuple[str | None, list[base.Message]]:
        if limit <= 0:
            return None, []
        now = self._clock()
        pk = project_key(project)

        def work(conn: sa.Connection) -> tuple[str | None, list[base.Message]]:
            chosen, doomed = [], []
            for seq, claim_count in _candidates(conn, pk, queue, limit, now):
                exhausted = dead_letter is not None and claim_count >= dead_letter.max_claim_count
                (doomed if exhausted else chosen).append(seq)
            if doomed and dead_letter is not None:
                # Moved candidates are not replaced by younger messages, so a
                # claim that dead-letters returns fewer than ``limit`` (best effort).
                _move_to_dead_letter(conn, pk, queue, doomed, dead_letter, now)
            if not chosen:
                return None, []
            claim_id = randomness.uuid4_hex()
            bump = 1 if dead_letter is not None else 0
            return claim_id, self._take(conn, pk, queue, claim_id, chosen, now, ttl, grace, bump)

        return self._db.write(work)

    @staticmethod
    def _take(
        conn: sa.Connection,
        pk: str,
        queue: str,
        claim_id: str,
        seqs: Sequence[int],
        now: float,
        ttl: int,
        grace: int,
        bump: int,
    ) -> list[base.Message]:
        """Record a new claim over the locked rows ``seqs`` and return its messages as they now are."""
        claim_expires = now + ttl
        conn.execute(
            sa.insert(claims).values(
                project=pk, queue=queue, id=claim_id, ttl=ttl, updated=now, expires=claim_expires
            )
        )
        where = (*in_queue(pk, queue), m.seq.in_(seqs))
        _lease(conn, where, claim_id=claim_id, claim_expires=claim_expires, ttl=ttl, grace=grace, bump=bump)
        rows = conn.execute(sa.select(*MESSAGE_COLUMNS).where(*where).order_by(m.seq))
        return [message_from_row(row, now) for row in rows]

    def get(self, project: str | None, queue: str, claim_id: str) -> base.Claim:
        if not is_claim_id(claim_id):
            raise errors.ClaimDoesNotExist(cid=claim_id, queue=queue, project=project)
        now = self._clock()
        pk = project_key(project)

        def work(conn: sa.Connection) -> tuple[Any, list[Any]]:
            claim = conn.execute(
                sa.select(c.ttl, c.updated).where(
                    c.project == pk, c.queue == queue, c.id == claim_id, c.expires > now
                )
            ).first()
            rows = conn.execute(
                sa.select(*MESSAGE_COLUMNS)
                .where(*in_queue(pk, queue), m.claim_id == claim_id, m.claim_expires > now, m.expires > now)
                .order_by(m.seq)
            ).all()
            return claim, rows

        claim, rows = self._db.read(work)
        if claim is None or not rows:
            raise errors.ClaimDoesNotExist(cid=claim_id, queue=queue, project=project)
        return base.Claim(
            id=claim_id,
            ttl=int(claim.ttl),
            age=int(now - claim.updated),
            messages=[message_from_row(row, now) for row in rows],
        )

    def update(self, project: str | None, queue: str, claim_id: str, *, ttl: int, grace: int) -> None:
        if not is_claim_id(claim_id):
            raise errors.ClaimDoesNotExist(cid=claim_id, queue=queue, project=project)
        now = self._clock()
        pk = project_key(project)
        claim_expires = now + ttl

        def work(conn: sa.Connection) -> None:
            # The UPDATE locks the claim row first, the order release uses too.
            renewed = conn.execute(
                sa.update(claims)
                .where(c.project == pk, c.queue == queue, c.id == claim_id, c.expires > now)
                .values(ttl=ttl, updated=now, expires=claim_expires)
            ).rowcount
            if not renewed or not claim_is_live(conn, pk, queue, claim_id, now):
                raise errors.ClaimDoesNotExist(cid=claim_id, queue=queue, project=project)
            where = (*in_queue(pk, queue), m.claim_id == claim_id, m.expires > now)
            _lease(conn, where, claim_id=claim_id, claim_expires=claim_expires, ttl=ttl, grace=grace, bump=0)

        self._db.write(work)

    def delete(self, project: str | None, queue: str, claim_id: str) -> None:
        if not is_claim_id(claim_id):
            return
        pk = project_key(project)

        def work(conn: sa.Connection) -> None:
            conn.execute(sa.delete(claims).where(c.project == pk, c.queue == queue, c.id == claim_id))
            # Also frees messages of an expired claim: a release is explicit, so
            # the old claim id must stop working for message deletes as well.
            conn.execute(
                sa.update(messages)
                .where(*in_queue(pk, queue), m.claim_id == claim_id)
                .values(claim_id=None, claim_expires=None)
            )

        self._db.write(work)
