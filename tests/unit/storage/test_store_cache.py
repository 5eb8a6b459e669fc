"""The read cache of the remote stores, across processes, on real Redis and PostgreSQL servers.

"Another process" is a second driver instance on the same store (and, once,
a real subprocess). To tell a value served from memory from one read from
the store, some tests change the store behind the drivers' backs (a plain
client write that publishes nothing): a cached driver keeps answering the
old value until something invalidates it. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest
import redis

from tests import backends
from tests.conftest import FakeClock
from zaqar import storage
from zaqar.api import Api, Context, Request
from zaqar.notification import Notifier
from zaqar.storage import errors
from zaqar.storage.base import DataDriver
from zaqar.storage.cache import Cache, Channel
from zaqar.storage.projects import project_key

P, Q = "cache-project", "cache-queue"
DEADLINE = 10.0


def eventually(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.005)


@dataclasses.dataclass
class Remote:
    """One store server: drivers on it, and what the tests do to it behind the drivers' backs."""

    name: str  # DATA_DRIVERS key
    uri: Callable[[str], str]  # the store URI for a driver whose connections carry this label
    write_behind: Callable[[str | None, str, dict[str, Any]], None]  # metadata change, nothing published
    kill_listener: Callable[[str], int]  # drop the listener connection of the labelled driver
    channel: Callable[[], Channel]  # a fresh connection to the store's invalidation channel
    announce: Callable[[str], None]  # publish a key on that channel, as a remote write does


@contextmanager
def _redis_server() -> Iterator[Remote]:
    from zaqar.storage.redis.driver import parse_uri
    from zaqar.storage.redis.invalidation import RedisChannel, channel_name

    with backends.redis_uri() as base:
        settings = parse_uri(base)
        client = redis.Redis(**settings.connection)
        channel = channel_name(settings.prefix)

        def write_behind(project: str | None, queue: str, metadata: dict[str, Any]) -> None:
            (key,) = client.scan_iter(match=f"{settings.prefix}*:q:{quote(queue, safe='')}")
            client.hset(key, "meta", json.dumps(metadata))

        def kill_listener(label: str) -> int:
            ids = [c["id"] for c in client.client_list(_type="pubsub") if c["name"] == label]
            return sum(int(client.client_kill_filter(_id=cid)) for cid in ids)

        try:
            yield Remote("redis", lambda label: f"{base}&client_name={label}", write_behind, kill_listener,
                         lambda: RedisChannel(redis.Redis(**settings.connection), channel),
                         lambda key: client.publish(channel, key) and None)
        finally:
            client.close()


@contextmanager
def _postgresql_server() -> Iterator[Remote]:
    import sqlalchemy as sa

    from zaqar.storage.sql.database import create_engine
    from zaqar.storage.sql.invalidation import PostgresChannel

    with backends.sql_uri() as base:
        engine = create_engine(base)

        def write_behind(project: str | None, queue: str, metadata: dict[str, Any]) -> None:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE queues SET metadata = :m WHERE project = :p AND name = :n"),
                             {"m": json.dumps(metadata), "p": project_key(project), "n": queue})

        kill = sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n")
        notify = sa.text("SELECT pg_notify('zaqar_cache_' || md5(current_schema()), :k)")

        def kill_listener(label: str) -> int:
            with engine.begin() as conn:
                return len(conn.execute(kill, {"n": f"{label} cache listener"}).all())

        def announce(key: str) -> None:
            with engine.begin() as conn:
                conn.execute(notify, {"k": key})

        try:
            yield Remote("sqlalchemy", lambda label: f"{base}&application_name={label}", write_behind,
                         kill_listener, lambda: PostgresChannel(engine), announce)
        finally:
            engine.dispose()


@pytest.fixture(params=["redis", "postgresql"])
def remote(request: pytest.FixtureRequest) -> Iterator[Remote]:
    server = _redis_server if request.param == "redis" else _postgresql_server
    with server() as found:
        yield found


@dataclasses.dataclass
class Pair:
    a: DataDriver
    b: DataDriver
    label_a: str


