"""SQL-specific behaviour of the SQLAlchemy store; shared semantics live in tests/contract.

The tests that need a server use ZAQAR_TEST_SQL_URL (PostgreSQL, one schema
per test, see tests/backends.py). ZAQAR_TEST_MYSQL_URL, a MySQL/MariaDB URL
such as ``mysql+pymysql://root@127.0.0.1:3306/test``, adds a smoke test of
the MySQL dialect in a database of its own.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from tests import backends
from tests.conftest import FakeClock
from tests.proxy import ToggleProxy
from zaqar.storage import errors
from zaqar.storage.base import DeadLetter, MessageDraft
from zaqar.storage.sql import DataDriver, migrations, tables
from zaqar.storage.sql import messages as sql_messages
from zaqar.storage.sql.database import ATTEMPTS, create_engine, parse_uri

DEAD_PG = "postgresql://postgres@127.0.0.1:1/x"
ALL_VERSIONS = [step.version for step in migrations.STEPS]
MYSQL_ENV = "ZAQAR_TEST_MYSQL_URL"


@pytest.fixture
def uri() -> Iterator[str]:
    with backends.sql_uri() as value:
        yield value


@pytest.fixture
def store(uri: str, clock: FakeClock) -> Iterator[DataDriver]:
    driver = DataDriver(uri, clock=clock)
    yield driver
    driver.close()


def _drafts(count: int) -> list[MessageDraft]:
    return [MessageDraft(body=i, ttl=300) for i in range(count)]


def _run_threads(count: int, target: Any) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# -- URI handling (no server needed) -----------------------------------------------


@pytest.mark.parametrize(
    ("uri", "backend"),
    [
        ("postgresql://postgres@127.0.0.1:5432/zaqar", "postgresql"),
        ("postgresql+psycopg://postgres@db/zaqar?options=-csearch_path%3Dx", "postgresql"),
        ("mysql+pymysql://root@127.0.0.1:3306/test", "mysql"),
        ("mariadb+pymysql://root@127.0.0.1:3306/test", "mariadb"),
    ],
)
def test_parse_uri_accepts_sqlalchemy_urls(uri: str, backend: str) -> None:
    url, options = parse_uri(uri)
    assert url.get_backend_name() == backend
    assert options["pool_size"] > 0


def test_parse_uri_takes_out_pool_options() -> None:
    url, options = parse_uri(
        "postgresql://u@h/db?pool_size=3&max_overflow=0&pool_timeout=2.5&pool_recycle=60&sslmode=disable"
    )
    assert (options["pool_size"], options["max_overflow"]) == (3, 0)
    assert (options["pool_timeout"], options["pool_recycle"]) == (2.5, 60)
    assert dict(url.query) == {"sslmode": "disable"}  # the rest still reaches the client library


@pytest.mark.parametrize(
    "uri",
    ["sqlite:////tmp/zaqar.sqlite", "redis://localhost", "not a url", "postgresql://u@h/db?pool_size=many"],
)
def test_parse_uri_rejects(uri: str) -> None:
    with pytest.raises(errors.BackendUnavailable):
        parse_uri(uri)


def test_engine_uses_psycopg3_and_the_pool_options() -> None:
    engine = create_engine("postgresql://postgres@127.0.0.1:1/x?pool_size=3")
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
        assert "pool_size" not in engine.url.query
    finally:
        engine.dispose()


def test_missing_client_library_is_backend_unavailable(clock: FakeClock) -> None:
    if importlib.util.find_spec("pg8000") is not None:
        pytest.skip("pg8000 is installed")
    with pytest.raises(errors.BackendUnavailable):
        DataDriver("postgresql+pg8000://postgres@127.0.0.1:5432/x", clock=clock)


@pytest.mark.parametrize("dead", [DEAD_PG, "mysql+pymysql://root@127.0.0.1:1/x"])
def test_dead_port_is_not_alive_and_unavailable(clock: FakeClock, dead: str) -> None:
    if dead.startswith("mysql"):
        pytest.importorskip("pymysql")
    driver = DataDriver(dead, clock=clock)  # starts anyway, like a server started before its database
    try:
        assert driver.is_alive() is False
        with pytest.raises(errors.BackendUnavailable):
            driver.queues.create("p", "q", {})
        with pytest.raises(errors.BackendUnavailable):
            driver.messages.list("p", "q")
        with pytest.raises(errors.BackendUnavailable):
            driver.gc()
    finally:
        driver.close()


def test_migration_steps_must_be_numbered_in_order(clock: FakeClock) -> None:
    engine = create_engine(DEAD_PG)
    try:
        with pytest.raises(ValueError):
            migrations.upgrade(engine, clock, (migrations.STEPS[0], migrations.STEPS[0]))
    finally:
        engine.dispose()


# -- availability --------------------------------------------------------------------


def test_unreachable_server_is_not_alive_and_unavailable(store: DataDriver) -> None:
    assert store.is_alive()
    live_engine = store._db.engine
    store._db.engine = create_engine(DEAD_PG)  # as if the server went away
    try:
        assert store.is_alive() is False
        with pytest.raises(errors.BackendUnavailable):
            store.queues.count("p")
        with pytest.raises(errors.BackendUnavailable):
            store.messages.post("p", "q", _drafts(1), None)
    finally:
        live_engine.dispose()


def test_closed_driver_is_unavailable_and_not_alive(store: DataDriver) -> None:
    store.close()
    assert store.is_alive() is False
    with pytest.raises(errors.BackendUnavailable):
        store.queues.count("p")


def test_recovers_after_the_server_drops_its_connections(uri: str, clock: FakeClock) -> None:
    name = f"zaqar-test-{uuid.uuid4().hex[:12]}"
    driver = DataDriver(f"{uri}&application_name={name}", clock=clock)
    try:
        driver.messages.post("p", "q", _drafts(2), None)
        killer = sa.create_engine(uri, poolclass=sa.pool.NullPool)
        with killer.begin() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"
                ),
                {"name": name},
            ).all()
        killer.dispose()
        assert killed  # the pool's connections are dead now, as after a server restart
        driver.messages.post("p", "q", _drafts(1), None)
        assert len(driver.messages.list("p", "q")) == 3
        assert driver.is_alive()
    finally:
        driver.close()


def _proxied(uri: str, proxy: ToggleProxy) -> str:
    url = sa.make_url(uri)
    return url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def test_starts_before_the_database_and_migrates_once_it_answers(uri: str, clock: FakeClock) -> None:
    url = sa.make_url(uri)
    proxy = ToggleProxy((url.host or "127.0.0.1", url.port or 5432))
    driver = DataDriver(_proxied(uri, proxy), clock=clock)
    try:
        assert driver.is_alive() is False
        with pytest.raises(errors.BackendUnavailable):
            driver.messages.post("p", "q", _drafts(1), None)
        proxy.up()
        assert driver.messages.post("p", "q", _drafts(1), None)
        assert _versions(driver) == ALL_VERSIONS
        proxy.down()  # an outage after start: every connection is reset
        with pytest.raises(errors.BackendUnavailable):
            driver.messages.list("p", "q")
        assert driver.is_alive() is False
        proxy.up()
        assert len(driver.messages.list("p", "q")) == 1
        assert driver.is_alive() is True
    finally:
        driver.close()
        proxy.down()


def test_transient_errors_are_retried_and_others_translated(store: DataDriver) -> None:
    class Orig(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    calls: list[int] = []

    def deadlock_once(conn: sa.Connection) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise sa_exc.OperationalError("UPDATE", {}, Orig("40P01"))
        return "done"

    assert store._db.write(deadlock_once) == "done"
    assert len(calls) == 2

    def broken(conn: sa.Connection) -> None:
        raise sa_exc.OperationalError("SELECT", {}, Orig("08006"))

    with pytest.raises(errors.BackendUnavailable):
        store._db.write(broken)

    def always_duplicate(conn: sa.Connection) -> None:
        calls.append(1)
        raise sa_exc.IntegrityError("INSERT", {}, Orig("23505"))

    calls.clear()
    with pytest.raises(errors.Conflict):
        store._db.write(always_duplicate)
    assert len(calls) == ATTEMPTS


# -- schema and migrations -----------------------------------------------------------


def _versions(store: DataDriver) -> list[int]:
    stmt = sa.select(tables.schema_version.c.version).order_by(tables.schema_version.c.version)
    return store._db.read(lambda conn: list(conn.execute(stmt).scalars()))


def test_schema_version_is_recorded(store: DataDriver) -> None:
    assert _versions(store) == [step.version for step in migrations.STEPS]


def test_drivers_opening_at_once_migrate_exactly_once(uri: str, clock: FakeClock) -> None:
    barrier = threading.Barrier(4)
    opened: list[DataDriver] = []
    failures: list[BaseException] = []

    def open_driver(_: int) -> None:
        barrier.wait()
        try:
            opened.append(DataDriver(uri, clock=clock))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    _run_threads(4, open_driver)
    try:
        assert failures == []
        assert _versions(opened[0]) == ALL_VERSIONS
        opened[0].messages.post("p", "q", _drafts(1), None)
        assert len(opened[3].messages.list("p", "q")) == 1
    finally:
        for driver in opened:
            driver.close()


def test_migrated_schema_matches_the_query_tables(store: DataDriver) -> None:
    inspector = sa.inspect(store._db.engine)
    for table in tables.metadata.sorted_tables:
        reflected = {col["name"]: col for col in inspector.get_columns(table.name)}
        assert list(reflected) == [col.name for col in table.columns], table.name
        for col in table.columns:
            assert reflected[col.name]["nullable"] == col.nullable, (table.name, col.name)
        primary = inspector.get_pk_constraint(table.name)["constrained_columns"]
        assert primary == [col.name for col in table.primary_key.columns], table.name
    assert {ix["name"] for ix in inspector.get_indexes("messages")} >= {
        "messages_by_id",
        "messages_by_claim",
        "messages_by_expiry",
    }
    _assert_subscription_indexes(store._db.engine)


def _assert_subscription_indexes(engine: sa.Engine) -> None:
    indexes = {ix["name"]: ix for ix in sa.inspect(engine).get_indexes("subscriptions")}
    unique = indexes["subscriptions_by_subscriber"]
    assert unique["unique"] and unique["column_names"] == ["project", "queue", "subscriber_hash"]
    assert "subscriptions_by_expiry" in indexes


def test_a_version_1_database_upgrades_to_subscriptions(uri: str, clock: FakeClock) -> None:
    engine = create_engine(uri)
    try:
        assert migrations.upgrade(engine, clock, migrations.STEPS[:1]) == 1  # as the first release left it
        assert "subscriptions" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    old = DataDriver(uri, clock=clock)  # opening it upgrades
    try:
        assert _versions(old) == ALL_VERSIONS
        _assert_subscription_indexes(old._db.engine)
        sid = old.subscriptions.create("p", "q", "http://a", 60, {"k": [1]})
        assert old.subscriptions.get("p", "q", sid).options == {"k": [1]}
    finally:
        old.close()


def test_an_interrupted_subscriptions_step_completes(store: DataDriver, uri: str, clock: FakeClock) -> None:
    # As MySQL may leave it after a crash: the table is there (DDL commits at
    # once), its unique index and the version row are not.
    def undo(conn: sa.Connection) -> None:
        conn.execute(sa.text("DROP INDEX subscriptions_by_subscriber"))
        conn.execute(sa.delete(tables.schema_version).where(tables.schema_version.c.version == 2))

    store._db.write(undo)
    reopened = DataDriver(uri, clock=clock)
    try:
        assert _versions(reopened) == ALL_VERSIONS
        _assert_subscription_indexes(reopened._db.engine)
    finally:
        reopened.close()


def _add_note_column(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE queues ADD COLUMN note TEXT"))


def test_a_later_step_adds_a_column_once(store: DataDriver, uri: str, clock: FakeClock) -> None:
    store.queues.create("p", "kept", {"a": 1})
    later = migrations.latest() + 1
    steps = (*migrations.STEPS, migrations.Step(later, "queue notes", _add_note_column))
    engine = create_engine(uri)
    try:
        assert migrations.upgrade(engine, clock, steps) == later
        assert migrations.upgrade(engine, clock, steps) == later  # a second ALTER would fail
        columns = [col["name"] for col in sa.inspect(engine).get_columns("queues")]
        assert columns[-1] == "note"
    finally:
        engine.dispose()
    assert _versions(store) == [*ALL_VERSIONS, later]
    assert store.queues.get_metadata("p", "kept") == {"a": 1}
    # This code does not know the added step: it must not write to a newer schema.
    with pytest.raises(errors.BackendUnavailable, match="newer"):
        DataDriver(uri, clock=clock)


def test_reopening_keeps_data_and_sequence(uri: str, clock: FakeClock) -> None:
    first = DataDriver(uri, clock=clock)
    first.queues.create("p", "meta", {"a": 1})
    old_ids = first.messages.post("p", "q", _drafts(3), None)
    first.messages.delete_many("p", "q", old_ids)
    first.close()

    second = DataDriver(uri, clock=clock)
    try:
        assert second.queues.get_metadata("p", "meta") == {"a": 1}
        (new_id,) = second.messages.post("p", "q", _drafts(1), None)
        assert new_id > old_ids[-1]
        assert [m.id for m in second.messages.list("p", "q", marker=old_ids[0])] == [new_id]
    finally:
        second.close()


# -- storage details -----------------------------------------------------------------


def test_none_project_differs_from_empty_project(store: DataDriver) -> None:
    store.queues.create(None, "q", {"owner": None})
    store.queues.create("", "q", {"owner": ""})
    assert store.queues.get_metadata(None, "q") == {"owner": None}
    assert store.queues.get_metadata("", "q") == {"owner": ""}
    keys = store._db.read(lambda conn: sorted(conn.execute(sa.select(tables.queues.c.project)).scalars()))
    assert keys == ["", "p"]


def test_id_collisions_are_retried_then_reported_as_conflict(
    store: DataDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    (taken,) = store.messages.post("p", "q", _drafts(1), None)
    fresh = itertools.chain([taken, "f" * 24], itertools.repeat(taken))
    monkeypatch.setattr(sql_messages, "new_message_id", lambda seq: next(fresh))
    # The first attempt reuses an existing id; the rerun draws a fresh one.
    assert store.messages.post("p", "q", _drafts(1), None) == ["f" * 24]
    with pytest.raises(errors.MessageConflict):
        store.messages.post("p", "q", _drafts(2), None)
    assert [m.id for m in store.messages.list("p", "q", limit=10)] == [taken, "f" * 24]


def test_two_drivers_never_claim_the_same_message(uri: str, clock: FakeClock) -> None:
    # Two drivers, two connection pools: stand-ins for two server processes.
    drivers = [DataDriver(uri, clock=clock) for _ in range(2)]
    posted: list[str] = []
    claimed: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        driver = drivers[index % 2]
        for _ in range(10):
            ids = driver.messages.post("p", "q", _drafts(3), f"client-{index}")
            _, messages = driver.claims.create("p", "q", ttl=600, grace=60, limit=2)
            with lock:
                posted.extend(ids)
                claimed.extend(m.id for m in messages)

    try:
        _run_threads(8, work)
        assert len(set(posted)) == len(posted) == 240
        assert len(set(claimed)) == len(claimed)
        remaining = drivers[0].messages.list("p", "q", limit=1000, echo=True)
        assert sorted(claimed + [m.id for m in remaining]) == sorted(posted)
    finally:
        for driver in drivers:
            driver.close()


def test_gc_deletes_in_batches_and_drops_dead_claims(
    store: DataDriver, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zaqar.storage.sql import driver as sql_driver

    monkeypatch.setattr(sql_driver, "GC_BATCH", 4)
    store.messages.post("p", "q", [MessageDraft(body=i, ttl=10) for i in range(10)], None)
    (kept,) = store.messages.post("p", "q", [MessageDraft(body="kept", ttl=100)], None)
    cid, _ = store.claims.create("p", "q", ttl=20, grace=0, limit=20)
    clock.advance(21)
    assert store.gc() == 10
    assert [m.id for m in store.messages.list("p", "q")] == [kept]
    count = sa.select(sa.func.count()).select_from(tables.claims)
    assert store._db.read(lambda conn: conn.execute(count).scalar_one()) == 0
    assert store.messages.get("p", "q", kept).claim_id == cid  # still deletes it


def test_gc_drops_expired_subscriptions(store: DataDriver, clock: FakeClock) -> None:
    store.subscriptions.create("p", "q", "http://short", 60, {})
    kept = store.subscriptions.create("p", "q", "http://long", 120, {})
    clock.advance(61)
    assert store.gc() == 0  # still the count of messages only
    rows = sa.select(tables.subscriptions.c.id)
    assert store._db.read(lambda conn: list(conn.execute(rows).scalars())) == [kept]


def test_subscribers_of_any_length_are_unique(store: DataDriver) -> None:
    # The unique key is a hash of the subscriber, so no index length limit applies.
    long = "http://example.com/" + "\U0001f422" * 5000
    sid = store.subscriptions.create("p" * 256, "q" * 64, long, 60, {})
    assert store.subscriptions.get("p" * 256, "q" * 64, sid).subscriber == long
    with pytest.raises(errors.SubscriptionAlreadyExists):
        store.subscriptions.create("p" * 256, "q" * 64, long, 60, {})
    assert store.subscriptions.create("p" * 256, "q" * 64, long + "x", 60, {}) != sid


# -- MySQL / MariaDB -----------------------------------------------------------------


@pytest.fixture
def mysql_uri() -> Iterator[str]:
    base = os.environ.get(MYSQL_ENV)
    if not base:
        pytest.skip(f"{MYSQL_ENV} is not set")
    pytest.importorskip("pymysql")
    name = f"zaqar_test_{uuid.uuid4().hex}"
    engine = sa.create_engine(base, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
    try:
        yield str(sa.make_url(base).set(database=name).render_as_string(hide_password=False))
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE `{name}`"))
        engine.dispose()


def test_mysql_smoke(mysql_uri: str, clock: FakeClock) -> None:
    drivers = [DataDriver(mysql_uri, clock=clock) for _ in range(2)]
    try:
        store = drivers[0]
        assert _versions(store) == ALL_VERSIONS
        assert store.queues.create("p", "Q", {}) is True
        assert store.queues.create("p", "q", {}) is True  # names are case-sensitive
        assert store.queues.create("p", "q", {}) is False
        store.messages.post("p", "q", _drafts(40), None)
        claimed: list[str] = []
        lock = threading.Lock()

        def claimer(index: int) -> None:
            while True:
                _, messages = drivers[index % 2].claims.create("p", "q", ttl=60, grace=0, limit=3)
                if not messages:
                    return
                with lock:
                    claimed.extend(m.id for m in messages)

        _run_threads(4, claimer)
        assert len(claimed) == len(set(claimed)) == 40
        (mid,) = store.messages.post("p", "d", [MessageDraft(body="x", ttl=500)], None)
        dead_letter = DeadLetter(queue="dlq", max_claim_count=1)
        assert len(store.claims.create("p", "d", ttl=10, grace=0, limit=5, dead_letter=dead_letter)[1]) == 1
        clock.advance(11)
        assert store.claims.create("p", "d", ttl=10, grace=0, limit=5, dead_letter=dead_letter) == (None, [])
        assert store.messages.get("p", "dlq", mid).claim_count == 1
        # Subscribers compare exactly (no case folding, no PAD SPACE), whatever their length.
        long = "http://example.com/" + "\U0001f422" * 5000
        subscribers = [long, long.upper(), long + " "]
        subscribed = [store.subscriptions.create("p", "q", uri, 60, {}) for uri in subscribers]
        with pytest.raises(errors.SubscriptionAlreadyExists) as taken:
            drivers[1].subscriptions.create("p", "q", long, 60, {})
        assert taken.value.sid == subscribed[0]
        assert [sub.subscriber for sub in store.subscriptions.live("p", "q")] == subscribers
    finally:
        for driver in drivers:
            driver.close()
