"""The embedded SQLite management store: pools, flavors and the queue catalog.

URI: as for the SQLite message store (``sqlite:////var/lib/zaqar/control.sqlite``).
It is meant to be a file of its own, but its tables (``pools``, ``flavors``,
``catalog``) share no name with the message store's and it leaves
``PRAGMA user_version`` (the message store's schema version) alone, so both
stores may also live in one file. Its own version sits in
``control_schema_version``; every statement is idempotent.

A pool's ``flavor`` is a bare flavor name (pools are global, flavors per
project), so a flavor's pools are the pools carrying its name. Two projects
that define a flavor of the same name therefore share its pools; deleting one
of them clears the pools' ``flavor`` only once no project has that flavor left.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from zaqar.storage import control, errors
from zaqar.storage.projects import project_from_key, project_key
from zaqar.storage.sqlite import schema
from zaqar.storage.sqlite.common import Database, unavailable
from zaqar.storage.sqlite.driver import parse_uri

SCHEMA_VERSION = 1

_STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS control_schema_version (version INTEGER PRIMARY KEY)",
    """
    CREATE TABLE IF NOT EXISTS pools (
        name TEXT PRIMARY KEY,
        uri TEXT NOT NULL UNIQUE,
        weight INTEGER NOT NULL,
        flavor TEXT,
        options TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS pools_by_flavor ON pools (flavor) WHERE flavor IS NOT NULL",
    """
    CREATE TABLE IF NOT EXISTS flavors (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        capabilities TEXT NOT NULL,
        PRIMARY KEY (project, name)
    )
    """,
    "CREATE INDEX IF NOT EXISTS flavors_by_name ON flavors (name)",
    """
    CREATE TABLE IF NOT EXISTS catalog (
        project TEXT NOT NULL,
        queue TEXT NOT NULL,
        pool TEXT NOT NULL,
        PRIMARY KEY (project, queue)
    )
    """,
    "CREATE INDEX IF NOT EXISTS catalog_by_pool ON catalog (pool)",
)


