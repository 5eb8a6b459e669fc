"""The pooled store's own promises, beyond the contract suite: where queues land and what follows.

Real SQLite pools and a SQLite management store; a Redis URI on a closed port
plays a pool whose server is down.
"""

from __future__ import annotations

import collections
import random
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from zaqar import storage
from zaqar.storage import errors, pooling
from zaqar.storage.base import DeadLetter, MessageDraft
from zaqar.storage.control import ControlDriver

P = "project"
DOWN = "redis://127.0.0.1:1/0?socket_timeout=0.5"


@pytest.fixture
def control(tmp_path: Path) -> ControlDriver:
    driver = storage.load_control_driver("sqlite", f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    yield driver
    driver.close()


@pytest.fixture
def pooled(control: ControlDriver, clock: FakeClock) -> pooling.DataDriver:
    store = pooling.DataDriver(control, clock=clock, refresh=0, rng=random.Random(7))
    yield store
    store.close()


def _add(control: ControlDriver, tmp: Path, name: str, weight: int) -> None:
    control.pools.create(name, f"sqlite:///{tmp / f'{name}.sqlite'}", weight)


def _post(store: pooling.DataDriver, queue: str, body: object = "x") -> list[str]:
    return store.messages.post(P, queue, [MessageDraft(body, 300)], None)


def test_placement_follows_the_weights(pooled, control, tmp_path):
    for name, weight in (("a", 100), ("b", 200), ("c", 300)):
        _add(control, tmp_path, name, weight)
    for n in range(600):
        pooled.queues.create(P, f"q{n:03}", {})
    placed = collections.Counter(control.catalog.get(P, f"q{n:03}") for n in range(600))
    # Expected 100/200/300; the binomial spread is ~9-12, so 40 is over 3 sigma either way.
    for name, expected in (("a", 100), ("b", 200), ("c", 300)):
        assert abs(placed[name] - expected) <= 40, placed


def test_a_queue_lives_in_exactly_one_pool(pooled, control, tmp_path):
    for name in ("a", "b"):
        _add(control, tmp_path, name, 100)
    queues = [f"q{n}" for n in range(20)]
    for queue in queues:
        _post(pooled, queue, {"queue": queue})
    for queue in queues:
        holders = [name for name in ("a", "b")
                   if pooled.pool_store(name).messages.list(P, queue, echo=True)]
        assert holders == [control.catalog.get(P, queue)]
    assert len({control.catalog.get(P, q) for q in queues}) == 2


def test_listing_pages_through_every_pool_exactly_once(pooled, control, tmp_path):
    for name in ("a", "b", "c"):
        _add(control, tmp_path, name, 100)
    names = sorted(f"queue-{n:02}" for n in range(31))
    for name in names:
        pooled.queues.create(P, name, {"n": name})
    seen, marker = [], None
    while page := pooled.queues.list(P, marker=marker, limit=7):
        seen += [info.name for info in page]
        marker = page[-1].name
    assert seen == names
    assert pooled.queues.count(P) == 31
    assert [i.name for i in pooled.queues.list(P, limit=20, filters={"n": "queue-05"})] == ["queue-05"]


def test_a_flavor_keeps_its_pools_to_itself(pooled, control, tmp_path):
    for name in ("a", "b", "gold-1", "gold-2"):
        _add(control, tmp_path, name, 100)
    control.flavors.create(P, "gold", ["gold-1", "gold-2"])
    for n in range(40):
        pooled.queues.create(P, f"g{n}", {"_flavor": "gold"})
        pooled.queues.create(P, f"plain{n}", {})
    assert {control.catalog.get(P, f"g{n}") for n in range(40)} == {"gold-1", "gold-2"}
    assert {control.catalog.get(P, f"plain{n}") for n in range(40)} == {"a", "b"}


def test_weight_zero_takes_no_new_queues_and_no_pool_is_an_error(pooled, control, tmp_path):
    with pytest.raises(errors.NoPoolFound):
        pooled.queues.create(P, "q", {})
    _add(control, tmp_path, "drained", 0)
    _add(control, tmp_path, "open", 1)
    for n in range(20):
        _post(pooled, f"q{n}")
    assert {control.catalog.get(P, f"q{n}") for n in range(20)} == {"open"}
    control.pools.update("open", weight=0)
    with pytest.raises(errors.NoPoolFound):
        pooled.queues.create(P, "late", {})
    # A queue placed before keeps working.
    assert len(pooled.messages.list(P, "q0", echo=True)) == 1


def test_unknown_flavor_is_an_error_not_a_placement(pooled, control, tmp_path):
    _add(control, tmp_path, "a", 100)
    with pytest.raises(errors.FlavorDoesNotExist):
        pooled.queues.create(P, "q", {"_flavor": "missing"})
    assert pooled.queues.exists(P, "q") is False


def _place_on(control: ControlDriver, pooled: pooling.DataDriver, queue: str, pool: str) -> None:
    assert control.catalog.insert(P, queue, pool) == pool
    pooled.queues.create(P, queue, {})


def test_dead_letters_are_carried_to_a_queue_on_another_pool(pooled, control, tmp_path):
    _add(control, tmp_path, "a", 100)
    _add(control, tmp_path, "b", 100)
    _place_on(control, pooled, "dlq", "b")
    _place_on(control, pooled, "q", "a")
    _post(pooled, "q", {"dead": True})
    dead_letter = DeadLetter(queue="dlq", max_claim_count=1)
    cid, claimed = pooled.claims.create(P, "q", ttl=60, grace=60, limit=5, dead_letter=dead_letter)
    assert len(claimed) == 1
    pooled.claims.delete(P, "q", cid)
    assert pooled.claims.create(P, "q", ttl=60, grace=60, limit=5, dead_letter=dead_letter) == (None, [])
    assert [m.body for m in pooled.messages.list(P, "dlq", echo=True)] == [{"dead": True}]
    assert pooled.messages.list(P, "q", echo=True, include_claimed=True) == []
    assert pooled.pool_store("b").messages.list(P, "dlq", echo=True)  # really on the DLQ's pool
    # The way station on the source pool shows nowhere.
    assert [i.name for i in pooled.queues.list(P)] == ["dlq", "q"]
    assert pooled.queues.count(P) == 2


def test_an_unplaced_dead_letter_queue_joins_its_source_and_keeps_ids(pooled, control, tmp_path):
    _add(control, tmp_path, "a", 100)
    _add(control, tmp_path, "b", 100)
    _place_on(control, pooled, "q", "a")
    (mid,) = _post(pooled, "q")
    dead_letter = DeadLetter(queue="dlq", max_claim_count=1)
    for _ in range(2):
        cid, _ = pooled.claims.create(P, "q", ttl=60, grace=60, limit=5, dead_letter=dead_letter)
        if cid:
            pooled.claims.delete(P, "q", cid)
    assert control.catalog.get(P, "dlq") == "a"
    assert pooled.messages.get(P, "dlq", mid).claim_count == 1


def test_a_deleted_queue_keeps_its_pool_while_the_pool_exists(pooled, control, tmp_path):
    _add(control, tmp_path, "a", 100)
    _post(pooled, "plain")
    pooled.subscriptions.create(P, "watched", "http://127.0.0.1:1/hook", 3600, {})
    pooled.queues.create(P, "gone", {})
    for queue in ("plain", "watched", "gone"):
        pooled.queues.delete(P, queue)
    assert pooled.queues.exists(P, "plain") is False
    _add(control, tmp_path, "b", 1_000_000)  # would take nearly every new queue
    _post(pooled, "plain", "again")  # a re-created (or racing) post goes back where it was
    assert control.catalog.get(P, "plain") == "a"
    # What still lives there counts; no placement is forgotten while the pool stays (a refused
    # delete must not move a deleted queue that other processes still place on this pool).
    assert pooling.held_queues(control, pooled.pool_store("a"), "a") == 2
    assert sorted(q for _, q in control.catalog.placed("a")) == ["gone", "plain", "watched"]
    assert len(pooled.subscriptions.list(P, "watched")) == 1


def test_a_pool_that_is_down_fails_only_its_own_queues(pooled, control, tmp_path):
    _add(control, tmp_path, "up", 100)
    control.pools.create("down", DOWN, 0)  # registered behind the API's connectivity check
    control.catalog.insert(P, "stuck", "down")
    _post(pooled, "fine")
    with pytest.raises(errors.BackendUnavailable):
        _post(pooled, "stuck")
    with pytest.raises(errors.BackendUnavailable):
        pooled.messages.list(P, "stuck")
    assert len(pooled.messages.list(P, "fine", echo=True)) == 1
    assert pooled.is_alive() is False
    # A listing needs every pool: it is refused rather than silently incomplete.
    with pytest.raises(errors.BackendUnavailable):
        pooled.queues.list(P)


def test_a_changed_pool_uri_is_followed(pooled, control, tmp_path, clock):
    _add(control, tmp_path, "a", 100)
    _post(pooled, "q", "before")
    control.pools.update("a", uri=f"sqlite:///{tmp_path / 'moved.sqlite'}")
    assert pooled.messages.list(P, "q", echo=True) == []
    _post(pooled, "q", "after")
    moved = storage.load_data_driver("sqlite", f"sqlite:///{tmp_path / 'moved.sqlite'}", clock=clock)
    assert [m.body for m in moved.messages.list(P, "q", echo=True)] == ["after"]
    moved.close()


def test_new_queues_avoid_a_pool_that_does_not_answer(pooled, control, tmp_path):
    control.pools.create("down", DOWN, 1000)
    _add(control, tmp_path, "up", 1)
    for n in range(10):
        _post(pooled, f"q{n}")
    assert {control.catalog.get(P, f"q{n}") for n in range(10)} == {"up"}
    control.pools.update("up", weight=0)
    with pytest.raises(errors.BackendUnavailable):
        pooled.queues.create(P, "nowhere", {})
    with pytest.raises(errors.QueueNotMapped):
        control.catalog.get(P, "nowhere")


def test_queues_from_before_pooling_are_adopted_where_they_are(control, clock, tmp_path):
    old_uri = f"sqlite:///{tmp_path / 'before.sqlite'}"
    before = storage.load_data_driver("sqlite", old_uri, clock=clock)
    before.queues.create(P, "old", {"kept": True})
    (mid,) = before.messages.post(P, "old", [MessageDraft("from before", 300)], None)
    before.close()
    control.pools.create("default", old_uri, 100)
    _add(control, tmp_path, "new", 100_000)  # would take nearly every new queue
    store = pooling.DataDriver(control, clock=clock, refresh=0, adopt_from="default")
    try:
        assert store.queues.get_metadata(P, "old") == {"kept": True}
        assert [m.id for m in store.messages.list(P, "old", echo=True)] == [mid]
        _post(store, "old", "after")
        assert control.catalog.get(P, "old") == "default"
        assert len(store.messages.list(P, "old", echo=True)) == 2
        assert store.messages.list(P, "never-existed") == []
        with pytest.raises(errors.QueueNotMapped):
            control.catalog.get(P, "never-existed")  # reads place nothing
        control.catalog.forget_pool("default")
        control.pools.delete("default")  # the former store gone: unplaced queues are just missing
        assert store.queues.exists(P, "old") is False
    finally:
        store.close()


def test_a_record_read_before_a_uri_change_does_not_bring_the_old_store_back(control, clock, tmp_path):
    import time

    _add(control, tmp_path, "a", 100)
    store = pooling.DataDriver(control, clock=clock, refresh=60.0)
    registry = store._registry  # noqa: SLF001 - the race is between two of its callers
    try:
        old, before = control.pools.get("a"), time.monotonic()
        control.pools.update("a", uri=f"sqlite:///{tmp_path / 'moved.sqlite'}")
        new = control.pools.get("a")
        moved = registry._current(new, time.monotonic())  # a thread with the fresh record
        assert registry._current(old, before) is moved  # a slower thread with the old one
        _post(store, "q", "after the move")
        assert [m.body for m in moved.messages.list(P, "q", echo=True)] == ["after the move"]
    finally:
        store.close()


def test_dead_letters_wait_while_their_queue_s_pool_is_down(pooled, control, tmp_path):
    _add(control, tmp_path, "a", 100)
    control.pools.create("far", DOWN, 0)
    _place_on(control, pooled, "q", "a")
    control.catalog.insert(P, "dlq", "far")
    _post(pooled, "q", "dead")
    _post(pooled, "q", "alive")
    dead_letter = DeadLetter(queue="dlq", max_claim_count=1)
    cid, claimed = pooled.claims.create(P, "q", ttl=60, grace=60, limit=1, dead_letter=dead_letter)
    pooled.claims.delete(P, "q", cid)
    # The claim that moves "dead" is answered although its dead-letter queue cannot be reached.
    cid, claimed = pooled.claims.create(P, "q", ttl=60, grace=60, limit=5, dead_letter=dead_letter)
    assert [m.body for m in claimed] == ["alive"]
    control.pools.update("far", uri=f"sqlite:///{tmp_path / 'far.sqlite'}")  # the pool is back
    pooled.claims.delete(P, "q", cid)
    # This claim moves "alive" too (claimed once already) and carries both, in order.
    assert pooled.claims.create(P, "q", ttl=60, grace=60, limit=5, dead_letter=dead_letter) == (None, [])
    assert [m.body for m in pooled.messages.list(P, "dlq", echo=True)] == ["dead", "alive"]
    assert [i.name for i in pooled.queues.list(P)] == ["dlq", "q"]
