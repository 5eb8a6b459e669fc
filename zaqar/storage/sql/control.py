"""The SQL management store: pools, flavors and the queue catalog on PostgreSQL or MySQL/MariaDB.

URI: as for the SQL message store (``postgresql://zaqar@db/zaqar``,
``mysql+pymysql://zaqar@db/zaqar``); it may be the message store's own
database or another one (``control_tables`` explains why both work). The
tables are created and upgraded on start, or on the first call that reaches
the server when it is down at start-up; until then every call raises
BackendUnavailable, as the message store does.

Each operation is one transaction (``Database.write``/``read``), rerun when
the server aborts it to resolve a race. Writes lock the pool rows they
judge by (``FOR UPDATE``), so a pool cannot be deleted while a flavor is
being given it; unique keys settle the rest (two pools taking one URI, two
placements of one queue).

A pool's ``flavor`` is a bare name, so two projects' flavors of the same
name share their pools; deleting one clears the pools' ``flavor`` only once
no project has that flavor left.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from zaqar.storage import control, errors
from zaqar.storage.projects import project_from_key, project_key
from zaqar.storage.sql import control_tables
from zaqar.storage.sql.control_tables import catalog, flavors, pools, uri_digest
from zaqar.storage.sql.database import Database, create_engine, is_unreachable

log = logging.getLogger(__name__)

P, F, C = pools.c, flavors.c, catalog.c
_POOL_COLUMNS = (P.name, P.uri, P.weight, P.flavor, P.options)


def _after(column: sa.ColumnElement[str], marker: str | None) -> sa.ColumnElement[bool]:
    return sa.true() if marker is None else column > marker


def _pool(row: sa.Row[Any]) -> control.Pool:
    name, uri, weight, flavor, options = row
    return control.Pool(name=name, uri=uri, weight=int(weight), flavor=flavor, options=json.loads(options))


def _check_uri_free(conn: sa.Connection, name: str, uri: str) -> None:
    stmt = sa.select(P.name).where(P.uri_hash == uri_digest(uri), P.uri == uri, P.name != name)
    if conn.execute(stmt).first() is not None:
        raise errors.PoolUriInUse(uri=uri)


def _flavor_exists_anywhere(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.select(F.project).where(F.name == name).limit(1)).first() is not None


def _pools_of(conn: sa.Connection, flavor: str) -> tuple[str, ...]:
    return tuple(conn.execute(sa.select(P.name).where(P.flavor == flavor).order_by(P.name)).scalars())


def _capabilities(conn: sa.Connection, project: str | None, name: str, *, lock: bool) -> dict[str, Any]:
    """The flavor's capabilities; raises FlavorDoesNotExist, so it doubles as the existence check."""
    stmt = sa.select(F.capabilities).where(F.project == project_key(project), F.name == name)
    raw = conn.execute(stmt.with_for_update() if lock else stmt).scalar()
    if raw is None:
        raise errors.FlavorDoesNotExist(name=name, project=project)
    capabilities: dict[str, Any] = json.loads(raw)
    return capabilities


def _assign_pools(conn: sa.Connection, flavor: str, names: Sequence[str]) -> None:
    """Make ``names`` exactly the pools of ``flavor``; checks them all before changing anything."""
    wanted = list(dict.fromkeys(names))
    found = set(
        conn.execute(sa.select(P.name).where(P.name.in_(wanted)).order_by(P.name).with_for_update()).scalars()
    )
    for name in wanted:
        if name not in found:
            raise errors.PoolDoesNotExist(name=name)
    conn.execute(sa.update(pools).where(P.flavor == flavor, P.name.not_in(wanted)).values(flavor=None))
    if wanted:
        conn.execute(sa.update(pools).where(P.name.in_(wanted)).values(flavor=flavor))


def _upsert_flavor(conn: sa.Connection, pk: str, name: str, capabilities: str) -> None:
    # A racing insert of the same flavor fails on the primary key, and the rerun updates.
    key = (F.project == pk, F.name == name)
    if conn.execute(sa.update(flavors).where(*key).values(capabilities=capabilities)).rowcount == 0:
        conn.execute(sa.insert(flavors).values(project=pk, name=name, capabilities=capabilities))