def _ensure_schema(db: Database) -> None:
    """Create missing tables; refuse a file written by a newer version of this store."""
    with db.write() as conn:
        for statement in _STATEMENTS:
            conn.execute(statement)
        version = conn.execute("SELECT max(version) FROM control_schema_version").fetchone()[0] or 0
        if version > SCHEMA_VERSION:
            raise schema.SchemaError(f"control schema version {version} is newer than {SCHEMA_VERSION}")
        conn.execute("INSERT OR IGNORE INTO control_schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


def _pool(row: sqlite3.Row | tuple[Any, ...]) -> control.Pool:
    name, uri, weight, flavor, options = row
    return control.Pool(name=name, uri=uri, weight=int(weight), flavor=flavor, options=json.loads(options))


_POOL_COLUMNS = "name, uri, weight, flavor, options"
# Strictly after the marker, or everything when it is None (binds: marker, marker).
_AFTER = "(? IS NULL OR {} > ?)"


def _check_uri_free(conn: sqlite3.Connection, name: str, uri: str) -> None:
    row = conn.execute("SELECT 1 FROM pools WHERE uri = ? AND name != ?", (uri, name)).fetchone()
    if row is not None:
        raise errors.PoolUriInUse(uri=uri)


def _flavor_exists_anywhere(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM flavors WHERE name = ? LIMIT 1", (name,)).fetchone() is not None


def _capabilities(conn: sqlite3.Connection, project: str | None, name: str) -> dict[str, Any]:
    """The flavor's capabilities; raises FlavorDoesNotExist, so it doubles as the existence check."""
    row = conn.execute(
        "SELECT capabilities FROM flavors WHERE project = ? AND name = ?", (project_key(project), name)
    ).fetchone()
    if row is None:
        raise errors.FlavorDoesNotExist(name=name, project=project)
    capabilities: dict[str, Any] = json.loads(row[0])
    return capabilities


def _pools_of(conn: sqlite3.Connection, flavor: str) -> tuple[str, ...]:
    rows = conn.execute("SELECT name FROM pools WHERE flavor = ? ORDER BY name", (flavor,)).fetchall()
    return tuple(row[0] for row in rows)


def _assign_pools(conn: sqlite3.Connection, flavor: str, pools: Sequence[str]) -> None:
    """Make ``pools`` exactly the pools of ``flavor``; checks them all before changing anything."""
    wanted = list(dict.fromkeys(pools))
    for pool in wanted:
        if conn.execute("SELECT 1 FROM pools WHERE name = ?", (pool,)).fetchone() is None:
            raise errors.PoolDoesNotExist(name=pool)
    placeholders = ", ".join("?" * len(wanted))
    dropped = f"flavor = ? AND name NOT IN ({placeholders})" if wanted else "flavor = ?"
    conn.execute(f"UPDATE pools SET flavor = NULL WHERE {dropped}", (flavor, *wanted))
    if wanted:
        conn.execute(f"UPDATE pools SET flavor = ? WHERE name IN ({placeholders})", (flavor, *wanted))


class PoolController(control.PoolController):
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        name: str,
        uri: str,
        weight: int,
        *,
        flavor: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        with self._db.write() as conn:
            _check_uri_free(conn, name, uri)
            conn.execute(
                "INSERT INTO pools (name, uri, weight, flavor, options) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET uri = excluded.uri, weight = excluded.weight,"
                " flavor = excluded.flavor, options = excluded.options",
                (name, uri, weight, flavor, json.dumps(dict(options or {}))),
            )

    def get(self, name: str) -> control.Pool:
        with self._db.read() as conn:
            row = conn.execute(f"SELECT {_POOL_COLUMNS} FROM pools WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise errors.PoolDoesNotExist(name=name)
        return _pool(row)

    def list(self, *, marker: str | None = None, limit: int = 10) -> list[control.Pool]:
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {_POOL_COLUMNS} FROM pools WHERE {_AFTER.format('name')} ORDER BY name LIMIT ?",
                (marker, marker, limit),
            ).fetchall()
        return [_pool(row) for row in rows]

    def all(self) -> list[control.Pool]:
        with self._db.read() as conn:
            rows = conn.execute(f"SELECT {_POOL_COLUMNS} FROM pools ORDER BY name").fetchall()
        return [_pool(row) for row in rows]

    def update(
        self,
        name: str,
        *,
        uri: str | None = None,
        weight: int | None = None,
        flavor: str | None = control._UNSET,
        options: Mapping[str, Any] | None = None,
    ) -> control.Pool:
        with self._db.write() as conn:
            row = conn.execute(f"SELECT {_POOL_COLUMNS} FROM pools WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise errors.PoolDoesNotExist(name=name)
            old = _pool(row)
            new = control.Pool(
                name=name,
                uri=old.uri if uri is None else uri,
                weight=old.weight if weight is None else weight,
                flavor=old.flavor if flavor is control._UNSET else flavor,
                options=old.options if options is None else dict(options),
            )
            if new.uri != old.uri:
                _check_uri_free(conn, name, new.uri)
            conn.execute(
                "UPDATE pools SET uri = ?, weight = ?, flavor = ?, options = ? WHERE name = ?",
                (new.uri, new.weight, new.flavor, json.dumps(dict(new.options)), name),
            )
        return new

    def delete(self, name: str) -> None:
        with self._db.write() as conn:
            row = conn.execute("SELECT flavor FROM pools WHERE name = ?", (name,)).fetchone()
            if row is None:
                return
            if row[0] is not None and _flavor_exists_anywhere(conn, row[0]):
                raise errors.PoolInUseByFlavor(name=name, flavor=row[0])
            conn.execute("DELETE FROM pools WHERE name = ?", (name,))


class FlavorController(control.FlavorController):
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        project: str | None,
        name: str,
        pools: Sequence[str],
        *,
        capabilities: Mapping[str, Any] | None = None,
    ) -> None:
        with self._db.write() as conn:
            _assign_pools(conn, name, pools)
            conn.execute(
                "INSERT INTO flavors (project, name, capabilities) VALUES (?, ?, ?)"
                " ON CONFLICT (project, name) DO UPDATE SET capabilities = excluded.capabilities",
                (project_key(project), name, json.dumps(dict(capabilities or {}))),
            )

    def get(self, project: str | None, name: str) -> control.Flavor:
        with self._db.read() as conn:
            capabilities = _capabilities(conn, project, name)
            pools = _pools_of(conn, name)
        return control.Flavor(name=name, project=project, pools=pools, capabilities=capabilities)

    def list(
        self, project: str | None, *, marker: str | None = None, limit: int = 10
    ) -> list[control.Flavor]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT name, capabilities FROM flavors WHERE project = ? AND"
                f" {_AFTER.format('name')} ORDER BY name LIMIT ?",
                (project_key(project), marker, marker, limit),
            ).fetchall()
            return [
                control.Flavor(
                    name=name,
                    project=project,
                    pools=_pools_of(conn, name),
                    capabilities=json.loads(capabilities),
                )
                for name, capabilities in rows
            ]

    def update(self, project: str | None, name: str, pools: Sequence[str]) -> control.Flavor:
        with self._db.write() as conn:
            capabilities = _capabilities(conn, project, name)
            _assign_pools(conn, name, pools)
            members = _pools_of(conn, name)
        return control.Flavor(name=name, project=project, pools=members, capabilities=capabilities)

    def delete(self, project: str | None, name: str) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM flavors WHERE project = ? AND name = ?", (project_key(project), name))
            if not _flavor_exists_anywhere(conn, name):
                conn.execute("UPDATE pools SET flavor = NULL WHERE flavor = ?", (name,))


_CATALOG_GET = "SELECT pool FROM catalog WHERE project = ? AND queue = ?"


class CatalogController(control.CatalogController):
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, project: str | None, queue: str) -> str:
        with self._db.read() as conn:
            row = conn.execute(_CATALOG_GET, (project_key(project), queue)).fetchone()
        if row is None:
            raise errors.QueueNotMapped(name=queue, project=project)
        return str(row[0])

    def insert(self, project: str | None, queue: str, pool: str) -> str:
        # BEGIN IMMEDIATE holds the write lock across both statements, so
        # racing inserters (threads or processes) all read the first one's pool.
        pk = project_key(project)
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO catalog (project, queue, pool) VALUES (?, ?, ?)", (pk, queue, pool)
            )
            row = conn.execute(_CATALOG_GET, (pk, queue)).fetchone()
        return str(row[0])

    def delete(self, project: str | None, queue: str) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM catalog WHERE project = ? AND queue = ?", (project_key(project), queue))

    def list(
        self, project: str | None, *, marker: str | None = None, limit: int = 10
    ) -> list[tuple[str, str]]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT queue, pool FROM catalog WHERE project = ? AND"
                f" {_AFTER.format('queue')} ORDER BY queue LIMIT ?",
                (project_key(project), marker, marker, limit),
            ).fetchall()
        return [(queue, pool) for queue, pool in rows]

    def count(self, pool: str) -> int:
        with self._db.read() as conn:
            return int(conn.execute("SELECT count(*) FROM catalog WHERE pool = ?", (pool,)).fetchone()[0])

    def placed(self, pool: str) -> list[tuple[str | None, str]]:
        with self._db.read() as conn:
            rows = conn.execute("SELECT project, queue FROM catalog WHERE pool = ?", (pool,)).fetchall()
        return [(project_from_key(key), queue) for key, queue in rows]

    def forget_pool(self, pool: str) -> int:
        with self._db.write() as conn:
            return conn.execute("DELETE FROM catalog WHERE pool = ?", (pool,)).rowcount


class ControlDriver(control.ControlDriver):
    """Management store in one SQLite file; safe to share between threads and processes."""

    def __init__(self, uri: str) -> None:
        path, synchronous = parse_uri(uri)
        self._db = Database(path, synchronous)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            schema.enable_wal(self._db.connection())
            _ensure_schema(self._db)
        except (OSError, sqlite3.Error, schema.SchemaError) as exc:
            self._db.close()
            raise unavailable(exc) from exc
        except errors.BackendUnavailable:
            self._db.close()
            raise
        self._pools = PoolController(self._db)
        self._flavors = FlavorController(self._db)
        self._catalog = CatalogController(self._db)

    @property
    def pools(self) -> PoolController:
        return self._pools

    @property
    def flavors(self) -> FlavorController:
        return self._flavors

    @property
    def catalog(self) -> CatalogController:
        return self._catalog

    def is_alive(self) -> bool:
        try:
            with self._db.read() as conn:
                conn.execute("SELECT 1 FROM pools LIMIT 1").fetchall()
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._db.close()
