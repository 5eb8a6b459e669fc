"""SQLite-specific behaviour of the embedded store; shared semantics live in tests/contract."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from zaqar.storage import errors
from zaqar.storage.base import MessageDraft
from zaqar.storage.sqlite import DataDriver
from zaqar.storage.sqlite import messages as sqlite_messages
from zaqar.storage.sqlite.common import Database
from zaqar.storage.sqlite.driver import consume_level, parse_uri


def _uri(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}{query}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dirs" / "zaqar.sqlite"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[DataDriver]:
    driver = DataDriver(_uri(db_path), clock=clock)
    yield driver
    driver.close()


def _drafts(count: int) -> list[MessageDraft]:
    return [MessageDraft(body=i, ttl=300) for i in range(count)]


# -- URI parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:////tmp/x/zaqar.sqlite", ("/tmp/x/zaqar.sqlite", "FULL")),
        ("sqlite:///tmp/x/zaqar.sqlite", ("/tmp/x/zaqar.sqlite", "FULL")),
        ("sqlite:////tmp/z.db?synchronous=normal", ("/tmp/z.db", "NORMAL")),
        ("sqlite:////tmp/z.db?synchronous=FULL", ("/tmp/z.db", "FULL")),
        ("sqlite:////tmp/z.db?future=1&synchronous=normal", ("/tmp/z.db", "NORMAL")),
        ("sqlite:////tmp/z.db?future=1", ("/tmp/z.db", "FULL")),
    ],
)
def test_parse_uri(uri: str, expected: tuple[str, str]) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "redis://localhost",
        "sqlite://",
        "sqlite:///",
        "sqlite://relative/zaqar.sqlite",
        "sqlite:////tmp/z.db?synchronous=off",
    ],
)
def test_parse_uri_rejects(uri: str) -> None:
    with pytest.raises(errors.BackendUnavailable):
        parse_uri(uri)


# -- the file ------------------------------------------------------------------------


def test_creates_parent_directories_and_uses_wal(store: DataDriver, db_path: Path) -> None:
    assert db_path.is_file()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


@pytest.mark.parametrize(("query", "level"), [("", 2), ("?synchronous=normal", 1)])
def test_synchronous_level_is_applied(db_path: Path, clock: FakeClock, query: str, level: int) -> None:
    driver = DataDriver(_uri(db_path, query), clock=clock)
    try:
        assert driver._db.connection().execute("PRAGMA synchronous").fetchone()[0] == level
    finally:
        driver.close()


def test_reopening_the_file_keeps_data_and_sequence(db_path: Path, clock: FakeClock) -> None:
    first = DataDriver(_uri(db_path), clock=clock)
    first.queues.create("p", "meta", {"a": 1})
    old_ids = first.messages.post("p", "q", _drafts(3), None)
    first.messages.delete_many("p", "q", old_ids)
    first.close()

    second = DataDriver(_uri(db_path), clock=clock)
    try:
        assert second.queues.get_metadata("p", "meta") == {"a": 1}
        (new_id,) = second.messages.post("p", "q", _drafts(1), None)
        assert new_id > old_ids[-1]  # the counter survived, so old markers stay before new messages
        assert [m.id for m in second.messages.list("p", "q", marker=old_ids[0])] == [new_id]
    finally:
        second.close()


def test_unopenable_paths_raise_backend_unavailable(tmp_path: Path, clock: FakeClock) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database file" * 100)
    for path in (blocker / "zaqar.sqlite", tmp_path, garbage):
        with pytest.raises(errors.BackendUnavailable):
            DataDriver(_uri(path), clock=clock)


def test_closed_driver_is_unavailable_and_not_alive(store: DataDriver) -> None:
    assert store.is_alive()
    store.close()
    assert not store.is_alive()
    with pytest.raises(errors.BackendUnavailable):
        store.queues.count("p")


def test_none_project_differs_from_empty_project(store: DataDriver) -> None:
    store.queues.create(None, "q", {"owner": None})
    store.queues.create("", "q", {"owner": ""})
    assert store.queues.get_metadata(None, "q") == {"owner": None}
    assert store.queues.get_metadata("", "q") == {"owner": ""}


# -- threads -------------------------------------------------------------------------


def _run_threads(count: int, target: object) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_connection_of_a_finished_thread_is_closed(store: DataDriver) -> None:
    _run_threads(4, lambda _: store.queues.count("p"))
    store.queues.count("p")
    assert store._db.open_connections() == 1  # only this thread's connection is left


def test_close_closes_connections_of_live_threads(store: DataDriver) -> None:
    opened = threading.Barrier(4)
    closed = threading.Event()
    seen: list[sqlite3.Connection] = []

    def hold(_: int) -> None:
        store.queues.count("p")
        seen.append(store._db.connection())
        opened.wait()
        closed.wait()

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    opened.wait()
    store.close()
    closed.set()
    for thread in threads:
        thread.join()
    assert store._db.open_connections() == 0
    for conn in seen:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")


def test_concurrent_posts_and_claims_never_lose_or_double_claim(db_path: Path, clock: FakeClock) -> None:
    # Two drivers on one file stand in for two server processes.
    drivers = [DataDriver(_uri(db_path), clock=clock) for _ in range(2)]
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
        assert [
            m.id for m in drivers[0].messages.list("p", "q", limit=1000, echo=True, include_claimed=True)
        ] == (sorted(posted))
    finally:
        for driver in drivers:
            driver.close()


# -- ids taken by dead-lettered messages ----------------------------------------------


def test_a_post_whose_id_is_taken_stores_every_message_once_with_fresh_ids(
    store: DataDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    (taken,) = store.messages.post("p", "q", _drafts(1), None)
    # The batch's second id meets the stored one (as a dead-lettered message's id can).
    draws = itertools.chain(["a" * 24, taken, "c" * 24], (f"{n:024x}" for n in itertools.count(1)))
    monkeypatch.setattr(sqlite_messages, "new_message_id", lambda seq: next(draws))
    ids = store.messages.post("p", "q", [MessageDraft(body=b, ttl=300) for b in "xyz"], None)
    assert len(set(ids)) == 3 and taken not in ids
    listed = store.messages.list("p", "q", limit=10, echo=True)
    assert [(m.id, m.body) for m in listed] == [(taken, 0), *zip(ids, "xyz", strict=True)]


def test_a_post_that_finds_no_free_id_stores_nothing(
    store: DataDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    (taken,) = store.messages.post("p", "q", _drafts(1), None)
    monkeypatch.setattr(sqlite_messages, "new_message_id", lambda seq: taken)
    with pytest.raises(errors.MessageConflict):
        store.messages.post("p", "q", _drafts(2), None)
    assert [m.id for m in store.messages.list("p", "q", limit=10, echo=True)] == [taken]


@pytest.mark.parametrize("uri, level", [
    ("sqlite:////tmp/z.db", "NORMAL"),
    ("sqlite:////tmp/z.db?consume_synchronous=full", "FULL"),
    ("sqlite:////tmp/z.db?synchronous=full&consume_synchronous=NORMAL", "NORMAL"),
])
def test_consume_synchronous_is_read_from_the_uri(uri, level):
    assert consume_level(uri) == level


def test_an_unknown_consume_synchronous_level_is_refused():
    with pytest.raises(errors.BackendUnavailable):
        consume_level("sqlite:////tmp/z.db?consume_synchronous=off")


def test_posts_commit_at_full_and_claims_and_deletes_at_the_consume_level(tmp_path):
    db = Database(str(tmp_path / "levels.sqlite"), "FULL", "NORMAL")
    try:
        levels = []
        for consume in (False, True, True, False):
            with db.write(consume=consume) as conn:
                levels.append(conn.execute("PRAGMA synchronous").fetchone()[0])
        assert levels == [2, 1, 1, 2]  # SQLite: 2 = FULL, 1 = NORMAL
    finally:
        db.close()
