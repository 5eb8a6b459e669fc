"""The PostgreSQL store's cache invalidation channel: LISTEN/NOTIFY, one channel per schema.

Writes that change a cached read (queue metadata, a queue's subscriptions)
run ``pg_notify`` with the key they changed inside their own transaction, so
PostgreSQL delivers it if and only if the transaction commits, and only
after it did. The channel is named after the schema the tables live in
(``zaqar_cache_`` + md5 of ``current_schema()``), so stores sharing one
database in different schemas do not disturb each other. Each driver's
listener holds one connection of its own, outside the engine's pool.

MySQL/MariaDB have no such channel: that dialect reads the store every time
(``zaqar.storage.cache.Uncached``).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from zaqar.storage.cache import Cache, Uncached

_CHANNEL = "'zaqar_cache_' || md5(current_schema())"
_NOTIFY = sa.text(f"SELECT pg_notify({_CHANNEL}, :key)")
# TCP settings of the listener's connection, so a silently dead one errors out within
# seconds instead of leaving the listener blocked (and the cache trusted) indefinitely.
_KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                              "keepalives_count": 3, "tcp_user_timeout": 10_000}
_CONNECT_TIMEOUT = 10


def metadata_key(pk: str, name: str) -> str:
    return json.dumps(["m", pk, name])


def subscriptions_key(pk: str, queue: str) -> str:
    return json.dumps(["s", pk, queue])


def cache_for(engine: sa.Engine) -> Cache | Uncached:
    """A cache invalidated over LISTEN/NOTIFY on PostgreSQL with psycopg 3; elsewhere none."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return Uncached()
    return Cache(lambda: PostgresChannel(engine), name=f"postgresql-{engine.url.database}")


def write_invalidating(db: Any, cache: Cache | Uncached, key: str, work: Any) -> Any:
    """Run ``work(conn)`` as ``db.write`` and invalidate ``key`` in every process's cache.

    Other processes hear it over NOTIFY when the transaction commits; this one
    drops its copy at once, also when the write failed (it may have committed).
    """

    def notified(conn: sa.Connection) -> Any:
        result = work(conn)
        notify(conn, key)
        return result

    try:
        return db.write(notified)
    finally:
        cache.invalidate(key)


def notify(conn: sa.Connection, key: str) -> None:
    """Tell every process's cache that ``key`` changes when this transaction commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY, {"key": key})


class PostgresChannel:
    """``zaqar.storage.cache.Channel`` over a dedicated psycopg connection in autocommit mode."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._conn: Any = None
        self._answered = False

    def subscribe(self) -> None:
        import psycopg
        from psycopg import sql

        args, kwargs = self._engine.dialect.create_connect_args(self._engine.url)
        kwargs = {"connect_timeout": _CONNECT_TIMEOUT, **_KEEPALIVE, **kwargs}
        # Named apart from the pool's connections, so an operator sees what it is.
        kwargs["application_name"] = f"{kwargs.get('application_name') or 'zaqar'} cache listener"[:63]
        self._conn = psycopg.connect(*args, **kwargs, autocommit=True)
        (name,) = self._conn.execute(f"SELECT {_CHANNEL}").fetchone()
        # LISTEN takes effect at once in autocommit mode: every later commit's notify reaches us.
        self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))

    def receive(self, timeout: float) -> list[str] | None:
        if self._answered:
            self._answered = False
            return []
        keys = [note.payload for note in self._conn.notifies(timeout=timeout, stop_after=1)]
        return keys or None

    def ping(self) -> None:
        # A round trip: returns only once the server answered (notifications that arrive
        # meanwhile wait in psycopg's backlog for the next ``receive``).
        self._conn.execute("SELECT 1")
        self._answered = True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
