"""Redis-specific behaviour of the Redis store; shared semantics live in tests/contract.

URI parsing and the dead-server tests need no server. The rest runs against
the server named by ZAQAR_TEST_REDIS_URL (skipped without it, except in CI).
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from tests import backends
from tests.conftest import FakeClock
from zaqar.storage import errors
from zaqar.storage.base import Claim, DeadLetter, Message, MessageDraft, MessageStamp, QueueStats
from zaqar.storage.redis import DataDriver
from zaqar.storage.redis import claims as redis_claims
from zaqar.storage.redis import messages as redis_messages
from zaqar.storage.redis.driver import DEFAULT_PREFIX, parse_uri
from zaqar.storage.sqlite import DataDriver as SqliteDriver

DEAD_URI = "redis://127.0.0.1:1/0?socket_connect_timeout=2"


# -- URI parsing -------------------------------------------------------------------


def test_parse_uri_defaults() -> None:
    settings = parse_uri("redis://127.0.0.1:6379")
    assert settings.prefix == DEFAULT_PREFIX == "zaqar:"
    conn = settings.connection
    assert (conn["host"], conn["port"], conn.get("db", 0)) == ("127.0.0.1", 6379, 0)
    assert (conn["socket_timeout"], conn["socket_connect_timeout"]) == (10.0, 5.0)
    assert conn["decode_responses"] is True
    assert conn["retry"].get_retries() == 0


def test_parse_uri_prefix_db_and_timeouts() -> None:
    prefix = "zaqar-test-ab12:"
    settings = parse_uri(
        f"redis://h:7000/3?prefix={quote(prefix)}&socket_timeout=2.5&socket_connect_timeout=1"
    )
    assert settings.prefix == prefix
    conn = settings.connection
    assert (conn["host"], conn["port"], conn["db"]) == ("h", 7000, 3)
    assert (conn["socket_timeout"], conn["socket_connect_timeout"]) == (2.5, 1.0)


def test_parse_uri_db_from_query_and_password() -> None:
    conn = parse_uri("redis://:s%40cret@h/?db=5").connection
    assert (conn["db"], conn["password"]) == (5, "s@cret")


def test_parse_uri_ignores_unknown_and_unsafe_options() -> None:
    conn = parse_uri("redis://h/0?future=1&retry_on_timeout=true&ssl_ca_certs=/x&protocol=3").connection
    for name in ("future", "retry_on_timeout", "ssl_ca_certs", "protocol"):
        assert name not in conn


def test_parse_uri_tls_options_only_for_rediss() -> None:
    conn = parse_uri("rediss://h:6380/0?ssl_cert_reqs=none&ssl_ca_certs=/etc/ca.pem").connection
    assert (conn["ssl_cert_reqs"], conn["ssl_ca_certs"]) == ("none", "/etc/ca.pem")
    assert conn["connection_class"] is redis.SSLConnection


def test_parse_uri_unix_socket() -> None:
    settings = parse_uri("unix:///run/redis/redis.sock?db=2&prefix=z%3A")
    assert settings.prefix == "z:"
    conn = settings.connection
    assert (conn["path"], conn["db"]) == ("/run/redis/redis.sock", 2)
    assert conn["connection_class"] is redis.UnixDomainSocketConnection


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:////tmp/x",
        "redis+sentinel://h:26379/mymaster",
        "redis://h/notanumber",
        "redis://h/0?prefix=",
        "redis://h/0?socket_timeout=soon",
        "redis://h/0?max_connections=-1",
    ],
)
def test_bad_uris_raise_backend_unavailable(uri: str) -> None:
    with pytest.raises(errors.BackendUnavailable):
        DataDriver(uri)


def test_bad_uri_error_does_not_leak_the_password() -> None:
    with pytest.raises(errors.BackendUnavailable) as raised:
        DataDriver("redis://:hunter2@h/nope")
    assert "hunter2" not in str(raised.value)


# -- a server that is not there ------------------------------------------------------


def test_dead_server_is_not_alive_and_every_call_is_unavailable(clock: FakeClock) -> None:
    store = DataDriver(DEAD_URI, clock=clock)  # building it must not need the server
    try:
        assert store.is_alive() is False
        calls = [
            lambda: store.queues.create("p", "q", {}),
            lambda: store.queues.list("p"),
            lambda: store.messages.post("p", "q", [MessageDraft(body=1, ttl=60)], None),
            lambda: store.messages.get_many("p", "q", ["x"]),
            lambda: store.claims.create("p", "q", ttl=60, grace=60, limit=1),
            store.gc,
        ]
        for call in calls:
            with pytest.raises(errors.BackendUnavailable):
                call()
    finally:
        store.close()


# -- against a real server -----------------------------------------------------------


@pytest.fixture
def uri() -> Iterator[str]:
    with backends.redis_uri() as value:
        yield value


@pytest.fixture
def store(uri: str, clock: FakeClock) -> Iterator[DataDriver]:
    driver = DataDriver(uri, clock=clock)
    yield driver
    driver.close()


def _keys(pattern: str) -> list[str]:
    client = redis.Redis.from_url(os.environ[backends.REDIS_ENV], decode_responses=True)
    try:
        return sorted(client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


def _prefix(store: DataDriver) -> str:
    return store._backend.prefix


def test_every_key_is_under_the_prefix(store: DataDriver, uri: str) -> None:
    store.queues.create("p", "meta", {"a": 1})
    store.messages.post("p", "q", [MessageDraft(body=i, ttl=60) for i in range(3)], None)
    store.claims.create("p", "q", ttl=60, grace=60, limit=1)
    ours = _keys(_prefix(store) + "*")
    assert len(ours) >= 6
    other = DataDriver(uri.replace(quote(_prefix(store)), quote("zaqar-test-other-" + uuid.uuid4().hex)))
    try:
        assert other.queues.exists("p", "meta") is False
        assert other.messages.list("p", "q") == []
    finally:
        other.close()


def test_closed_driver_is_unavailable_and_not_alive(store: DataDriver) -> None:
    assert store.is_alive() is True
    store.close()
    assert store.is_alive() is False
    with pytest.raises(errors.BackendUnavailable):
        store.queues.count("p")


def test_scripts_are_reloaded_after_the_server_forgot_them(store: DataDriver) -> None:
    store.messages.post("p", "q", [MessageDraft(body=1, ttl=60)], None)
    store._backend.client.script_flush()  # what a server restart does
    assert [m.body for m in store.messages.pop("p", "q", 5)] == [1]


@pytest.mark.parametrize("name", ["a:b", "{tag}", "*", "a b/%3A", "ż"])
def test_awkward_names_stay_apart(store: DataDriver, name: str) -> None:
    store.queues.create(name, name, {"n": name})
    store.queues.create("a", "b", {"n": "plain"})
    assert store.queues.get_metadata(name, name) == {"n": name}
    assert [q.name for q in store.queues.list(name)] == [name]
    assert store.queues.get_metadata("a", "b") == {"n": "plain"}


def test_none_project_differs_from_empty_project(store: DataDriver) -> None:
    store.queues.create(None, "q", {"owner": None})
    store.queues.create("", "q", {"owner": ""})
    assert store.queues.get_metadata(None, "q") == {"owner": None}
    assert store.queues.get_metadata("", "q") == {"owner": ""}


def test_listing_past_the_scan_budget_resumes_where_it_stopped(store: DataDriver) -> None:
    drafts = [MessageDraft(body=i, ttl=600) for i in range(1500)]
    store.messages.post("p", "q", drafts, "me")
    (theirs,) = store.messages.post("p", "q", [MessageDraft(body="theirs", ttl=600)], "other")
    assert [m.id for m in store.messages.list("p", "q", client_id="me")] == [theirs]


def test_gc_keeps_a_lapsed_claim_releasable_then_forgets_it(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = store.messages.post("p", "q", [MessageDraft(body=1, ttl=1000)], None)
    cid, _ = store.claims.create("p", "q", ttl=100, grace=0, limit=1)
    clock.advance(101)
    assert store.gc() == 0
    store.claims.delete("p", "q", cid or "")
    assert store.messages.get("p", "q", mid).claim_id is None
    store.claims.create("p", "q", ttl=100, grace=0, limit=1)
    clock.advance(1000)
    assert store.gc() == 1
    record = store._backend.queue_key("p", "q")
    assert _keys(_prefix(store) + "*") == sorted([record, store._backend.index_key("p")])


def test_gc_with_a_glob_character_prefix(clock: FakeClock) -> None:
    base = backends._base(backends.REDIS_ENV)
    prefix = f"zaqar-test-{uuid.uuid4().hex}-[*?]:"
    store = DataDriver(f"{base}{'&' if '?' in base else '?'}prefix={quote(prefix)}", clock=clock)
    try:
        store.messages.post("p", "q", [MessageDraft(body=1, ttl=10)], None)
        clock.advance(11)
        assert store.gc() == 1
    finally:
        client = store._backend.client
        keys = [k for k in client.scan_iter(count=1000) if k.startswith(prefix)]
        if keys:
            client.delete(*keys)
        store.close()


# -- scan hints ----------------------------------------------------------------------


def test_shortened_claim_frees_its_messages_for_claims_pops_and_listing(
    store: DataDriver, clock: FakeClock
) -> None:
    posted = store.messages.post("p", "q", [MessageDraft(body=i, ttl=600) for i in range(3)], None)
    cid, _ = store.claims.create("p", "q", ttl=100, grace=0, limit=3)
    assert store.claims.create("p", "q", ttl=100, grace=0, limit=3) == (None, [])  # hints written
    assert store.messages.pop("p", "q", 3) == []
    store.claims.update("p", "q", cid or "", ttl=10, grace=0)
    clock.advance(11)
    assert [m.id for m in store.messages.list("p", "q")] == posted
    assert [m.id for m in store.claims.create("p", "q", ttl=5, grace=0, limit=1)[1]] == posted[:1]
    assert [m.id for m in store.messages.pop("p", "q", 5)] == posted[1:]


def test_release_frees_messages_behind_the_hints(store: DataDriver) -> None:
    posted = store.messages.post("p", "q", [MessageDraft(body=i, ttl=600) for i in range(4)], None)
    cid, _ = store.claims.create("p", "q", ttl=100, grace=0, limit=2)
    assert [m.id for m in store.messages.pop("p", "q", 5)] == posted[2:]
    assert store.claims.create("p", "q", ttl=100, grace=0, limit=2) == (None, [])
    store.claims.delete("p", "q", cid or "")
    assert [m.id for m in store.messages.pop("p", "q", 1)] == posted[:1]
    assert [m.id for m in store.claims.create("p", "q", ttl=100, grace=0, limit=2)[1]] == posted[1:2]


# -- same answers as the reference store -----------------------------------------------


class _Twins:
    """Runs each operation on the Redis store and on the SQLite reference, comparing answers.

    Ids and claim ids differ between the two (random parts), so Redis ids are
    translated to their SQLite twins, learnt from the posts and claims.
    """

    def __init__(self, ours: DataDriver, reference: SqliteDriver, rng: random.Random) -> None:
        self.ours, self.reference, self.rng = ours, reference, rng
        self.twin: dict[str, str] = {}
        self.claim_ids: list[str] = []

    def _norm(self, value: Any, twin: dict[str, str]) -> Any:
        """Plain data with every id swapped for its twin."""
        if isinstance(value, (list, tuple)):
            return [self._norm(item, twin) for item in value]
        if isinstance(value, (Message, Claim, MessageStamp, QueueStats)):
            return self._norm(dataclasses.asdict(value), twin)
        if isinstance(value, dict):
            return {key: self._norm(item, twin) for key, item in value.items()}
        return twin.get(value, value) if isinstance(value, str) else value

    def same(self, call: Callable[[DataDriver, Callable[[str], str]], Any]) -> Any:
        """Run ``call`` on both stores (the second gets translated ids); their answers must match."""
        results = []
        for store, translate in ((self.ours, lambda x: x), (self.reference, lambda x: self.twin.get(x, x))):
            try:
                results.append(("ok", call(store, translate)))
            except errors.StorageError as exc:
                results.append((type(exc).__name__, None))
        ours, reference = results
        if ours[0] == "ok" and isinstance(ours[1], list) and ours[1] and isinstance(ours[1][0], str):
            self.twin.update(zip(ours[1], reference[1], strict=True))  # fresh ids from a post
        if ours[0] == "ok" and isinstance(ours[1], tuple) and ours[1][0] is not None:
            self.twin[ours[1][0]] = reference[1][0]  # a fresh claim id
            self.claim_ids.append(ours[1][0])
        assert (ours[0], self._norm(ours[1], self.twin)) == (reference[0], self._norm(reference[1], {}))
        return ours[1]

    def pick(self, pool: list[str], bogus: str | None = None) -> str | None:
        options = [*pool, bogus] if pool else [bogus]
        return self.rng.choice(options)

    def step(self, clock: FakeClock) -> None:
        rng, ids, cids = self.rng, list(self.twin), self.claim_ids
        queue = rng.choice(["q", "q", "q", "dlq"])
        op = rng.randrange(12)
        if op < 3:
            drafts = [
                MessageDraft(body=rng.random(), ttl=rng.choice([30, 100, 300]), delay=rng.choice([0, 0, 20]))
                for _ in range(rng.randint(1, 4))
            ]
            client = rng.choice([None, "a", "b"])
            self.same(lambda s, t: s.messages.post("p", queue, drafts, client))
        elif op == 3:
            dead = rng.choice([None, DeadLetter("dlq", 2), DeadLetter("dlq", 1, ttl=50)])
            ttl, grace, limit = rng.choice([20, 100]), rng.choice([0, 30]), rng.randint(1, 5)
            self.same(
                lambda s, t: s.claims.create("p", "q", ttl=ttl, grace=grace, limit=limit, dead_letter=dead)
            )
        elif op == 4:
            cid, ttl = self.pick(cids, "0" * 32), rng.choice([5, 60])
            self.same(lambda s, t: s.claims.update("p", "q", t(cid), ttl=ttl, grace=10))
            self.same(lambda s, t: s.claims.get("p", "q", t(cid)))
        elif op == 5:
            cid = self.pick(cids, "bogus")
            self.same(lambda s, t: s.claims.delete("p", "q", t(cid)))
        elif op == 6:
            mid, cid = self.pick(ids, "x"), rng.choice([None, self.pick(cids, "bogus")])
            self.same(lambda s, t: s.messages.delete("p", queue, t(mid), None if cid is None else t(cid)))
        elif op == 7:
            some = rng.sample(ids, min(len(ids), 3))
            claims = rng.choice([None, rng.sample(cids, min(len(cids), 1))])
            self.same(
                lambda s, t: s.messages.delete_many(
                    "p", queue, [t(m) for m in some], claims and [t(c) for c in claims]
                )
            )
        elif op == 8:
            limit = rng.randint(1, 3)
            self.same(lambda s, t: s.messages.pop("p", queue, limit))
        elif op == 9:
            marker = rng.choice([None, self.pick(ids)])
            flags = {
                "echo": rng.random() < 0.5,
                "client_id": rng.choice([None, "a"]),
                "include_claimed": rng.random() < 0.5,
                "include_delayed": rng.random() < 0.5,
                "limit": rng.randint(1, 6),
            }
            self.same(lambda s, t: s.messages.list("p", queue, marker=marker and t(marker), **flags))
        elif op == 10:
            self.same(
                lambda s, t: (
                    s.queues.stats("p", queue),
                    s.messages.get_many("p", queue, [t(m) for m in ids]),
                )
            )
            self.same(lambda s, t: s.gc())
        else:
            clock.advance(rng.choice([1, 5, 15, 40]))


@pytest.mark.parametrize("seed", range(6))
def test_random_operations_match_the_sqlite_store(
    store: DataDriver, clock: FakeClock, tmp_path: Path, seed: int
) -> None:
    reference = SqliteDriver(f"sqlite:///{tmp_path / 'ref.sqlite'}", clock=clock)
    try:
        twins = _Twins(store, reference, random.Random(seed))
        for _ in range(400):
            twins.step(clock)
    finally:
        reference.close()


def test_two_drivers_never_double_claim_or_double_pop(uri: str, clock: FakeClock) -> None:
    # Two drivers (two connection pools) stand in for two server processes.
    drivers = [DataDriver(uri, clock=clock) for _ in range(2)]
    posted: list[str] = []
    taken: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        driver = drivers[index % 2]
        for _ in range(20):
            ids = driver.messages.post("p", "q", [MessageDraft(body=i, ttl=600) for i in range(3)], None)
            _, claimed = driver.claims.create("p", "q", ttl=600, grace=60, limit=2)
            popped = driver.messages.pop("p", "q", 1)
            with lock:
                posted.extend(ids)
                taken.extend(m.id for m in [*claimed, *popped])

    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(posted)) == len(posted) == 480
        assert len(set(taken)) == len(taken)
        left = drivers[0].messages.list("p", "q", limit=1000, echo=True)
        assert sorted(taken + [m.id for m in left]) == sorted(posted)
    finally:
        for driver in drivers:
            driver.close()


def test_dead_letter_id_collision_gets_a_fresh_id(store: DataDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (redis_messages, redis_claims):
        monkeypatch.setattr(module, "id_tail", lambda: "deadbeef")
    (already,) = store.messages.post("p", "dlq", [MessageDraft(body="already", ttl=600)], None)
    (mid,) = store.messages.post("p", "q", [MessageDraft(body="moved", ttl=600)], None)
    assert already == mid  # same seq, same tail: the one case where ids can meet
    dead_letter = DeadLetter("dlq", max_claim_count=1)
    cid, _ = store.claims.create("p", "q", ttl=60, grace=0, limit=1, dead_letter=dead_letter)
    store.claims.delete("p", "q", cid or "")
    assert store.claims.create("p", "q", ttl=60, grace=0, limit=1, dead_letter=dead_letter) == (None, [])
    listed = store.messages.list("p", "dlq")
    assert [m.body for m in listed] == ["already", "moved"]
    assert listed[0].id == already and listed[1].id != already
