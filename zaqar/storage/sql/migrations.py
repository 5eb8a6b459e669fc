"""The versioned schema: an ordered list of steps, each applied exactly once.

``zaqar_schema_version`` holds one row per applied step. On start the driver
takes a lock named after the database schema (a PostgreSQL advisory lock, or
MySQL's GET_LOCK), so when several server processes start at once one of them
migrates and the others wait and then find nothing left to do. Each step runs
in its own transaction together with the insertion of its version row;
PostgreSQL's DDL is transactional, so a failed step leaves nothing behind.
MySQL commits DDL implicitly, so there a step must tolerate being re-run after
a crash halfway through (``create_all`` checks for existing tables).

To change the schema, append a ``Step`` (e.g. one that runs ``ALTER TABLE
messages ADD COLUMN ...``) and update ``tables.py`` to match. Never edit a
released step: databases already past it will not run it again, which is also
why the first step spells out its tables instead of reusing ``tables.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Sequence

import sqlalchemy as sa

from zaqar.storage import base, errors
from zaqar.storage.sql import tables
from zaqar.storage.sql.database import unavailable
from zaqar.storage.sql.tables import ID_LENGTH, MYSQL_PROJECT_LENGTH, MYSQL_QUEUE_LENGTH

# How long a MySQL server waits for another process's migration (seconds).
_MYSQL_LOCK_TIMEOUT = 600


@dataclasses.dataclass(frozen=True)
class Step:
    version: int
    name: str
    apply: Callable[[sa.Connection], None]


# InnoDB whatever the server's default engine: the store needs row locks and transactions.
_INNODB = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _v1_keys() -> tuple[sa.Column[str], sa.Column[str]]:
    return (
        sa.Column("project", tables.name_type(MYSQL_PROJECT_LENGTH), primary_key=True),
        sa.Column("queue", tables.name_type(MYSQL_QUEUE_LENGTH), primary_key=True),
    )


def _v1_queues(md: sa.MetaData) -> None:
    sa.Table(
        "queues",
        md,
        sa.Column("project", tables.name_type(MYSQL_PROJECT_LENGTH), primary_key=True),
        sa.Column("name", tables.name_type(MYSQL_QUEUE_LENGTH), primary_key=True),
        sa.Column("metadata", tables.document_type(), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"),
        **_INNODB,
    )


def _v1_messages(md: sa.MetaData) -> None:
    messages = sa.Table(
        "messages",
        md,
        *_v1_keys(),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("id", tables.name_type(ID_LENGTH), nullable=False),
        sa.Column("body", tables.document_type(), nullable=False),
        sa.Column("ttl", sa.Integer, nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
        sa.Column("available", sa.Double, nullable=False),
        sa.Column("client_id", tables.text_type(), nullable=True),
        sa.Column("claim_id", tables.name_type(ID_LENGTH), nullable=True),
        sa.Column("claim_expires", sa.Double, nullable=True),
        sa.Column("claim_count", sa.Integer, nullable=False, server_default="0"),
        **_INNODB,
    )
    m = messages.c
    sa.Index("messages_by_id", m.project, m.queue, m.id, unique=True)
    sa.Index("messages_by_claim", m.project, m.queue, m.claim_id, postgresql_where=m.claim_id.is_not(None))
    sa.Index("messages_by_expiry", m.expires)


def _v1_claims(md: sa.MetaData) -> None:
    claims = sa.Table(
        "claims",
        md,
        *_v1_keys(),
        sa.Column("id", tables.name_type(ID_LENGTH), primary_key=True),
        sa.Column("ttl", sa.Integer, nullable=False),
        sa.Column("updated", sa.Double, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
        **_INNODB,
    )
    sa.Index("claims_by_expiry", claims.c.expires)


def _initial(conn: sa.Connection) -> None:
    md = sa.MetaData()
    for define in (_v1_queues, _v1_messages, _v1_claims):
        define(md)
    md.create_all(conn)


def _v2_subscriptions(md: sa.MetaData) -> sa.Table:
    subscriptions = sa.Table(
        "subscriptions",
        md,
        sa.Column("project", tables.name_type(MYSQL_PROJECT_LENGTH), primary_key=True),
        sa.Column("queue", tables.name_type(MYSQL_QUEUE_LENGTH), primary_key=True),
        sa.Column("id", tables.name_type(ID_LENGTH), primary_key=True),
        sa.Column("subscriber", tables.document_type(), nullable=False),
        sa.Column("subscriber_hash", tables.name_type(64), nullable=False),
        sa.Column("ttl", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.Double, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
        sa.Column("options", tables.document_type(), nullable=False),
        sa.Column("confirmed", sa.Boolean, nullable=False),
        **_INNODB,
    )
    s = subscriptions.c
    sa.Index("subscriptions_by_subscriber", s.project, s.queue, s.subscriber_hash, unique=True)
    sa.Index("subscriptions_by_expiry", s.expires)
    return subscriptions


def _subscriptions(conn: sa.Connection) -> None:
    # Table and indexes each checked first, so that on MySQL (where every
    # CREATE commits at once) a step interrupted between them completes on
    # the next start instead of leaving the table without its unique index.
    table = _v2_subscriptions(sa.MetaData())
    table.create(conn, checkfirst=True)
    for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
        index.create(conn, checkfirst=True)


STEPS: tuple[Step, ...] = (
    Step(1, "queues, messages and claims", _initial),
    Step(2, "subscriptions", _subscriptions),
)


def latest(steps: Sequence[Step] = STEPS) -> int:
    return steps[-1].version if steps else 0


def _lock_name(conn: sa.Connection) -> str:
    """One lock per schema (PostgreSQL) or database (MySQL): stores side by side never wait on each other."""
    if conn.dialect.name == "postgresql":
        where = conn.execute(sa.text("SELECT current_schema()")).scalar()
    else:
        where = conn.execute(sa.text("SELECT DATABASE()")).scalar()
    return f"zaqar-schema:{where or ''}"


@contextlib.contextmanager
def schema_lock(conn: sa.Connection) -> Iterator[None]:
    """Hold a session-level lock while migrating.

    The caller invalidates the connection when anything fails, which ends
    the session and so releases the lock even if the unlock below never ran.
    """
    digest = hashlib.sha256(_lock_name(conn).encode()).digest()
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(digest[:8], "big", signed=True)
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        conn.commit()
        yield
        conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    else:
        name = "zaqar-schema-" + digest.hex()[:40]  # GET_LOCK names stop at 64 characters
        got = conn.execute(
            sa.text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": _MYSQL_LOCK_TIMEOUT}
        ).scalar()
        conn.commit()
        if got != 1:
            raise errors.BackendUnavailable(reason="timed out waiting for another process's migration")
        yield
        conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
    conn.commit()


def current_version(conn: sa.Connection) -> int:
    version = conn.execute(sa.select(sa.func.max(tables.schema_version.c.version))).scalar()
    return int(version or 0)


def _check(steps: Sequence[Step]) -> None:
    if [step.version for step in steps] != list(range(1, len(steps) + 1)):
        raise ValueError("migration steps must be numbered 1, 2, 3, ... in order")


def _apply_pending(conn: sa.Connection, steps: Sequence[Step], clock: base.Clock) -> int:
    with conn.begin():
        tables.schema_version.create(conn, checkfirst=True)
    with conn.begin():
        version = current_version(conn)
    if version > latest(steps):
        raise errors.BackendUnavailable(
            reason=f"the database schema is at version {version}, newer than this code's {latest(steps)}"
        )
    for step in steps[version:]:
        with conn.begin():
            step.apply(conn)
            conn.execute(
                sa.insert(tables.schema_version).values(version=step.version, name=step.name, applied=clock())
            )
    return latest(steps)


def upgrade(engine: sa.Engine, clock: base.Clock, steps: Sequence[Step] = STEPS) -> int:
    """Bring the database to the newest schema version; return that version.

    Raises BackendUnavailable when the database is unreachable or already at
    a version newer than these steps (an older release must not write to it).
    """
    _check(steps)
    try:
        with engine.connect() as conn:
            try:
                with schema_lock(conn):
                    return _apply_pending(conn, steps, clock)
            except BaseException:
                conn.invalidate()
                raise
    except sa.exc.SQLAlchemyError as exc:
        raise unavailable(exc) from exc
