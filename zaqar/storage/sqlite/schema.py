"""Tables of the SQLite message store and their creation.

Layout decisions:

* ``project`` is the encoded key from ``zaqar.storage.projects.project_key`` (never NULL, so
  it can be part of primary keys and compared with ``=``).
* A message's position in its queue is ``seq``, drawn from the queue record's
  counter under the write lock; its public id embeds the seq so a deleted
  message's id still works as a listing marker. A dead-lettered message keeps
  its id but gets a fresh seq in its new queue, hence the separate id index.
* Liveness of a claim is decided from the messages alone (``claim_id`` plus a
  copy of the claim's expiry in ``claim_expires``), so the ``claims`` table
  only remembers what the messages cannot: the claim's ttl and renewal time.
* ``subscriptions`` does not reference the queue record (deleting a queue
  keeps its subscriptions). ``updated`` is when the current ttl started
  counting (creation or the last ttl change), so ``expires = updated + ttl``
  and the age is ``now - updated``. Expired rows are dead: every write on a
  queue's subscriptions deletes them first, so they never hold the
  UNIQUE (project, queue, subscriber) slot against a newcomer.

Every statement is idempotent (``IF NOT EXISTS``), so opening a file written
by an earlier version of this module adds the tables it lacks. Adding tables
that older code never reads does not change ``SCHEMA_VERSION``: bumping it
would make older code refuse a file it can still use unchanged.
"""

from __future__ import annotations

import contextlib
import sqlite3

SCHEMA_VERSION = 1

_STATEMENTS = (
    """
    CREATE TABLE IF NOT EXISTS queues (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        metadata TEXT NOT NULL,
        seq INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (project, name)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS messages (
        project TEXT NOT NULL,
        queue TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        ttl INTEGER NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        available REAL NOT NULL,
        client_id TEXT,
        claim_id TEXT,
        claim_expires REAL,
        claim_count INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (project, queue, seq)
    )
    """,
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_id ON messages (project, queue, id)",
    """
    CREATE INDEX IF NOT EXISTS messages_by_claim ON messages (project, queue, claim_id)
    WHERE claim_id IS NOT NULL
    """,
    "CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expires)",
    """
    CREATE TABLE IF NOT EXISTS claims (
        project TEXT NOT NULL,
        queue TEXT NOT NULL,
        id TEXT NOT NULL,
        ttl INTEGER NOT NULL,
        updated REAL NOT NULL,
        expires REAL NOT NULL,
        PRIMARY KEY (project, queue, id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS claims_by_expiry ON claims (expires)",
    """
    CREATE TABLE IF NOT EXISTS subscriptions (
        project TEXT NOT NULL,
        queue TEXT NOT NULL,
        id TEXT NOT NULL,
        subscriber TEXT NOT NULL,
        ttl INTEGER NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        expires REAL NOT NULL,
        options TEXT NOT NULL,
        confirmed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (project, queue, id),
        UNIQUE (project, queue, subscriber)
    )
    """,
    "CREATE INDEX IF NOT EXISTS subscriptions_by_expiry ON subscriptions (expires)",
)


class SchemaError(Exception):
    """The file holds a schema this code does not know."""


def enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to write-ahead logging (persistent, so once per file suffices).

    WAL lets readers proceed while one writer commits, and makes a commit one
    sequential append, which is what keeps ``synchronous=full`` affordable.
    """
    # Asking first avoids the exclusive lock the switch needs when the file is
    # already in WAL mode, e.g. when several server processes start together.
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() == "wal":
        return
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise SchemaError(f"cannot enable WAL journal mode (got {mode!r})")


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create missing tables; refuse files written by a newer schema version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaError(f"database schema version {version} is newer than {SCHEMA_VERSION}")
        for statement in _STATEMENTS:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
