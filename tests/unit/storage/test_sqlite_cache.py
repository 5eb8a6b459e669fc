"""The SQLite store's read cache across processes (``zaqar.storage.sqlite.generations``).

"Another process" is a second driver on the same database file (its own
mapping of the shared counters, as a second process has) and, once, a real
subprocess. To tell a value served from memory from one read from the file,
some tests change the file behind the drivers' backs (a plain sqlite3 write
that increments nothing): a cached driver keeps answering the old value
until something invalidates it or the entry ages out.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock
from zaqar import storage
from zaqar.api import Api, Context, Request
from zaqar.notification import Notifier
from zaqar.storage import errors
from zaqar.storage.base import DataDriver
from zaqar.storage.projects import project_key
from zaqar.storage.sqlite import generations
from zaqar.storage.sqlite.driver import DataDriver as SqliteDriver
from zaqar.storage.sqlite.generations import GenerationCache, Generations

P, Q = "cache-project", "cache-queue"


def _metadata(driver: DataDriver) -> dict[str, Any] | None:
    try:
        return driver.queues.get_metadata(P, Q)
    except errors.QueueDoesNotExist:
        return None


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "zaqar.sqlite"


@pytest.fixture
def pair(path: Path, clock: FakeClock) -> Iterator[tuple[DataDriver, DataDriver]]:
    a = storage.load_data_driver("sqlite", f"sqlite:///{path}", clock=clock)
    b = storage.load_data_driver("sqlite", f"sqlite:///{path}", clock=clock)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _write_behind(path: Path, metadata: dict[str, Any]) -> None:
    """Change the queue's metadata in the file the way no zaqar process would: nothing is incremented."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE queues SET metadata = ? WHERE project = ? AND name = ?",
                     (json.dumps(metadata), project_key(P), Q))


def test_a_metadata_change_through_another_driver_is_seen_at_once(pair, path):
    a, b = pair
    a.queues.create(P, Q, {"v": 1})
    assert _metadata(a) == {"v": 1}
    _write_behind(path, {"v": "behind"})
    assert _metadata(a) == {"v": 1}  # served from memory: the file was not read again
    b.queues.set_metadata(P, Q, {"v": 2})
    assert _metadata(a) == {"v": 2}
    b.queues.update_metadata(P, Q, lambda current: {**current, "w": 3})
    assert _metadata(a) == {"v": 2, "w": 3}
    b.queues.delete(P, Q)
    assert _metadata(a) is None


def test_a_subscription_change_through_another_driver_is_seen_at_once(pair):
    a, b = pair
    assert a.subscriptions.live(P, Q) == []  # cached: nobody subscribes
    sid = b.subscriptions.create(P, Q, "http://127.0.0.1:1/hook", 3600, {})
    assert [s.id for s in a.subscriptions.live(P, Q)] == [sid]
    b.subscriptions.confirm(P, Q, sid, True)
    assert [s.confirmed for s in a.subscriptions.live(P, Q)] == [True]
    b.subscriptions.update(P, Q, sid, subscriber="http://127.0.0.1:2/hook")
    assert [s.subscriber for s in a.subscriptions.live(P, Q)] == ["http://127.0.0.1:2/hook"]
    b.subscriptions.delete(P, Q, sid)
    assert a.subscriptions.live(P, Q) == []
    b.subscriptions.create(P, Q, "http://127.0.0.1:3/hook", 3600, {})
    assert len(a.subscriptions.live(P, Q)) == 1
    b.subscriptions.delete_all(P, Q)
    assert a.subscriptions.live(P, Q) == []


def test_a_write_behind_zaqars_back_is_seen_once_the_entry_ages_out(path, clock):
    ages = FakeClock(0.0)
    driver = SqliteDriver(f"sqlite:///{path}", clock=clock, cache_clock=ages)
    try:
        driver.queues.create(P, Q, {"v": 1})
        assert _metadata(driver) == {"v": 1}
        _write_behind(path, {"v": "behind"})
        ages.advance(generations.MAX_AGE - 0.1)
        assert _metadata(driver) == {"v": 1}
        ages.advance(0.2)
        assert _metadata(driver) == {"v": "behind"}
    finally:
        driver.close()


