"""The tables of the SQL message store, as the queries see them.

These objects only describe the current schema to SQLAlchemy; the DDL that
brings a database to it lives in ``migrations`` (one frozen step per schema
version), and a unit test checks that a migrated database matches them.

Layout decisions (the same as the SQLite store's, see ``sqlite/schema.py``):

* ``project`` is the encoded key from ``project_key`` (never NULL, so it can
  be part of primary keys and compared with ``=``).
* A message's position in its queue is ``seq``, drawn from the queue record's
  counter; its public id embeds the seq so a deleted message's id still works
  as a listing marker. A dead-lettered message keeps its id but gets a fresh
  seq in its new queue, hence the separate unique index on the id.
* Liveness of a claim is decided from the messages alone (``claim_id`` plus a
  copy of the claim's expiry in ``claim_expires``); the ``claims`` table only
  remembers what the messages cannot: the claim's ttl and renewal time.
* Times are seconds since the epoch from the driver's clock (DOUBLE), never
  the database's ``now()``, so tests can move time.
* A subscription is unique by (project, queue, subscriber), enforced by a
  unique index on the SHA-256 of the subscriber (``subscriber_hash``) rather
  than on the URI itself: subscriber URIs have no length limit, and neither a
  PostgreSQL b-tree entry (~2.7 KB) nor a MySQL index key (3072 bytes, of
  which project and queue take 2064) could hold an arbitrary one. The URI is
  kept whole in ``subscriber``. ``updated`` is when the current ttl started
  (creation or the last ttl change), ``expires`` = ``updated + ttl``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# MySQL indexes need bounded strings; "p" + a 256 character project id fits.
MYSQL_PROJECT_LENGTH = 260
MYSQL_QUEUE_LENGTH = 256
ID_LENGTH = 32
DIGEST_LENGTH = 64  # hex SHA-256

_MYSQL = ("mysql", "mariadb")


def name_type(mysql_length: int) -> sa.types.TypeEngine[str]:
    """A string compared byte by byte.

    Binary collation makes queue listing order, markers and key uniqueness
    agree with the SQLite store and across servers: PostgreSQL's default
    collation is locale-aware and MySQL's is case-insensitive. PostgreSQL's
    varchar stays unbounded so no name is ever rejected for its length.
    """
    return sa.String(collation="C").with_variant(
        mysql.VARCHAR(mysql_length, charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL
    )


def document_type() -> sa.types.TypeEngine[str]:
    """Unbounded text (JSON of a body, metadata or options; a subscriber URI): MySQL TEXT stops at 64 KiB."""
    return sa.Text().with_variant(mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL)


def text_type() -> sa.types.TypeEngine[str]:
    """Unindexed text compared exactly (MySQL's default collation ignores case)."""
    return sa.Text().with_variant(mysql.TEXT(charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL)


metadata = sa.MetaData()

# Created from this very definition before any migration runs, so unlike the
# other tables it is not versioned: it must never change.
schema_version = sa.Table(
    "zaqar_schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied", sa.Double, nullable=False),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
)

queues = sa.Table(
    "queues",
    metadata,
    sa.Column("project", name_type(MYSQL_PROJECT_LENGTH), primary_key=True),
    sa.Column("name", name_type(MYSQL_QUEUE_LENGTH), primary_key=True),
    sa.Column("metadata", document_type(), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("project", name_type(MYSQL_PROJECT_LENGTH), primary_key=True),
    sa.Column("queue", name_type(MYSQL_QUEUE_LENGTH), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("id", name_type(ID_LENGTH), nullable=False),
    sa.Column("body", document_type(), nullable=False),
    sa.Column("ttl", sa.Integer, nullable=False),
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("expires", sa.Double, nullable=False),
    sa.Column("available", sa.Double, nullable=False),
    sa.Column("client_id", text_type(), nullable=True),
    sa.Column("claim_id", name_type(ID_LENGTH), nullable=True),
    sa.Column("claim_expires", sa.Double, nullable=True),
    sa.Column("claim_count", sa.Integer, nullable=False, server_default="0"),
)

claims = sa.Table(
    "claims",
    metadata,
    sa.Column("project", name_type(MYSQL_PROJECT_LENGTH), primary_key=True),
    sa.Column("queue", name_type(MYSQL_QUEUE_LENGTH), primary_key=True),
    sa.Column("id", name_type(ID_LENGTH), primary_key=True),
    sa.Column("ttl", sa.Integer, nullable=False),
    sa.Column("updated", sa.Double, nullable=False),
    sa.Column("expires", sa.Double, nullable=False),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("project", name_type(MYSQL_PROJECT_LENGTH), primary_key=True),
    sa.Column("queue", name_type(MYSQL_QUEUE_LENGTH), primary_key=True),
    sa.Column("id", name_type(ID_LENGTH), primary_key=True),
    sa.Column("subscriber", document_type(), nullable=False),
    sa.Column("subscriber_hash", name_type(DIGEST_LENGTH), nullable=False),
    sa.Column("ttl", sa.BigInteger, nullable=False),
    sa.Column("updated", sa.Double, nullable=False),
    sa.Column("expires", sa.Double, nullable=False),
    sa.Column("options", document_type(), nullable=False),
    sa.Column("confirmed", sa.Boolean, nullable=False),
)