@pytest.fixture
def pair(remote: Remote, clock: FakeClock) -> Iterator[Pair]:
    """Two drivers on one store, as two server processes have, both with their cache in use."""
    label = f"zaqar-test-{uuid.uuid4().hex[:12]}"
    a = storage.load_data_driver(remote.name, remote.uri(f"{label}-a"), clock=clock)
    b = storage.load_data_driver(remote.name, remote.uri(f"{label}-b"), clock=clock)
    try:
        for driver in (a, b):
            assert driver.cache.wait_active(DEADLINE)  # type: ignore[attr-defined]
        yield Pair(a, b, f"{label}-a")
    finally:
        a.close()
        b.close()


def _metadata(driver: DataDriver) -> dict[str, Any] | None:
    try:
        return driver.queues.get_metadata(P, Q)
    except errors.QueueDoesNotExist:
        return None


def test_a_metadata_change_through_another_driver_is_seen_once_its_invalidation_arrives(remote, pair):
    pair.a.queues.create(P, Q, {"v": 1})
    assert _metadata(pair.a) == {"v": 1}
    remote.write_behind(P, Q, {"v": "behind"})
    assert _metadata(pair.a) == {"v": 1}  # served from memory: the store was not asked again
    pair.b.queues.set_metadata(P, Q, {"v": 2})
    eventually(lambda: _metadata(pair.a) == {"v": 2}, "A sees B's set_metadata")
    pair.b.queues.update_metadata(P, Q, lambda current: {**current, "w": 3})
    eventually(lambda: _metadata(pair.a) == {"v": 2, "w": 3}, "A sees B's update_metadata")
    pair.b.queues.delete(P, Q)
    eventually(lambda: _metadata(pair.a) is None, "A sees B's delete")


def test_a_write_through_this_driver_is_read_back_at_once(pair):
    pair.a.queues.create(P, Q, {"n": 0})
    for n in range(1, 30):
        assert _metadata(pair.a) == {"n": n - 1}
        pair.a.queues.set_metadata(P, Q, {"n": n})
        assert _metadata(pair.a) == {"n": n}  # no waiting for the channel's echo
    assert pair.a.subscriptions.live(P, Q) == []
    sid = pair.a.subscriptions.create(P, Q, "http://127.0.0.1:1/hook", 3600, {})
    assert [s.id for s in pair.a.subscriptions.live(P, Q)] == [sid]
    pair.a.subscriptions.confirm(P, Q, sid, True)
    assert [s.confirmed for s in pair.a.subscriptions.live(P, Q)] == [True]
    pair.a.subscriptions.delete(P, Q, sid)
    assert pair.a.subscriptions.live(P, Q) == []


def test_a_subscription_made_elsewhere_makes_a_local_post_notify(pair):
    pushed: list[dict[str, Any]] = []
    notifier = Notifier(pair.a)
    notifier.register_local("local://", lambda connection, document, headers: pushed.append(document) is None)
    notifier.start()
    api = Api(Context(store=pair.a, notifier=notifier))
    client_id = str(uuid.uuid4())

    def post(body: str) -> None:
        reply = api.handle(Request("message_post", project_id=P, client_id=client_id,
                                   params={"queue_name": Q, "messages": [{"body": body, "ttl": 300}]}))
        assert reply.status == 201

    try:
        post("nobody listens")  # A now holds "no subscriptions" for the queue
        assert notifier.idle() and pushed == []
        pair.b.subscriptions.create(P, Q, "local://conn-1", 3600, {})

        def notified() -> bool:
            post("hello")
            return any(doc["body"] == "hello" for doc in pushed)

        eventually(notified, "a post through A notifies the subscriber B created")
        assert all(doc["body"] == "hello" for doc in pushed)
    finally:
        notifier.stop()


def test_losing_the_invalidation_channel_flushes_the_cache_until_it_is_back(remote, pair):
    pair.a.queues.create(P, Q, {"v": 1})
    assert _metadata(pair.a) == {"v": 1}
    remote.write_behind(P, Q, {"v": 2})
    assert _metadata(pair.a) == {"v": 1}
    assert remote.kill_listener(pair.label_a) == 1
    # What was written while nobody listened can only be learned from the store itself.
    eventually(lambda: _metadata(pair.a) == {"v": 2}, "A drops what it kept once its channel is gone")
    eventually(lambda: pair.a.cache.active, "A's listener subscribes again")
    assert _metadata(pair.a) == {"v": 2}
    pair.b.queues.set_metadata(P, Q, {"v": 3})
    eventually(lambda: _metadata(pair.a) == {"v": 3}, "invalidations arrive again after the reconnect")


