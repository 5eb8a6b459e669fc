"""Contract: queue records, metadata, listing and stats (base.QueueController)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import FakeClock
from tests.contract.helpers import PROJECT, QUEUE, claim, post, post_n, queue_names
from zaqar.storage import errors
from zaqar.storage.base import Capability, DataDriver

# -- create / exists / metadata -------------------------------------------------


def test_create_returns_true_then_false(store: DataDriver) -> None:
    assert store.queues.create(PROJECT, QUEUE, {}) is True
    assert store.queues.create(PROJECT, QUEUE, {}) is False


def test_create_of_existing_queue_keeps_its_metadata(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {"a": 1})
    store.queues.create(PROJECT, QUEUE, {"b": 2})
    assert store.queues.get_metadata(PROJECT, QUEUE) == {"a": 1}


def test_exists_only_after_create(store: DataDriver) -> None:
    assert store.queues.exists(PROJECT, QUEUE) is False
    store.queues.create(PROJECT, QUEUE, {})
    assert store.queues.exists(PROJECT, QUEUE) is True


def test_metadata_round_trips(store: DataDriver) -> None:
    metadata = {
        "_default_message_ttl": 3600,
        "_dead_letter_queue": None,
        "_enable_encrypt_messages": False,
        "nested": {"list": [1, "two", 3.5, None], "empty": {}},
        "unicode": "żółw ☃ 🐢",
    }
    store.queues.create(PROJECT, QUEUE, metadata)
    assert store.queues.get_metadata(PROJECT, QUEUE) == metadata


def test_set_metadata_replaces_instead_of_merging(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {"a": 1})
    store.queues.set_metadata(PROJECT, QUEUE, {"b": 2})
    assert store.queues.get_metadata(PROJECT, QUEUE) == {"b": 2}


def test_set_metadata_to_empty(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {"a": 1})
    store.queues.set_metadata(PROJECT, QUEUE, {})
    assert store.queues.get_metadata(PROJECT, QUEUE) == {}


def test_get_metadata_of_missing_queue_raises(store: DataDriver) -> None:
    with pytest.raises(errors.QueueDoesNotExist) as raised:
        store.queues.get_metadata("p", "q")
    assert str(raised.value) == "Queue q does not exist for project p"


def test_set_metadata_of_missing_queue_raises_and_creates_nothing(store: DataDriver) -> None:
    with pytest.raises(errors.QueueDoesNotExist) as raised:
        store.queues.set_metadata("p", "q", {"a": 1})
    assert str(raised.value) == "Queue q does not exist for project p"
    assert store.queues.exists("p", "q") is False


# -- delete ----------------------------------------------------------------------


def test_delete_removes_the_record(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {"a": 1})
    store.queues.delete(PROJECT, QUEUE)
    assert store.queues.exists(PROJECT, QUEUE) is False
    with pytest.raises(errors.QueueDoesNotExist):
        store.queues.get_metadata(PROJECT, QUEUE)


def test_delete_removes_messages_so_a_recreated_queue_is_empty(store: DataDriver) -> None:
    (mid,) = post(store, "old")
    store.queues.delete(PROJECT, QUEUE)
    assert store.queues.create(PROJECT, QUEUE, {}) is True
    assert store.messages.list(PROJECT, QUEUE, include_claimed=True, include_delayed=True) == []
    assert store.messages.get_many(PROJECT, QUEUE, [mid]) == []
    with pytest.raises(errors.MessageDoesNotExist):
        store.messages.get(PROJECT, QUEUE, mid)
    assert store.queues.stats(PROJECT, QUEUE).total == 0


@pytest.mark.requires(Capability.CLAIMS)
def test_delete_removes_claims(store: DataDriver) -> None:
    post(store, "old")
    cid, _ = claim(store)
    assert cid is not None
    store.queues.delete(PROJECT, QUEUE)
    post(store, "new")
    with pytest.raises(errors.ClaimDoesNotExist):
        store.claims.get(PROJECT, QUEUE, cid)
    assert store.queues.stats(PROJECT, QUEUE).claimed == 0


def test_delete_of_missing_queue_is_fine(store: DataDriver) -> None:
    store.queues.delete(PROJECT, "never-created")
    assert store.queues.exists(PROJECT, "never-created") is False


# -- projects --------------------------------------------------------------------


def test_same_name_in_different_projects_are_different_queues(store: DataDriver) -> None:
    assert store.queues.create("p1", QUEUE, {"owner": 1}) is True
    assert store.queues.create("p2", QUEUE, {"owner": 2}) is True
    assert store.queues.create(None, QUEUE, {"owner": None}) is True
    assert store.queues.get_metadata("p1", QUEUE) == {"owner": 1}
    assert store.queues.get_metadata("p2", QUEUE) == {"owner": 2}
    assert store.queues.get_metadata(None, QUEUE) == {"owner": None}


def test_queue_of_one_project_does_not_exist_in_another(store: DataDriver) -> None:
    store.queues.create("p1", QUEUE, {})
    assert store.queues.exists("p2", QUEUE) is False
    assert store.queues.exists(None, QUEUE) is False
    with pytest.raises(errors.QueueDoesNotExist):
        store.queues.get_metadata(None, QUEUE)


def test_none_project_queue_is_invisible_to_named_projects(store: DataDriver) -> None:
    store.queues.create(None, QUEUE, {})
    assert store.queues.exists(PROJECT, QUEUE) is False
    assert store.queues.exists("", QUEUE) is False


def test_set_metadata_touches_only_its_project(store: DataDriver) -> None:
    store.queues.create("p1", QUEUE, {"v": 1})
    store.queues.create("p2", QUEUE, {"v": 1})
    store.queues.set_metadata("p1", QUEUE, {"v": 2})
    assert store.queues.get_metadata("p2", QUEUE) == {"v": 1}


def test_delete_touches_only_its_project(store: DataDriver) -> None:
    post(store, "one", project="p1")
    post(store, "two", project="p2")
    post(store, "none", project=None)
    store.queues.delete("p1", QUEUE)
    assert store.queues.exists("p2", QUEUE) is True
    assert [m.body for m in store.messages.list("p2", QUEUE)] == ["two"]
    assert [m.body for m in store.messages.list(None, QUEUE)] == ["none"]


def test_list_and_count_are_scoped_by_project(store: DataDriver) -> None:
    store.queues.create("p1", "a", {})
    store.queues.create("p1", "b", {})
    store.queues.create("p2", "c", {})
    store.queues.create(None, "d", {})
    assert queue_names(store, "p1") == ["a", "b"]
    assert queue_names(store, "p2") == ["c"]
    assert queue_names(store, None) == ["d"]
    assert queue_names(store, "p3") == []
    assert store.queues.count("p1") == 2
    assert store.queues.count("p2") == 1
    assert store.queues.count(None) == 1
    assert store.queues.count("p3") == 0


def test_stats_are_scoped_by_project(store: DataDriver) -> None:
    post(store, "x", project="p1")
    assert store.queues.stats("p1", QUEUE).total == 1
    assert store.queues.stats("p2", QUEUE).total == 0
    assert store.queues.stats(None, QUEUE).total == 0


# -- list ------------------------------------------------------------------------


def _create(store: DataDriver, *names: str, project: str | None = PROJECT) -> None:
    for name in names:
        store.queues.create(project, name, {})


def test_list_is_sorted_by_name(store: DataDriver) -> None:
    _create(store, "c", "a", "d", "b")
    assert queue_names(store) == ["a", "b", "c", "d"]


def test_list_of_empty_project_is_empty(store: DataDriver) -> None:
    assert store.queues.list(PROJECT) == []


def test_list_returns_metadata(store: DataDriver) -> None:
    store.queues.create(PROJECT, "a", {"k": [1, 2]})
    store.queues.create(PROJECT, "b", {})
    listed = {q.name: q.metadata for q in store.queues.list(PROJECT)}
    assert listed == {"a": {"k": [1, 2]}, "b": {}}


def test_list_includes_lazily_created_queues(store: DataDriver) -> None:
    post(store, "x", queue="lazy")
    assert queue_names(store) == ["lazy"]


def test_list_marker_is_strictly_after(store: DataDriver) -> None:
    _create(store, "a", "b", "c", "d")
    assert queue_names(store, marker="b") == ["c", "d"]
    assert queue_names(store, marker="d") == []


def test_list_marker_need_not_be_an_existing_name(store: DataDriver) -> None:
    _create(store, "a", "b", "c", "d")
    assert queue_names(store, marker="bb") == ["c", "d"]
    assert queue_names(store, marker="0") == ["a", "b", "c", "d"]


def test_list_limit(store: DataDriver) -> None:
    _create(store, "a", "b", "c", "d")
    assert queue_names(store, limit=2) == ["a", "b"]


def test_list_default_limit_is_ten(store: DataDriver) -> None:
    _create(store, *(f"q{i:02}" for i in range(12)))
    assert len(store.queues.list(PROJECT)) == 10


def test_list_pages_with_last_name_as_marker(store: DataDriver) -> None:
    names = [f"q{i:02}" for i in range(7)]
    _create(store, *reversed(names))
    seen: list[str] = []
    marker: str | None = None
    while page := queue_names(store, marker=marker, limit=3):
        seen.extend(page)
        marker = page[-1]
    assert seen == names


def test_list_name_filter_keeps_substring_matches(store: DataDriver) -> None:
    _create(store, "orders", "reorder", "billing", "ORDERS-upper")
    assert queue_names(store, name="order") == ["orders", "reorder"]


@pytest.mark.parametrize(
    ("needle", "expected"),
    [
        (".", []),
        ("%", []),
        ("_", ["a_b"]),
        ("a.b", []),
        ("a%b", []),
        ("[a]", []),
        ("a*", []),
        ("^a", []),
    ],
)
def test_list_name_filter_is_literal(store: DataDriver, needle: str, expected: list[str]) -> None:
    _create(store, "ab", "axb", "a_b", "a-b", "ba")
    assert queue_names(store, name=needle) == expected


def test_list_name_filter_applies_before_limit_and_marker(store: DataDriver) -> None:
    _create(store, "a", "b-x", "c", "d-x", "e-x")
    assert queue_names(store, name="-x", limit=2) == ["b-x", "d-x"]
    assert queue_names(store, name="-x", marker="b-x", limit=1) == ["d-x"]


def test_list_metadata_filters(store: DataDriver) -> None:
    store.queues.create(PROJECT, "a", {"color": "red", "n": 1})
    store.queues.create(PROJECT, "b", {"color": "blue", "n": 1})
    store.queues.create(PROJECT, "c", {"color": "red", "n": 2})
    store.queues.create(PROJECT, "d", {})
    assert queue_names(store, filters={"color": "red"}) == ["a", "c"]
    assert queue_names(store, filters={"color": "red", "n": 1}) == ["a"]
    assert queue_names(store, filters={"n": 1}) == ["a", "b"]
    assert queue_names(store, filters={"color": "green"}) == []
    assert queue_names(store, filters={}) == ["a", "b", "c", "d"]


def test_list_metadata_filters_apply_before_limit(store: DataDriver) -> None:
    store.queues.create(PROJECT, "a", {"color": "blue"})
    store.queues.create(PROJECT, "b", {"color": "blue"})
    store.queues.create(PROJECT, "c", {"color": "red"})
    assert queue_names(store, filters={"color": "red"}, limit=1) == ["c"]


def test_list_metadata_and_name_filters_combine(store: DataDriver) -> None:
    store.queues.create(PROJECT, "red-1", {"color": "red"})
    store.queues.create(PROJECT, "red-2", {"color": "blue"})
    store.queues.create(PROJECT, "blue-1", {"color": "red"})
    assert queue_names(store, name="red", filters={"color": "red"}) == ["red-1"]


def test_count_follows_create_and_delete(store: DataDriver) -> None:
    assert store.queues.count(PROJECT) == 0
    _create(store, "a", "b")
    post(store, "x", queue="c")
    assert store.queues.count(PROJECT) == 3
    store.queues.delete(PROJECT, "a")
    assert store.queues.count(PROJECT) == 2


# -- stats -----------------------------------------------------------------------


def test_stats_of_missing_queue_are_zeros(store: DataDriver) -> None:
    stats = store.queues.stats(PROJECT, "missing")
    assert (stats.total, stats.claimed, stats.free) == (0, 0, 0)
    assert stats.oldest is None
    assert stats.newest is None
    assert stats.exists in (None, False)  # where a store answers it, it must be right


def test_stats_of_empty_queue_are_zeros(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {})
    stats = store.queues.stats(PROJECT, QUEUE)
    assert (stats.total, stats.claimed, stats.free) == (0, 0, 0)
    assert stats.oldest is None
    assert stats.newest is None
    assert stats.exists in (None, True)


def test_stats_say_a_queue_exists_once_its_messages_are_gone(store: DataDriver, clock: FakeClock) -> None:
    post_n(store, 1, ttl=60)
    clock.advance(61)
    stats = store.queues.stats(PROJECT, QUEUE)
    assert (stats.total, stats.exists) in ((0, None), (0, True))
    store.queues.delete(PROJECT, QUEUE)
    assert store.queues.stats(PROJECT, QUEUE).exists in (None, False)


def test_stats_count_messages(store: DataDriver) -> None:
    post_n(store, 3)
    post_n(store, 2)
    stats = store.queues.stats(PROJECT, QUEUE)
    assert (stats.total, stats.claimed, stats.free) == (5, 0, 5)


def test_stats_follow_message_deletion(store: DataDriver) -> None:
    first, _ = post(store, "a", "b")
    store.messages.delete(PROJECT, QUEUE, first)
    assert store.queues.stats(PROJECT, QUEUE).total == 1


@pytest.mark.requires(Capability.CLAIMS)
def test_stats_count_claimed_and_free(store: DataDriver) -> None:
    post_n(store, 5)
    claim(store, limit=2)
    stats = store.queues.stats(PROJECT, QUEUE)
    assert (stats.total, stats.claimed, stats.free) == (5, 2, 3)


@pytest.mark.requires(Capability.CLAIMS)
def test_stats_stop_counting_a_claim_once_it_expired(store: DataDriver, clock: FakeClock) -> None:
    post_n(store, 3, ttl=1000)
    claim(store, ttl=100, limit=2)
    clock.advance(101)
    stats = store.queues.stats(PROJECT, QUEUE)
    assert (stats.total, stats.claimed, stats.free) == (3, 0, 3)


@pytest.mark.requires(Capability.CLAIMS)
def test_stats_stop_counting_a_released_claim(store: DataDriver) -> None:
    post_n(store, 3)
    cid, _ = claim(store, limit=2)
    assert cid is not None
    store.claims.delete(PROJECT, QUEUE, cid)
    assert store.queues.stats(PROJECT, QUEUE).claimed == 0


def test_stats_oldest_and_newest_by_post_order_with_created_times(
    store: DataDriver, clock: FakeClock
) -> None:
    start = clock.now
    (first,) = post(store, "first")
    clock.advance(5)
    post(store, "middle")
    clock.advance(5)
    (last,) = post(store, "last")
    stats = store.queues.stats(PROJECT, QUEUE)
    assert stats.oldest is not None and stats.newest is not None
    assert stats.oldest.id == first
    assert stats.oldest.created == pytest.approx(start)
    assert stats.newest.id == last
    assert stats.newest.created == pytest.approx(start + 10)


def test_stats_oldest_and_newest_by_post_order_within_one_instant(store: DataDriver) -> None:
    first, _, last = post(store, "a", "b", "c")
    stats = store.queues.stats(PROJECT, QUEUE)
    assert stats.oldest is not None and stats.newest is not None
    assert (stats.oldest.id, stats.newest.id) == (first, last)


def test_stats_of_single_message_queue(store: DataDriver) -> None:
    (only,) = post(store, "a")
    stats = store.queues.stats(PROJECT, QUEUE)
    assert stats.oldest is not None and stats.newest is not None
    assert stats.oldest.id == stats.newest.id == only


@pytest.mark.requires(Capability.CLAIMS)
def test_stats_oldest_includes_claimed_messages(store: DataDriver) -> None:
    first, _ = post(store, "a", "b")
    claim(store, limit=1)
    stats = store.queues.stats(PROJECT, QUEUE)
    assert stats.oldest is not None
    assert stats.oldest.id == first


def test_stats_exclude_expired_messages(store: DataDriver, clock: FakeClock) -> None:
    post(store, "short", ttl=60)
    clock.advance(30)
    (survivor,) = post(store, "long", ttl=300)
    clock.advance(31)
    stats = store.queues.stats(PROJECT, QUEUE)
    assert (stats.total, stats.claimed, stats.free) == (1, 0, 1)
    assert stats.oldest is not None and stats.newest is not None
    assert stats.oldest.id == stats.newest.id == survivor


def test_stats_of_fully_expired_queue_are_zeros(store: DataDriver, clock: FakeClock) -> None:
    post(store, "a", "b", ttl=60)
    clock.advance(61)
    stats = store.queues.stats(PROJECT, QUEUE)
    assert (stats.total, stats.claimed) == (0, 0)
    assert stats.oldest is None
    assert stats.newest is None


def test_stats_count_delayed_messages_as_free(store: DataDriver) -> None:
    post(store, "later", delay=30)
    stats = store.queues.stats(PROJECT, QUEUE)
    assert (stats.total, stats.claimed, stats.free) == (1, 0, 1)


# -- update_metadata (atomic read-change-store) ----------------------------------


def test_update_metadata_applies_the_change_and_returns_the_result(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {"a": 1, "gone": True})
    seen: list[dict[str, Any]] = []

    def change(current: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(current))
        updated = {k: v for k, v in current.items() if k != "gone"}
        updated["b"] = {"nested": [1, "two"]}
        return updated

    result = store.queues.update_metadata(PROJECT, QUEUE, change)
    assert result == {"a": 1, "b": {"nested": [1, "two"]}}
    assert seen and all(s == {"a": 1, "gone": True} for s in seen)
    assert store.queues.get_metadata(PROJECT, QUEUE) == result


def test_update_metadata_replaces_instead_of_merging(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {"a": 1})
    assert store.queues.update_metadata(PROJECT, QUEUE, lambda current: {}) == {}
    assert store.queues.get_metadata(PROJECT, QUEUE) == {}


def test_update_metadata_sees_the_previous_update(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {"n": 0})
    for _ in range(3):
        store.queues.update_metadata(PROJECT, QUEUE, lambda current: {"n": current["n"] + 1})
    assert store.queues.get_metadata(PROJECT, QUEUE) == {"n": 3}


def test_update_metadata_of_missing_queue_raises_and_creates_nothing(store: DataDriver) -> None:
    calls: list[dict[str, Any]] = []

    def change(current: dict[str, Any]) -> dict[str, Any]:
        calls.append(current)
        return {"a": 1}

    with pytest.raises(errors.QueueDoesNotExist) as raised:
        store.queues.update_metadata("p", "q", change)
    assert str(raised.value) == "Queue q does not exist for project p"
    assert calls == []
    assert store.queues.exists("p", "q") is False


def test_update_metadata_error_from_change_propagates_and_writes_nothing(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {"a": 1})

    class Refused(Exception):
        pass

    refusal = Refused("no")

    def change(current: dict[str, Any]) -> dict[str, Any]:
        current["a"] = 2  # mutating the argument must not leak into the store either
        raise refusal

    with pytest.raises(Refused) as raised:
        store.queues.update_metadata(PROJECT, QUEUE, change)
    assert raised.value is refusal
    assert store.queues.get_metadata(PROJECT, QUEUE) == {"a": 1}
    # The store is still usable after the aborted update.
    assert store.queues.update_metadata(PROJECT, QUEUE, lambda current: {**current, "b": 2}) == {
        "a": 1,
        "b": 2,
    }


def test_update_metadata_touches_only_its_project(store: DataDriver) -> None:
    store.queues.create("p1", QUEUE, {"v": 1})
    store.queues.create(None, QUEUE, {"v": 1})
    store.queues.update_metadata("p1", QUEUE, lambda current: {"v": 2})
    assert store.queues.get_metadata(None, QUEUE) == {"v": 1}
    with pytest.raises(errors.QueueDoesNotExist):
        store.queues.update_metadata("p2", QUEUE, lambda current: {"v": 3})


UPDATE_THREADS = 8
UPDATES_PER_THREAD = 10


def test_concurrent_update_metadata_loses_no_update(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {"base": True})
    barrier = threading.Barrier(UPDATE_THREADS)

    def adding(key: str, value: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda current: {**current, key: value}

    def updater(thread: int) -> None:
        barrier.wait(timeout=30)
        for i in range(UPDATES_PER_THREAD):
            key = f"t{thread}-{i}"
            result = store.queues.update_metadata(PROJECT, QUEUE, adding(key, i))
            assert result[key] == i

    with ThreadPoolExecutor(max_workers=UPDATE_THREADS) as pool:
        futures = [pool.submit(updater, thread) for thread in range(UPDATE_THREADS)]
        for future in futures:
            future.result(timeout=120)

    expected: dict[str, Any] = {"base": True}
    expected.update(
        {f"t{thread}-{i}": i for thread in range(UPDATE_THREADS) for i in range(UPDATES_PER_THREAD)}
    )
    assert store.queues.get_metadata(PROJECT, QUEUE) == expected
