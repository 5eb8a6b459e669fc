"""Messages: posting, listing, reading, deleting and popping.

Also home of the row helpers the claim controller shares (id format, the
message column list, claim liveness), because every one of them is about the
``messages`` table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from zaqar import randomness
from zaqar.storage import base, errors
from zaqar.storage.projects import project_key
from zaqar.storage.sql.database import Database, chunked
from zaqar.storage.sql.queues import reserve_seqs
from zaqar.storage.sql.tables import messages

# id = 16 hex digits of the per-queue sequence number + 8 random hex digits,
# as in the SQLite store. The random tail keeps ids hard to guess and lets a
# dead-lettered message keep its id in a queue whose own counter may produce
# the same prefix.
_MESSAGE_ID = re.compile(r"[0-9a-f]{24}")
_CLAIM_ID = re.compile(r"[0-9a-f]{32}")
_MAX_SEQ = 2**63 - 1  # BIGINT is signed 64-bit

m = messages.c

# The columns ``message_from_row`` expects, in order.
MESSAGE_COLUMNS = (m.id, m.body, m.ttl, m.created, m.client_id, m.claim_id, m.claim_expires, m.claim_count)


def is_claim_id(value: object) -> bool:
    """Whether ``value`` could ever name a claim of this driver (uuid4 hex)."""
    return isinstance(value, str) and _CLAIM_ID.fullmatch(value) is not None


def is_message_id(value: object) -> bool:
    """Whether ``value`` could name a message; others are answered without a query."""
    return isinstance(value, str) and _MESSAGE_ID.fullmatch(value) is not None


def new_message_id(seq: int) -> str:
    return f"{seq:016x}{randomness.token_hex(4)}"


def in_queue(pk: str, queue: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (m.project == pk, m.queue == queue)


def not_live_claimed(now: float) -> sa.ColumnElement[bool]:
    return sa.or_(m.claim_id.is_(None), m.claim_expires <= now)


def message_from_row(row: Sequence[Any], now: float) -> base.Message:
    mid, body, ttl, created, client_id, claim_id, claim_expires, claim_count = row
    return base.Message(
        id=mid,
        body=json.loads(body),
        ttl=int(ttl),
        age=int(now - created),
        created=float(created),
        claim_id=claim_id,
        claimed=claim_id is not None and claim_expires > now,
        claim_count=int(claim_count),
        client_id=client_id,
    )


def claim_is_live(conn: sa.Connection, pk: str, queue: str, claim_id: str, now: float) -> bool:
    """A claim lives while it is unexpired and still holds at least one message."""
    stmt = (
        sa.select(sa.literal(1))
        .where(*in_queue(pk, queue), m.claim_id == claim_id, m.claim_expires > now, m.expires > now)
        .limit(1)
    )
    return conn.execute(stmt).first() is not None


def marker_seq(conn: sa.Connection, pk: str, queue: str, marker: str) -> int | None:
    """The seq after which a listing resumes, or None when ``marker`` is no id of ours.

    The stored row wins over the id's prefix: a dead-lettered message keeps
    its old id but sits at a new seq. A gone message falls back to the prefix.
    """
    if not is_message_id(marker):
        return None
    seq = conn.execute(sa.select(m.seq).where(*in_queue(pk, queue), m.id == marker)).scalar()
    if seq is not None:
        return int(seq)
    return min(int(marker[:16], 16), _MAX_SEQ)


class MessageController(base.MessageController):
    def __init__(self, db: Database, clock: base.Clock) -> None:
        self._db = db
        self._clock = clock

    def post(
        self,
        project: str | None,
        queue: str,
        drafts: Sequence[base.MessageDraft],
        client_id: str | None,
    ) -> list[str]:
        now = self._clock()
        pk = project_key(project)
        # Serialise before the transaction so a bad body fails without one.
        rows = [
            {
                "project": pk,
                "queue": queue,
                "body": json.dumps(draft.body),
                "ttl": draft.ttl,
                "created": now,
                "expires": now + draft.ttl,
                "available": now + draft.delay,
                "client_id": client_id,
                "claim_count": 0,
            }
            for draft in drafts
        ]

        def work(conn: sa.Connection) -> list[str]:
            # Ids are drawn afresh on every attempt: a rerun after an id
            # collision (an integrity error) then gets new random tails.
            first = reserve_seqs(conn, pk, queue, len(rows))
            for offset, row in enumerate(rows):
                row["seq"] = first + offset
                row["id"] = new_message_id(first + offset)
            if rows:
                conn.execute(sa.insert(messages), rows)
            return [row["id"] for row in rows]

        return self._db.write(work, conflict=lambda: errors.MessageConflict(queue=queue, project=project))

    def list(
        self,
        project: str | None,
        queue: str,
        *,
        marker: str | None = None,
        limit: int = 10,
        echo: bool = False,
        client_id: str | None = None,
        include_claimed: bool = False,
        include_delayed: bool = False,
    ) -> list[base.Message]:
        if limit <= 0 or (marker is not None and not is_message_id(marker)):
            return []
        now = self._clock()
        pk = project_key(project)
        where = [*in_queue(pk, queue), m.expires > now]
        if not echo and client_id is not None:
            where.append(m.client_id.is_distinct_from(client_id))
        if not include_claimed:
            where.append(not_live_claimed(now))
        if not include_delayed:
            where.append(m.available <= now)

        def work(conn: sa.Connection) -> list[base.Message]:
            after = 0 if marker is None else marker_seq(conn, pk, queue, marker)
            if after is None:
                return []
            stmt = sa.select(*MESSAGE_COLUMNS).where(*where, m.seq > after).order_by(m.seq).limit(limit)
            return [message_from_row(row, now) for row in conn.execute(stmt)]

        return self._db.read(work)

    def get(self, project: str | None, queue: str, message_id: str) -> base.Message:
        found = self.get_many(project, queue, [message_id]) if is_message_id(message_id) else []
        if not found:
            raise errors.MessageDoesNotExist(mid=message_id, queue=queue, project=project)
        return found[0]

    def get_many(self, project: str | None, queue: str, ids: Sequence[str]) -> list[base.Message]:
        wanted = [mid for mid in dict.fromkeys(ids) if is_message_id(mid)]
        if not wanted:
            return []
        now = self._clock()
        pk = project_key(project)

        def work(conn: sa.Connection) -> list[Any]:
            rows: list[Any] = []
            for chunk in chunked(wanted):
                stmt = sa.select(m.seq, *MESSAGE_COLUMNS).where(
                    *in_queue(pk, queue), m.expires > now, m.id.in_(chunk)
                )
                rows += conn.execute(stmt).all()
            return rows

        rows = sorted(self._db.read(work), key=lambda row: row[0])
        return [message_from_row(row[1:], now) for row in rows]

    def delete(
        self,
        project: str | None,
        queue: str,
        message_id: str,
        claim_id: str | None = None,
    ) -> None:
        # A claim id that can never exist is a caller error whether or not the message does.
        if claim_id is not None and not is_claim_id(claim_id):
            raise errors.ClaimNotLive(mid=message_id, cid=claim_id)
        if not is_message_id(message_id):
            return
        now = self._clock()
        pk = project_key(project)

        def work(conn: sa.Connection) -> None:
            # FOR UPDATE: the decision below must still hold when the row goes.
            row = conn.execute(
                sa.select(m.seq, m.claim_id, m.claim_expires)
                .where(*in_queue(pk, queue), m.id == message_id, m.expires > now)
                .with_for_update()
            ).first()
            if row is None:
                return
            seq, held_by, held_until = row
            live = held_by is not None and held_until > now
            if claim_id is None:
                if live:
                    raise errors.MessageIsClaimed(mid=message_id)
            elif claim_id != held_by:
                if not live:
                    raise errors.MessageNotClaimed(mid=message_id)
                if claim_is_live(conn, pk, queue, claim_id, now):
                    raise errors.MessageIsClaimed(mid=message_id)
                raise errors.ClaimNotLive(mid=message_id, cid=claim_id)
            conn.execute(sa.delete(messages).where(*in_queue(pk, queue), m.seq == seq))

        self._db.write(work)

    def delete_many(
        self,
        project: str | None,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None = None,
    ) -> None:
        now = self._clock()
        pk = project_key(project)
        wanted = [mid for mid in dict.fromkeys(ids) if is_message_id(mid)]
        required = list(dict.fromkeys(claim_ids or ()))
        if not wanted and not required:
            return

        def work(conn: sa.Connection) -> None:
            rows: list[Any] = []
            for chunk in chunked(wanted):
                rows += conn.execute(
                    sa.select(m.seq, m.claim_id, m.claim_expires, m.expires)
                    .where(*in_queue(pk, queue), m.id.in_(chunk))
                    .order_by(m.seq)
                    .with_for_update()
                ).all()
            for cid in required:
                # Each claim id must be the live claim of one of the unexpired targets.
                if not any(r.claim_id == cid and r.claim_expires > now and r.expires > now for r in rows):
                    raise errors.ClaimDoesNotExist(cid=cid, queue=queue, project=project)
            for chunk in chunked([row.seq for row in rows]):
                conn.execute(sa.delete(messages).where(*in_queue(pk, queue), m.seq.in_(chunk)))

        self._db.write(work)

    def pop(self, project: str | None, queue: str, limit: int) -> list[base.Message]:
        if limit <= 0:
            return []
        now = self._clock()
        pk = project_key(project)

        def work(conn: sa.Connection) -> list[Any]:
            # SKIP LOCKED: concurrent pops (and claims) take disjoint rows without waiting.
            rows = conn.execute(
                sa.select(m.seq, *MESSAGE_COLUMNS)
                .where(*in_queue(pk, queue), m.expires > now, not_live_claimed(now))
                .order_by(m.seq)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if rows:
                seqs = [row[0] for row in rows]
                conn.execute(sa.delete(messages).where(*in_queue(pk, queue), m.seq.in_(seqs)))
            return rows

        rows = sorted(self._db.write(work), key=lambda row: row[0])
        return [message_from_row(row[1:], now) for row in rows]
