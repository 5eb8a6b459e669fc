"""The SQL message store: PostgreSQL first, MySQL 8 / MariaDB 10.6+ as well.

URI: any SQLAlchemy URL of a supported server, e.g.
``postgresql://zaqar@db.example/zaqar`` (psycopg 3),
``postgresql+psycopg://...`` or ``mysql+pymysql://zaqar@db.example/zaqar``,
optionally with ``pool_size``, ``max_overflow``, ``pool_timeout`` and
``pool_recycle`` query options. The driver creates and upgrades its own
tables on start (``migrations``); several server processes may share one
database, since every read-modify-write is one transaction that takes the
row locks it needs.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from zaqar.storage import base, errors
from zaqar.storage.cache import Cache, Uncached
from zaqar.storage.sql import invalidation, migrations
from zaqar.storage.sql.claims import ClaimController
from zaqar.storage.sql.database import Database, create_engine, is_unreachable
from zaqar.storage.sql.messages import MessageController
from zaqar.storage.sql.queues import QueueController
from zaqar.storage.sql.subscriptions import SubscriptionController, delete_expired
from zaqar.storage.sql.tables import claims, messages

log = logging.getLogger(__name__)

# gc() deletes in batches so it never holds many row locks at once, nor makes
# one huge transaction out of a large backlog of expired messages.
GC_BATCH = 1000

m = messages.c


def _gc_batch(conn: sa.Connection, now: float) -> int:
    """Delete up to GC_BATCH expired messages; rows others are working on are left for later."""
    keys = conn.execute(
        sa.select(m.project, m.queue, m.seq)
        .where(m.expires <= now)
        .limit(GC_BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    if not keys:
        return 0
    stmt = sa.delete(messages).where(sa.tuple_(m.project, m.queue, m.seq).in_([tuple(key) for key in keys]))
    conn.execute(stmt)
    return len(keys)


def _gc_claims(conn: sa.Connection, now: float) -> None:
    # Messages keep an expired claim's id (it still deletes them), so only the
    # record goes; it is only needed while the claim can be read or renewed.
    conn.execute(sa.delete(claims).where(claims.c.expires <= now))


class DataDriver(base.DataDriver):
    """Message store in a SQL server; safe to share between threads and processes."""

    capabilities = frozenset(
        {base.Capability.FIFO, base.Capability.CLAIMS, base.Capability.DURABILITY, base.Capability.AOD}
    )

    def __init__(self, uri: str, *, clock: base.Clock = time.time) -> None:
        engine = create_engine(uri)
        self._clock = clock
        self._db = Database(engine, lambda bound: migrations.upgrade(bound, clock))
        try:
            self._db.ensure_prepared()
        except errors.BackendUnavailable as exc:
            if not is_unreachable(exc):
                engine.dispose()
                raise
            # Like a Redis store, start anyway: requests get 503 until the
            # server answers, and the first one that reaches it migrates.
            log.warning("message store database unreachable at start-up (%s); will retry on use", exc)
        self._cache = invalidation.cache_for(engine)
        self._queues = QueueController(self._db, clock, self._cache)
        self._messages = MessageController(self._db, clock)
        self._claims = ClaimController(self._db, clock)
        self._subscriptions = SubscriptionController(self._db, clock, self._cache)

    @property
    def cache(self) -> Cache | Uncached:
        """Queue metadata and live subscriptions read once per change (PostgreSQL; see ``invalidation``)."""
        return self._cache

    @property
    def queues(self) -> QueueController:
        return self._queues

    @property
    def messages(self) -> MessageController:
        return self._messages

    @property
    def claims(self) -> ClaimController:
        return self._claims

    @property
    def subscriptions(self) -> SubscriptionController:
        return self._subscriptions

    def is_alive(self) -> bool:
        if self._db.closed:
            return False
        try:
            self._db.ping()
        except Exception:
            return False
        return True

    def gc(self) -> int:
        now = self._clock()
        removed = 0
        while True:
            batch = self._db.write(lambda conn: _gc_batch(conn, now))
            removed += batch
            if batch < GC_BATCH:
                break
        self._db.write(lambda conn: _gc_claims(conn, now))
        self._db.write(lambda conn: delete_expired(conn, now))
        return removed

    def close(self) -> None:
        self._cache.close()
        self._db.close()