def test_a_driver_opening_the_database_through_a_symlink_shares_the_counters(path, clock, tmp_path):
    """SQLite follows the link to one -wal and -shm; the counters must follow it too."""
    real = storage.load_data_driver("sqlite", f"sqlite:///{path}", clock=clock)
    link = tmp_path / "elsewhere" / "link.sqlite"
    link.parent.mkdir()
    link.symlink_to(path)
    linked = storage.load_data_driver("sqlite", f"sqlite:///{link}", clock=clock)
    try:
        real.queues.create(P, Q, {"v": 1})
        assert _metadata(linked) == {"v": 1}  # now cached by the linked driver
        real.queues.set_metadata(P, Q, {"v": 2})
        assert _metadata(linked) == {"v": 2}
        assert not (link.parent / "link.sqlite-gen").exists()
    finally:
        linked.close()
        real.close()


def test_eviction_under_concurrent_loads_never_fails_a_read(path):
    """Past the cap every load evicts the oldest entry while other threads insert theirs."""
    cache = GenerationCache(Generations(f"{path}-gen"), max_entries=100)
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            for i in range(20_000):
                key = f"{number}-{i}"  # every read a miss: a load, and an eviction
                assert cache.get(key, lambda key=key: key) == key
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race needs a switch mid-evict
    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
        cache.close()
    assert failures == []


def test_a_read_that_races_a_write_is_not_kept(path):
    cache = GenerationCache(Generations(f"{path}-gen"))
    try:
        def load_then_lose_the_race() -> str:
            cache.invalidate("k")  # another process commits and increments while this read is in flight
            return "old"

        assert cache.get("k", load_then_lose_the_race) == "old"
        assert cache.get("k", lambda: "new") == "new"  # the raced value was not served again
        assert cache.get("k", lambda: "never read") == "new"  # and now it is cached
    finally:
        cache.close()


def test_cached_subscriptions_still_expire_and_age_by_the_driver_clock(pair, clock):
    a, _ = pair
    a.subscriptions.create(P, Q, "http://127.0.0.1:1/hook", 60, {})
    clock.advance(30)
    assert [s.age for s in a.subscriptions.live(P, Q)] == [30]
    clock.advance(31)
    assert a.subscriptions.live(P, Q) == []


def test_a_subscription_made_elsewhere_makes_a_local_post_notify(pair):
    a, b = pair
    pushed: list[dict[str, Any]] = []
    notifier = Notifier(a)
    notifier.register_local("local://", lambda connection, document, headers: pushed.append(document) is None)
    notifier.start()
    api = Api(Context(store=a, notifier=notifier))
    client_id = str(uuid.uuid4())

    def post(body: str) -> None:
        reply = api.handle(Request("message_post", project_id=P, client_id=client_id,
                                   params={"queue_name": Q, "messages": [{"body": body, "ttl": 300}]}))
        assert reply.status == 201

    try:
        post("nobody listens")  # A now holds "no subscriptions" for the queue
        assert notifier.idle() and pushed == []
        b.subscriptions.create(P, Q, "local://conn-1", 3600, {})
        post("hello")  # the first post after the subscription: no waiting for anything to propagate
        deadline = time.monotonic() + 10
        while not pushed and time.monotonic() < deadline:
            time.sleep(0.005)
        assert [doc["body"] for doc in pushed] == ["hello"]
    finally:
        notifier.stop()


def test_a_write_in_another_process_is_seen(path):
    driver = storage.load_data_driver("sqlite", f"sqlite:///{path}")
    try:
        driver.queues.create(P, Q, {"v": 1})
        assert _metadata(driver) == {"v": 1} and driver.subscriptions.live(P, Q) == []
        code = (
            "import sys\n"
            "from zaqar import storage\n"
            "d = storage.load_data_driver('sqlite', sys.argv[1])\n"
            f"d.queues.set_metadata({P!r}, {Q!r}, {{'from': 'subprocess'}})\n"
            f"d.subscriptions.create({P!r}, {Q!r}, 'http://127.0.0.1:1/hook', 3600, {{}})\n"
            "d.close()\n"
        )
        subprocess.run([sys.executable, "-c", code, f"sqlite:///{path}"], check=True, timeout=60)
        assert _metadata(driver) == {"from": "subprocess"}
        assert len(driver.subscriptions.live(P, Q)) == 1
    finally:
        driver.close()

