"""The tables of the SQL management store and their versioned creation.

The management store keeps its own step list and its own version table
(``zaqar_control_schema_version``) instead of appending steps to the message
store's (``migrations.STEPS``): a deployment may point both stores at one
database or at different ones, and a message-store database serving as a
pool must not grow catalog tables, nor a management-only database message
tables. With one shared list, the two stores' versions would also be tied
together, so a release adding a message-store step would have to migrate
every management database too. With separate lists each store migrates only
its own tables; their table names differ, so they coexist in one database.

Migration works as in ``migrations``: under the same per-schema lock, each
pending step runs in a transaction together with its version row. Never edit
a released step; ``STEPS`` spells its tables out rather than reusing the
table objects below, which describe the current schema to the queries.

Layout decisions:

* A pool's ``uri`` is unique, enforced by a unique index on its SHA-256
  (``uri_hash``) as for subscribers (``tables.py``): neither a MySQL index key
  nor a PostgreSQL b-tree entry can hold an arbitrarily long string.
* A pool's ``flavor`` is a bare flavor name (pools are global, flavors per
  project), indexed so a flavor's pools are found without a scan.
* ``project`` is the encoded key from ``tables.project_key``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import sqlalchemy as sa

from zaqar.storage import errors
from zaqar.storage.sql import migrations
from zaqar.storage.sql.database import unavailable
from zaqar.storage.sql.tables import (
    DIGEST_LENGTH,
    MYSQL_PROJECT_LENGTH,
    MYSQL_QUEUE_LENGTH,
    document_type,
    name_type,
    text_type,
)

# Pool and flavor names are bounded like queue names (the API allows far fewer characters).
NAME_LENGTH = MYSQL_QUEUE_LENGTH
_INNODB = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def uri_digest(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()


metadata = sa.MetaData()

# Created from this very definition before any step runs, so it must never change.
schema_version = sa.Table(
    "zaqar_control_schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied", sa.Double, nullable=False),
    **_INNODB,
)

pools = sa.Table(
    "pools",
    metadata,
    sa.Column("name", name_type(NAME_LENGTH), primary_key=True),
    sa.Column("uri", text_type(), nullable=False),
    sa.Column("uri_hash", name_type(DIGEST_LENGTH), nullable=False),
    sa.Column("weight", sa.BigInteger, nullable=False),
    sa.Column("flavor", name_type(NAME_LENGTH), nullable=True),
    sa.Column("options", document_type(), nullable=False),
)

flavors = sa.Table(
    "flavors",
    metadata,
    sa.Column("project", name_type(MYSQL_PROJECT_LENGTH), primary_key=True),
    sa.Column("name", name_type(NAME_LENGTH), primary_key=True),
    sa.Column("capabilities", document_type(), nullable=False),
)

catalog = sa.Table(
    "catalog",
    metadata,
    sa.Column("project", name_type(MYSQL_PROJECT_LENGTH), primary_key=True),
    sa.Column("queue", name_type(MYSQL_QUEUE_LENGTH), primary_key=True),
    sa.Column("pool", name_type(NAME_LENGTH), nullable=False),
)


def _v1_tables(md: sa.MetaData) -> list[sa.Table]:
    v1_pools = sa.Table(
        "pools",
        md,
        sa.Column("name", name_type(NAME_LENGTH), primary_key=True),
        sa.Column("uri", text_type(), nullable=False),
        sa.Column("uri_hash", name_type(DIGEST_LENGTH), nullable=False),
        sa.Column("weight", sa.BigInteger, nullable=False),
        sa.Column("flavor", name_type(NAME_LENGTH), nullable=True),
        sa.Column("options", document_type(), nullable=False),
        **_INNODB,
    )
    sa.Index("pools_by_uri", v1_pools.c.uri_hash, unique=True)
    sa.Index("pools_by_flavor", v1_pools.c.flavor)
    v1_flavors = sa.Table(
        "flavors",
        md,
        sa.Column("project", name_type(MYSQL_PROJECT_LENGTH), primary_key=True),
        sa.Column("name", name_type(NAME_LENGTH), primary_key=True),
        sa.Column("capabilities", document_type(), nullable=False),
        **_INNODB,
    )
    sa.Index("flavors_by_name", v1_flavors.c.name)
    v1_catalog = sa.Table(
        "catalog",
        md,
        sa.Column("project", name_type(MYSQL_PROJECT_LENGTH), primary_key=True),
        sa.Column("queue", name_type(MYSQL_QUEUE_LENGTH), primary_key=True),
        sa.Column("pool", name_type(NAME_LENGTH), nullable=False),
        **_INNODB,
    )
    sa.Index("catalog_by_pool", v1_catalog.c.pool)
    return [v1_pools, v1_flavors, v1_catalog]


def _initial(conn: sa.Connection) -> None:
    # Each table and index checked first: on MySQL every CREATE commits at
    # once, so a step interrupted halfway completes on the next start.
    for table in _v1_tables(sa.MetaData()):
        table.create(conn, checkfirst=True)
        for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
            index.create(conn, checkfirst=True)


STEPS: tuple[migrations.Step, ...] = (migrations.Step(1, "pools, flavors and catalog", _initial),)


def _apply_pending(conn: sa.Connection, steps: Sequence[migrations.Step]) -> int:
    with conn.begin():
        schema_version.create(conn, checkfirst=True)
    with conn.begin():
        version = int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)
    newest = migrations.latest(steps)
    if version > newest:
        raise errors.BackendUnavailable(
            reason=f"the control schema is at version {version}, newer than this code's {newest}"
        )
    for step in steps[version:]:
        with conn.begin():
            step.apply(conn)
            conn.execute(
                sa.insert(schema_version).values(version=step.version, name=step.name, applied=time.time())
            )
    return newest


def upgrade(engine: sa.Engine, steps: Sequence[migrations.Step] = STEPS) -> int:
    """Bring the management tables to the newest version; return it.

    Raises BackendUnavailable when the database is unreachable or at a
    version newer than these steps (an older release must not write to it).
    """
    if [step.version for step in steps] != list(range(1, len(steps) + 1)):
        raise ValueError("migration steps must be numbered 1, 2, 3, ... in order")
    try:
        with engine.connect() as conn:
            try:
                # The message store's lock: one migrator per schema, whichever store it migrates.
                with migrations.schema_lock(conn):
                    return _apply_pending(conn, steps)
            except BaseException:
                conn.invalidate()  # ends the session, which releases the lock
                raise
    except sa.exc.SQLAlchemyError as exc:
        raise unavailable(exc) from exc
