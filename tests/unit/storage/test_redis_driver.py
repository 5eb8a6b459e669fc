"""Redis-specific behaviour of the Redis store; shared semantics live in tests/contract.

URI parsing and the dead-server tests need no server. The rest runs against
the server named by ZAQAR_TEST_REDIS_URL (skipped without it, except in CI).
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
import redis.sentinel

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
        "rediss+sentinel://h:26379/mymaster",
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


def test_scripts_are_reloaded_on_a_pool_of_one_connection(uri: str, clock: FakeClock) -> None:
    """Reloading must not need a second pooled connection while the call holds the only one."""
    driver = DataDriver(uri + "&max_connections=1", clock=clock)
    try:
        driver._backend.client.script_flush()
        driver.messages.post("p", "q", [MessageDraft(body=1, ttl=60)], None)
        driver._backend.client.script_flush()
        assert [m.body for m in driver.messages.pop("p", "q", 5)] == [1]
    finally:
        driver.close()


@pytest.mark.parametrize("name", ["a:b", "{tag}", "*", "a b/%3A", "ż", "x~y.z-_", "%"])
def test_awkward_names_stay_apart(store: DataDriver, name: str) -> None:
    """Keys quote names; the listing script quotes them alike in Lua, or it would find no record."""
    store.queues.create(name, name, {"n": name})
    store.queues.create("a", "b", {"n": "plain"})
    assert store.queues.get_metadata(name, name) == {"n": name}
    assert [(q.name, q.metadata) for q in store.queues.list(name)] == [(name, {"n": name})]
    assert [q.name for q in store.queues.list(name, name=name[-1:])] == [name]
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
        if isinstance(value, QueueStats):  # ``exists`` is Redis's bonus (None: SQLite does not say)
            return self._norm(dataclasses.asdict(dataclasses.replace(value, exists=None)), twin)
        if isinstance(value, (Message, Claim, MessageStamp)):
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
        if ours[0] == "ok" and isinstance(ours[1], tuple) and isinstance(ours[1][0], str):
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
        monkeypatch.setattr(module, "id_tails", lambda count: ["deadbeef"] * count)
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


# -- Redis Sentinel ------------------------------------------------------------------


def test_parse_sentinel_uri() -> None:
    settings = parse_uri(
        "redis+sentinel://:s%40cret@h1:26380,[::1],h3:26381/my%20master/3"
        "?prefix=z%3A&socket_timeout=2.5&max_connections=7&sentinel_password=s%26p&ssl_ca_certs=/x"
    )
    assert settings.prefix == "z:"
    sentinel = settings.sentinel
    assert sentinel is not None
    assert sentinel.service_name == "my master"
    assert sentinel.addresses == (("h1", 26380), ("::1", 26379), ("h3", 26381))
    conn = settings.connection
    assert (conn["password"], conn["db"], conn["max_connections"]) == ("s@cret", 3, 7)
    assert (conn["socket_timeout"], conn["socket_connect_timeout"]) == (2.5, 5.0)
    assert conn["decode_responses"] is True and conn["retry"].get_retries() == 0
    for name in ("host", "port", "ssl_ca_certs", "sentinel_password", "prefix"):
        assert name not in conn
    to_sentinels = sentinel.connection
    assert to_sentinels["password"] == "s&p"  # the sentinels' own, never the master's
    assert (to_sentinels["socket_timeout"], to_sentinels["socket_connect_timeout"]) == (2.5, 5.0)
    assert to_sentinels["retry"].get_retries() == 0
    assert "db" not in to_sentinels


def test_parse_sentinel_uri_defaults() -> None:
    settings = parse_uri("redis+sentinel://h/mymaster")
    assert settings.prefix == DEFAULT_PREFIX
    assert settings.sentinel is not None
    assert settings.sentinel.addresses == (("h", 26379),)
    assert settings.sentinel.service_name == "mymaster"
    assert "password" not in settings.sentinel.connection
    conn = settings.connection
    assert conn.get("db", 0) == 0 and "password" not in conn
    assert parse_uri("redis+sentinel://h/m/2?db=5").connection["db"] == 5  # the query wins, as for redis://
    assert parse_uri("redis://h/0").sentinel is None


@pytest.mark.parametrize(
    "uri",
    [
        "redis+sentinel://h:26379",
        "redis+sentinel://h:26379/",
        "redis+sentinel:///mymaster",
        "redis+sentinel://h1,,h2/mymaster",
        "redis+sentinel://h:port/mymaster",
        "redis+sentinel://h:70000/mymaster",
        "redis+sentinel://[::1/mymaster",
        "redis+sentinel://[::1]x/mymaster",
        "redis+sentinel://h/mymaster/notanumber",
        "redis+sentinel://h/mymaster/0/1",
        "redis+sentinel://h/mymaster?prefix=",
        "redis+sentinel://h/mymaster?socket_timeout=soon",
        "redis+sentinel://h/mymaster?max_connections=-1",
    ],
)
def test_bad_sentinel_uris_raise_backend_unavailable(uri: str) -> None:
    with pytest.raises(errors.BackendUnavailable):
        DataDriver(uri)


def test_bad_sentinel_uri_error_does_not_leak_passwords() -> None:
    with pytest.raises(errors.BackendUnavailable) as raised:
        DataDriver("redis+sentinel://:hunter2@h/mymaster/nope?sentinel_password=swordfish")
    assert "hunter2" not in str(raised.value) and "swordfish" not in str(raised.value)


def test_dead_sentinels_are_not_alive_and_every_call_is_unavailable(clock: FakeClock) -> None:
    # Building it must not need a sentinel; with none answering there is no master to use.
    uri = "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster?socket_connect_timeout=2"
    store = DataDriver(uri, clock=clock)
    try:
        assert store.is_alive() is False
        with pytest.raises(errors.BackendUnavailable):
            store.queues.create("p", "q", {})
        with pytest.raises(errors.BackendUnavailable):
            store.messages.post("p", "q", [MessageDraft(body=1, ttl=60)], None)
        with pytest.raises(errors.BackendUnavailable):
            store.gc()
    finally:
        store.close()


@dataclasses.dataclass(frozen=True)
class _Sentinel:
    port: int
    service: str  # the name it monitors the test server under
    master: tuple[str, int]  # the test server's address, as the sentinel reports it
    credentials: str  # ``[user]:password@`` of the test server, or ""
    db: int


# What a failover (or the rescue of a master stuck in a script) would send to the master.
_NEVER_SENT = ("SLAVEOF", "REPLICAOF", "CONFIG", "SCRIPT")


def _config_value(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sentinel_config(directory: Path, port: int, service: str, master: dict[str, Any], ip: str) -> Path:
    # Quorum 1 and no replicas: failing over is impossible anyway, and a master only counts as
    # down after an hour of silence. Renaming the commands a failover (or a stuck-script rescue)
    # would send to the master makes certain this sentinel can never reconfigure the real server.
    lines = [
        f"port {port}",
        "bind 127.0.0.1",
        f"dir {_config_value(str(directory))}",
        f"logfile {_config_value(str(directory / 'sentinel.log'))}",
        f"sentinel monitor {service} {ip} {master.get('port', 6379)} 1",
        f"sentinel down-after-milliseconds {service} 3600000",
        f"sentinel failover-timeout {service} 3600000",
        *(f"sentinel rename-command {service} {cmd} zaqar-test-disabled-{cmd}" for cmd in _NEVER_SENT),
    ]
    if master.get("username"):
        lines.append(f"sentinel auth-user {service} {_config_value(master['username'])}")
    if master.get("password"):
        lines.append(f"sentinel auth-pass {service} {_config_value(master['password'])}")
    conf = directory / "sentinel.conf"
    conf.write_text("\n".join(lines) + "\n")  # the sentinel rewrites it: it must be writable
    return conf


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_master(port: int, service: str, proc: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    """The sentinel's view of the master once it has heard from it (INFO gives the run id)."""
    client = redis.Redis("127.0.0.1", port, decode_responses=True, socket_timeout=2)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                state = client.sentinel_master(service)
            except redis.exceptions.ConnectionError:
                state = None
            if state and state.get("runid") and state["is_master"] and not state["is_sdown"]:
                return state
            time.sleep(0.05)
        return None
    finally:
        client.close()


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Sentinel]:
    """A private sentinel monitoring the test server under a service name of its own."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not on PATH: CI must test Redis Sentinel for real")
        pytest.skip("redis-server is not on PATH")
    master = redis.connection.parse_url(backends._base(backends.REDIS_ENV))
    if "host" not in master:
        pytest.skip("a sentinel can only monitor a TCP Redis URL")
    ip = socket.getaddrinfo(master["host"], master.get("port", 6379), type=socket.SOCK_STREAM)[0][4][0]
    service = f"zaqar-test-{uuid.uuid4().hex}"
    user, password = (quote(master.get(name) or "", safe="") for name in ("username", "password"))
    for _ in range(3):  # the free port may be taken before the sentinel binds it
        directory = tmp_path_factory.mktemp("sentinel")
        port = _free_port()
        conf = _sentinel_config(directory, port, service, master, ip)
        proc = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        try:
            state = _wait_for_master(port, service, proc)
            if state is None:
                if proc.poll() is not None:
                    continue
                log = (directory / "sentinel.log").read_text(errors="replace")
                pytest.fail(f"the sentinel never reported its master:\n{log[-2000:]}")
            assert state["num-slaves"] == 0  # nothing it could ever promote
            yield _Sentinel(
                port=port,
                service=service,
                master=(state["ip"], int(state["port"])),
                credentials=f"{user}:{password}@" if password else "",
                db=int(master.get("db", 0)),
            )
            return
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    pytest.fail("the sentinel did not start (no free port?)")


def _sentinel_uri(sentinel: _Sentinel, service: str, query: str) -> str:
    where = f"{sentinel.credentials}127.0.0.1:{sentinel.port}"
    return f"redis+sentinel://{where}/{quote(service, safe='')}/{sentinel.db}?{query}"


def test_post_list_claim_through_a_sentinel(sentinel: _Sentinel, clock: FakeClock) -> None:
    with backends.redis_uri() as direct:  # its prefix, and the removal of its keys afterwards
        prefix = parse_uri(direct).prefix
        query = f"prefix={quote(prefix)}&socket_timeout=5&max_connections=4"
        store = DataDriver(_sentinel_uri(sentinel, sentinel.service, query), clock=clock)
        try:
            assert store.is_alive() is True
            posted = store.messages.post("p", "q", [MessageDraft(body=i, ttl=600) for i in range(3)], None)
            assert [m.body for m in store.messages.list("p", "q", echo=True)] == [0, 1, 2]
            cid, claimed = store.claims.create("p", "q", ttl=60, grace=60, limit=2)
            assert cid is not None and [m.id for m in claimed] == posted[:2]
            assert [m.id for m in store.claims.get("p", "q", cid).messages] == posted[:2]
            assert [m.id for m in store.messages.list("p", "q", echo=True)] == posted[2:]
            store.claims.delete("p", "q", cid)
            assert [m.id for m in store.messages.pop("p", "q", 5)] == posted
            pool = store._backend.pool
            assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
            assert pool.get_master_address() == sentinel.master
            assert _keys(prefix + "*")  # the writes went to the test server
        finally:
            store.close()


def test_unknown_sentinel_service_is_unavailable(sentinel: _Sentinel, clock: FakeClock) -> None:
    unknown = f"zaqar-test-unknown-{uuid.uuid4().hex}"
    store = DataDriver(_sentinel_uri(sentinel, unknown, "prefix=zaqar-test-never%3A"), clock=clock)
    try:
        assert store.is_alive() is False
        with pytest.raises(errors.BackendUnavailable):
            store.queues.list("p")
        with pytest.raises(errors.BackendUnavailable):
            store.messages.post("p", "q", [MessageDraft(body=1, ttl=60)], None)
    finally:
        store.close()