def test_cached_subscriptions_still_expire_and_age_by_the_driver_clock(pair, clock):
    sid = pair.b.subscriptions.create(P, Q, "http://127.0.0.1:1/hook", 60, {})
    eventually(lambda: [s.id for s in pair.a.subscriptions.live(P, Q)] == [sid], "A sees B's subscription")
    clock.advance(30)
    assert [s.age for s in pair.a.subscriptions.live(P, Q)] == [30]
    clock.advance(31)
    assert pair.a.subscriptions.live(P, Q) == []  # expired: no write, no invalidation needed


def test_a_read_that_races_a_remote_write_is_not_kept(remote):
    cache = Cache(remote.channel, name="race")
    try:
        assert cache.wait_active(DEADLINE)
        stored = {"k": "old"}

        def read_then_lose_the_race() -> str:
            value = stored["k"]
            stored["k"] = "new"  # another process writes, and announces it, while this read is in flight
            before = cache.invalidations
            remote.announce("k")
            eventually(lambda: cache.invalidations > before, "the invalidation reaches the listener")
            return value

        assert cache.get("k", read_then_lose_the_race) == "old"
        assert cache.get("k", lambda: stored["k"]) == "new"
        assert cache.get("k", lambda: "not asked") == "new"  # and that one is kept
    finally:
        cache.close()


def test_a_write_in_another_process_is_seen(remote, pair):
    pair.a.queues.create(P, Q, {"v": 1})
    assert _metadata(pair.a) == {"v": 1} and pair.a.subscriptions.live(P, Q) == []
    code = (
        "import sys\n"
        "from zaqar import storage\n"
        "d = storage.load_data_driver(sys.argv[1], sys.argv[2])\n"
        f"d.queues.set_metadata({P!r}, {Q!r}, {{'from': 'subprocess'}})\n"
        f"d.subscriptions.create({P!r}, {Q!r}, 'http://127.0.0.1:1/hook', 3600, {{}})\n"
        "d.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, remote.name, remote.uri("zaqar-test-subprocess")],
                   check=True, timeout=60)
    eventually(lambda: _metadata(pair.a) == {"from": "subprocess"}, "A sees the other process's metadata")
    # the subprocess wrote with the real clock; the test clock is years earlier, so it is live
    eventually(lambda: len(pair.a.subscriptions.live(P, Q)) == 1, "A sees the other process's subscription")


def test_a_forked_worker_listens_for_itself(clock):
    """uwsgi and gunicorn may fork workers after the store was opened and used (preloading)."""
    import os
    import warnings

    with _redis_server() as remote:
        a = storage.load_data_driver("redis", remote.uri("zaqar-test-parent"), clock=clock)
        b = storage.load_data_driver("redis", remote.uri("zaqar-test-other"), clock=clock)
        try:
            assert a.cache.wait_active(DEADLINE) and b.cache.wait_active(DEADLINE)  # type: ignore[attr-defined]
            a.queues.create(P, Q, {"v": 1})
            assert _metadata(a) == {"v": 1}
            ready, go = os.pipe()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork() of a threaded process
                pid = os.fork()
            if pid == 0:  # the worker: no listener thread was inherited, so it must start its own
                code = 1
                try:
                    os.close(ready)
                    fresh = not a.cache.active  # type: ignore[attr-defined]
                    assert a.cache.wait_active(DEADLINE) and _metadata(a) == {"v": 1}  # type: ignore[attr-defined]
                    os.write(go, b"x")
                    eventually(lambda: _metadata(a) == {"v": 2}, "the worker sees the other driver's write")
                    code = 0 if fresh else 2
                finally:
                    os._exit(code)
            os.close(go)
            assert os.read(ready, 1) == b"x", "the worker never got its cache going"
            os.close(ready)
            b.queues.set_metadata(P, Q, {"v": 2})
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        finally:
            a.close()
            b.close()