def _insert_placement(conn: sa.Connection, pk: str, queue: str, pool: str) -> str:
    """Insert unless mapped, then read: the insert waits for any racing one, so all read the winner's pool."""
    row = {"project": pk, "queue": queue, "pool": pool}
    if conn.dialect.name == "postgresql":
        conn.execute(postgresql.insert(catalog).values(row).on_conflict_do_nothing())
    else:
        conn.execute(mysql.insert(catalog).values(row).on_duplicate_key_update(pool=C.pool))
    return str(conn.execute(sa.select(C.pool).where(C.project == pk, C.queue == queue)).scalar_one())


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
        values = {"uri": uri, "uri_hash": uri_digest(uri), "weight": weight, "flavor": flavor}
        values["options"] = json.dumps(dict(options or {}))

        def work(conn: sa.Connection) -> None:
            # A racing insert fails on a unique key and is rerun: then the
            # check sees the other pool's uri, or the update finds the name.
            _check_uri_free(conn, name, uri)
            if conn.execute(sa.update(pools).where(P.name == name).values(values)).rowcount == 0:
                conn.execute(sa.insert(pools).values(name=name, **values))

        self._db.write(work, conflict=lambda: errors.PoolUriInUse(uri=uri))

    def get(self, name: str) -> control.Pool:
        row = self._db.read(
            lambda conn: conn.execute(sa.select(*_POOL_COLUMNS).where(P.name == name)).first()
        )
        if row is None:
            raise errors.PoolDoesNotExist(name=name)
        return _pool(row)

    def list(self, *, marker: str | None = None, limit: int = 10) -> list[control.Pool]:
        stmt = sa.select(*_POOL_COLUMNS).where(_after(P.name, marker)).order_by(P.name).limit(limit)
        return [_pool(row) for row in self._db.read(lambda conn: conn.execute(stmt).all())]

    def all(self) -> list[control.Pool]:
        stmt = sa.select(*_POOL_COLUMNS).order_by(P.name)
        return [_pool(row) for row in self._db.read(lambda conn: conn.execute(stmt).all())]

    def update(
        self,
        name: str,
        *,
        uri: str | None = None,
        weight: int | None = None,
        flavor: str | None = control._UNSET,
        options: Mapping[str, Any] | None = None,
    ) -> control.Pool:
        def work(conn: sa.Connection) -> control.Pool:
            row = conn.execute(sa.select(*_POOL_COLUMNS).where(P.name == name).with_for_update()).first()
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
                sa.update(pools)
                .where(P.name == name)
                .values(
                    uri=new.uri,
                    uri_hash=uri_digest(new.uri),
                    weight=new.weight,
                    flavor=new.flavor,
                    options=json.dumps(dict(new.options)),
                )
            )
            return new

        return self._db.write(work, conflict=lambda: errors.PoolUriInUse(uri=uri or ""))

    def delete(self, name: str) -> None:
        def work(conn: sa.Connection) -> None:
            row = conn.execute(sa.select(P.flavor).where(P.name == name).with_for_update()).first()
            if row is None:
                return
            if row.flavor is not None and _flavor_exists_anywhere(conn, row.flavor):
                raise errors.PoolInUseByFlavor(name=name, flavor=row.flavor)
            conn.execute(sa.delete(pools).where(P.name == name))

        self._db.write(work)


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
        raw = json.dumps(dict(capabilities or {}))

        def work(conn: sa.Connection) -> None:
            _assign_pools(conn, name, pools)
            _upsert_flavor(conn, project_key(project), name, raw)

        self._db.write(work)

    def get(self, project: str | None, name: str) -> control.Flavor:
        def work(conn: sa.Connection) -> control.Flavor:
            capabilities = _capabilities(conn, project, name, lock=False)
            return control.Flavor(name, project, _pools_of(conn, name), capabilities)

        return self._db.read(work)

    def list(
        self, project: str | None, *, marker: str | None = None, limit: int = 10
    ) -> list[control.Flavor]:
        stmt = (
            sa.select(F.name, F.capabilities)
            .where(F.project == project_key(project), _after(F.name, marker))
            .order_by(F.name)
            .limit(limit)
        )

        def work(conn: sa.Connection) -> list[control.Flavor]:
            rows = conn.execute(stmt).all()
            members: dict[str, list[str]] = {name: [] for name, _ in rows}
            if members:
                found = sa.select(P.flavor, P.name).where(P.flavor.in_(list(members))).order_by(P.name)
                for flavor, pool in conn.execute(found):
                    members[flavor].append(pool)
            return [
                control.Flavor(name, project, tuple(members[name]), json.loads(raw)) for name, raw in rows
            ]

        return self._db.read(work)

    def update(self, project: str | None, name: str, pools: Sequence[str]) -> control.Flavor:
        def work(conn: sa.Connection) -> control.Flavor:
            capabilities = _capabilities(conn, project, name, lock=True)
            _assign_pools(conn, name, pools)
            return control.Flavor(name, project, _pools_of(conn, name), capabilities)

        return self._db.write(work)

    def delete(self, project: str | None, name: str) -> None:
        def work(conn: sa.Connection) -> None:
            # Locking the pools first orders this after any racing delete of
            # the same name, so the last one to go sees none left and clears.
            conn.execute(sa.select(P.name).where(P.flavor == name).with_for_update()).all()
            conn.execute(sa.delete(flavors).where(F.project == project_key(project), F.name == name))
            if not _flavor_exists_anywhere(conn, name):
                conn.execute(sa.update(pools).where(P.flavor == name).values(flavor=None))

        self._db.write(work)


