"""Messages: posting, listing, reading, deleting and popping.

Also home of the row helpers the claim and queue controllers share (id
format, sequence allocation, the message column list), because every one of
them is about the ``messages`` table.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from zaqar import randomness
from zaqar.storage import base, errors
from zaqar.storage.projects import project_key
from zaqar.storage.sqlite.common import Database

# id = 16 hex digits of the per-queue sequence number + 8 random hex digits.
# The random tail keeps ids unguessable-ish and lets a dead-lettered message
# keep its id in a queue whose own counter may produce the same prefix.
_MESSAGE_ID = re.compile(r"[0-9a-f]{24}")
_CLAIM_ID = re.compile(r"[0-9a-f]{32}")
_MAX_SEQ = 2**63 - 1  # SQLite integers are signed 64-bit
_ID_ATTEMPTS = 8
_CHUNK = 500  # stays far below SQLite's limit on bound parameters

# The columns ``message_from_row`` expects, in order.
MESSAGE_COLUMNS = "id, body, ttl, created, client_id, claim_id, claim_expires, claim_count"

_INSERT = (
    "INSERT INTO messages (project, queue, seq, id, body, ttl, created, expires, available,"
    " client_id, claim_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_NOT_LIVE_CLAIMED = "(claim_id IS NULL OR claim_expires <= ?)"

# PERF: one statement creates the queue record when missing, bumps its counter and reads
# it back (3 statements before: INSERT OR IGNORE, UPDATE, SELECT). RETURNING needs 3.35.
_RESERVE = (
    "INSERT INTO queues (project, name, metadata, seq) VALUES (?, ?, '{}', ?)"
    " ON CONFLICT (project, name) DO UPDATE SET seq = seq + excluded.seq RETURNING seq"
)
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35)


class StoredFields(NamedTuple):
    """Everything of a message row except its key, seq and id, in ``_INSERT`` order."""

    body: str
    ttl: int
    created: float
    expires: float
    available: float
    client_id: str | None
    claim_count: int


def is_claim_id(value: str) -> bool:
    """Whether ``value`` could ever name a claim of this driver (uuid4 hex)."""
    return isinstance(value, str) and _CLAIM_ID.fullmatch(value) is not None


def new_message_id(seq: int) -> str:
    return f"{seq:016x}{randomness.token_hex(4)}"


def chunked(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


def message_from_row(row: Sequence[Any], now: float) -> base.Message:
    mid, body, ttl, created, client_id, claim_id, claim_expires, claim_count = row
    return base.Message(
        id=mid,
        body=json.loads(body),
        ttl=ttl,
        age=int(now - created),
        created=created,
        claim_id=claim_id,
        claimed=claim_id is not None and claim_expires > now,
        claim_count=claim_count,
        client_id=client_id,
    )


def allocate_seqs(conn: sqlite3.Connection, pk: str, queue: str, count: int) -> int:
    """Reserve ``count`` consecutive positions at the end of the queue; return the first.

    Creates the queue record when missing (lazy creation). Runs under the
    write lock, so concurrent posters get disjoint, increasing ranges.
    """
    if _HAS_RETURNING:
        ((last,),) = conn.execute(_RESERVE, (pk, queue, count)).fetchall()
        return int(last) - count + 1
    conn.execute(
        "INSERT OR IGNORE INTO queues (project, name, metadata, seq) VALUES (?, ?, '{}', 0)",
        (pk, queue),
    )
    conn.execute("UPDATE queues SET seq = seq + ? WHERE project = ? AND name = ?", (count, pk, queue))
    (last,) = conn.execute("SELECT seq FROM queues WHERE project = ? AND name = ?", (pk, queue)).fetchone()
    return int(last) - count + 1


def insert_message(
    conn: sqlite3.Connection,
    project: str | None,
    queue: str,
    seq: int,
    fields: StoredFields,
    preferred_id: str | None = None,
) -> str:
    """Insert one row at ``seq``; return its id, which is unique within the queue.

    The id is ``preferred_id`` when free, else a fresh one for ``seq``; only a
    random-tail collision with a dead-lettered message can make one taken.
    """
    pk = project_key(project)
    # Made one at a time: the first is taken all but always.
    fresh = (new_message_id(seq) for _ in range(_ID_ATTEMPTS))
    candidates = fresh if preferred_id is None else itertools.chain([preferred_id], fresh)
    for mid in candidates:
        try:
            conn.execute(_INSERT, (pk, queue, seq, mid, *fields))
        except sqlite3.IntegrityError:
            continue
        return mid
    raise errors.MessageConflict(queue=queue, project=project)


def marker_seq(conn: sqlite3.Connection, pk: str, queue: str, marker: str) -> int | None:
    """The seq after which a listing resumes, or None when ``marker`` is no id of ours.

    The stored row wins over the id's prefix: a dead-lettered message keeps
    its old id but sits at a new seq. A gone message falls back to the prefix.
    """
    if not isinstance(marker, str) or _MESSAGE_ID.fullmatch(marker) is None:
        return None
    row = conn.execute(
        "SELECT seq FROM messages WHERE project = ? AND queue = ? AND id = ?", (pk, queue, marker)
    ).fetchone()
    if row is not None:
        return int(row[0])
    return min(int(marker[:16], 16), _MAX_SEQ)


def claim_is_live(conn: sqlite3.Connection, pk: str, queue: str, claim_id: str, now: float) -> bool:
    """A claim lives while it is unexpired and still holds at least one message."""
    row = conn.execute(
        "SELECT 1 FROM messages WHERE project = ? AND queue = ? AND claim_id = ?"
        " AND claim_expires > ? AND expires > ? LIMIT 1",
        (pk, queue, claim_id, now, now),
    ).fetchone()
    return row is not None


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
        # Serialise before taking the lock so a bad body fails without a transaction.
        bodies = [json.dumps(draft.body) for draft in drafts]
        with self._db.write() as conn:
            first = allocate_seqs(conn, pk, queue, len(drafts))
            rows = [
                (pk, queue, seq, new_message_id(seq), body, draft.ttl, now, now + draft.ttl,
                 now + draft.delay, client_id, 0)
                for seq, draft, body in zip(itertools.count(first), drafts, bodies)
            ]
            # PERF: one executemany instead of a statement (and a Python round) per message.
            try:
                conn.executemany(_INSERT, rows)
            except sqlite3.IntegrityError:
                return self._insert_one_by_one(conn, project, queue, rows)
        return [row[3] for row in rows]

    @staticmethod
    def _insert_one_by_one(
        conn: sqlite3.Connection, project: str | None, queue: str, rows: Sequence[tuple[Any, ...]]
    ) -> list[str]:
        """Store ``rows`` again after an id of theirs was taken (by a dead-lettered message).

        The seqs are this post's alone (reserved under the write lock), so removing what the
        failed batch stored before its error leaves the queue as it was before the batch.
        """
        pk, first, last = rows[0][0], rows[0][2], rows[-1][2]
        conn.execute("DELETE FROM messages WHERE project = ? AND queue = ? AND seq BETWEEN ? AND ?",
                     (pk, queue, first, last))
        return [insert_message(conn, project, queue, row[2], StoredFields(*row[4:])) for row in rows]

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
        if limit <= 0:
            return []
        now = self._clock()
        pk = project_key(project)
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE project = ? AND queue = ? AND seq > ?"
        sql += " AND expires > ?"
        with self._db.read() as conn:
            after = 0 if marker is None else marker_seq(conn, pk, queue, marker)
            if after is None:
                return []
            params: list[Any] = [pk, queue, after, now]
            if not echo and client_id is not None:
                sql += " AND client_id IS NOT ?"
                params.append(client_id)
            if not include_claimed:
                sql += " AND " + _NOT_LIVE_CLAIMED
                params.append(now)
            if not include_delayed:
                sql += " AND available <= ?"
                params.append(now)
            rows = conn.execute(sql + " ORDER BY seq LIMIT ?", (*params, limit)).fetchall()
        return [message_from_row(row, now) for row in rows]

    def get(self, project: str | None, queue: str, message_id: str) -> base.Message:
        now = self._clock()
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages"
                " WHERE project = ? AND queue = ? AND id = ? AND expires > ?",
                (project_key(project), queue, message_id, now),
            ).fetchone()
        if row is None:
            raise errors.MessageDoesNotExist(mid=message_id, queue=queue, project=project)
        return message_from_row(row, now)

    def get_many(self, project: str | None, queue: str, ids: Sequence[str]) -> list[base.Message]:
        now = self._clock()
        pk = project_key(project)
        wanted = [mid for mid in dict.fromkeys(ids) if isinstance(mid, str)]
        rows: list[Any] = []
        with self._db.read() as conn:
            for chunk in chunked(wanted):
                rows += conn.execute(
                    f"SELECT seq, {MESSAGE_COLUMNS} FROM messages WHERE project = ? AND queue = ?"
                    f" AND expires > ? AND id IN ({placeholders(len(chunk))})",
                    (pk, queue, now, *chunk),
                ).fetchall()
        rows.sort(key=lambda row: row[0])
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
        now = self._clock()
        pk = project_key(project)
        with self._db.write(consume=True) as conn:
            row = conn.execute(
                "SELECT rowid, claim_id, claim_expires FROM messages"
                " WHERE project = ? AND queue = ? AND id = ? AND expires > ?",
                (pk, queue, message_id, now),
            ).fetchone()
            if row is None:
                return
            rowid, held_by, held_until = row
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
            conn.execute("DELETE FROM messages WHERE rowid = ?", (rowid,))

    def delete_many(
        self,
        project: str | None,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None = None,
    ) -> None:
        now = self._clock()
        pk = project_key(project)
        wanted = [mid for mid in dict.fromkeys(ids) if isinstance(mid, str)]
        with self._db.write(consume=True) as conn:
            for cid in dict.fromkeys(claim_ids or ()):
                if not self._holds_any(conn, pk, queue, cid, wanted, now):
                    raise errors.ClaimDoesNotExist(cid=cid, queue=queue, project=project)
            for chunk in chunked(wanted):
                conn.execute(
                    f"DELETE FROM messages WHERE project = ? AND queue = ?"
                    f" AND id IN ({placeholders(len(chunk))})",
                    (pk, queue, *chunk),
                )

    @staticmethod
    def _holds_any(
        conn: sqlite3.Connection, pk: str, queue: str, cid: str, ids: Sequence[str], now: float
    ) -> bool:
        """Whether ``cid`` is the live claim of at least one of the (unexpired) messages ``ids``."""
        if not is_claim_id(cid):
            return False
        for chunk in chunked(ids):
            row = conn.execute(
                f"SELECT 1 FROM messages WHERE project = ? AND queue = ? AND claim_id = ?"
                f" AND claim_expires > ? AND expires > ? AND id IN ({placeholders(len(chunk))}) LIMIT 1",
                (pk, queue, cid, now, now, *chunk),
            ).fetchone()
            if row is not None:
                return True
        return False

    def pop(self, project: str | None, queue: str, limit: int) -> list[base.Message]:
        if limit <= 0:
            return []
        now = self._clock()
        with self._db.write(consume=True) as conn:
            rows = conn.execute(
                f"SELECT rowid, {MESSAGE_COLUMNS} FROM messages WHERE project = ? AND queue = ?"
                f" AND expires > ? AND {_NOT_LIVE_CLAIMED} ORDER BY seq LIMIT ?",
                (project_key(project), queue, now, now, limit),
            ).fetchall()
            rowids = [row[0] for row in rows]
            for chunk in chunked(rowids):
                conn.execute(f"DELETE FROM messages WHERE rowid IN ({placeholders(len(chunk))})", chunk)
        return [message_from_row(row[1:], now) for row in rows]