class CatalogController(control.CatalogController):
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, project: str | None, queue: str) -> str:
        stmt = sa.select(C.pool).where(C.project == project_key(project), C.queue == queue)
        pool = self._db.read(lambda conn: conn.execute(stmt).scalar())
        if pool is None:
            raise errors.QueueNotMapped(name=queue, project=project)
        return str(pool)

    def insert(self, project: str | None, queue: str, pool: str) -> str:
        return self._db.write(lambda conn: _insert_placement(conn, project_key(project), queue, pool))

    def delete(self, project: str | None, queue: str) -> None:
        stmt = sa.delete(catalog).where(C.project == project_key(project), C.queue == queue)
        self._db.write(lambda conn: conn.execute(stmt))

    def list(
        self, project: str | None, *, marker: str | None = None, limit: int = 10
    ) -> list[tuple[str, str]]:
        stmt = (
            sa.select(C.queue, C.pool)
            .where(C.project == project_key(project), _after(C.queue, marker))
            .order_by(C.queue)
            .limit(limit)
        )
        return [(queue, pool) for queue, pool in self._db.read(lambda conn: conn.execute(stmt).all())]

    def count(self, pool: str) -> int:
        stmt = sa.select(sa.func.count()).select_from(catalog).where(C.pool == pool)
        return int(self._db.read(lambda conn: conn.execute(stmt).scalar_one()))

    def placed(self, pool: str) -> list[tuple[str | None, str]]:
        stmt = sa.select(C.project, C.queue).where(C.pool == pool)
        rows = self._db.read(lambda conn: conn.execute(stmt).all())
        return [(project_from_key(key), queue) for key, queue in rows]

    def forget_pool(self, pool: str) -> int:
        stmt = sa.delete(catalog).where(C.pool == pool)
        return int(self._db.write(lambda conn: conn.execute(stmt).rowcount))


class ControlDriver(control.ControlDriver):
    """Management store in a SQL server; safe to share between threads and processes."""

    def __init__(self, uri: str) -> None:
        engine = create_engine(uri)
        self._db = Database(engine, control_tables.upgrade)
        try:
            self._db.ensure_prepared()
        except errors.BackendUnavailable as exc:
            if not is_unreachable(exc):
                engine.dispose()
                raise
            # Start anyway, as the message store does: calls raise
            # BackendUnavailable until the server answers, and the first one
            # that reaches it creates the tables.
            log.warning("management store database unreachable at start-up (%s); will retry on use", exc)
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
        if self._db.closed:
            return False
        try:
            self._db.read(lambda conn: conn.execute(sa.select(P.name).limit(1)).all())
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._db.close()
