"""Contract: subscriptions of a queue, unique by subscriber (base.SubscriptionController).

Time only moves through ``clock.advance``; ttl boundaries are probed one
second either side, never at the exact instant.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from tests.conftest import FakeClock
from tests.contract.helpers import ID_PATTERN, MALFORMED_ID, MAX_PAGES, PROJECT, QUEUE, post_n
from zaqar.storage import errors
from zaqar.storage.base import DataDriver, Subscription

T = TypeVar("T")

HOOK = "http://example.com/hook"
OTHER_HOOK = "https://example.org/other"
TTL = 3600
THREADS = 8

# Ids that no driver can have handed out: an empty string, a short word, and
# one with characters outside [A-Za-z0-9_-].
BAD_IDS = ["", "abc", MALFORMED_ID]

ALREADY_EXISTS_TEXT = (
    "Such subscription already exists. Subscriptions are unique by project + queue + subscriber URI."
)


def subscribe(
    store: DataDriver,
    subscriber: str = HOOK,
    *,
    queue: str = QUEUE,
    project: str | None = PROJECT,
    ttl: int = TTL,
    options: dict[str, Any] | None = None,
) -> str:
    return store.subscriptions.create(project, queue, subscriber, ttl, options or {})


def subscribe_n(store: DataDriver, count: int, **kwargs: Any) -> list[str]:
    """Subscribe ``http://example.com/<n>`` for n in 0..count-1; return the ids in creation order."""
    return [subscribe(store, f"http://example.com/{n}", **kwargs) for n in range(count)]


def sids(subscriptions: list[Subscription]) -> list[str]:
    return [s.id for s in subscriptions]


def listed(store: DataDriver, *, queue: str = QUEUE, project: str | None = PROJECT) -> list[str]:
    return sids(store.subscriptions.list(project, queue, limit=100))


def list_all(store: DataDriver, *, page_size: int, queue: str = QUEUE) -> list[str]:
    """Walk the listing page by page (marker = last id) until an empty page."""
    found: list[str] = []
    marker: str | None = None
    for _ in range(MAX_PAGES):
        page = store.subscriptions.list(PROJECT, queue, marker=marker, limit=page_size)
        if not page:
            return found
        assert len(page) <= page_size
        found += sids(page)
        marker = page[-1].id
    raise AssertionError("subscription listing never returned an empty page")


def assert_missing(store: DataDriver, sid: str, *, queue: str = QUEUE, project: str | None = PROJECT) -> None:
    with pytest.raises(errors.SubscriptionDoesNotExist) as raised:
        store.subscriptions.get(project, queue, sid)
    assert str(raised.value) == f"Subscription {sid} does not exist"


def _run_together(workers: list[Callable[[], T]]) -> list[T]:
    """Start every worker at the same moment on its own thread; return their results in order."""
    barrier = threading.Barrier(len(workers))

    def start(worker: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return worker()

    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        futures = [pool.submit(start, worker) for worker in workers]
        return [future.result(timeout=120) for future in futures]


# -- create / get ----------------------------------------------------------------


def test_create_returns_an_id_fit_for_urls(store: DataDriver) -> None:
    sid = subscribe(store)
    assert isinstance(sid, str)
    assert ID_PATTERN.match(sid)


def test_ids_are_unique(store: DataDriver) -> None:
    created = subscribe_n(store, 20)
    assert len(set(created)) == 20
    assert all(ID_PATTERN.match(sid) for sid in created)


def test_get_returns_every_field(store: DataDriver) -> None:
    options = {"post_headers": {"X-Token": "t"}}
    sid = subscribe(store, HOOK, ttl=600, options=options)
    assert store.subscriptions.get(PROJECT, QUEUE, sid) == Subscription(
        id=sid, source=QUEUE, subscriber=HOOK, ttl=600, age=0, options=options, confirmed=False
    )


def test_source_is_the_queue_name(store: DataDriver) -> None:
    sid = subscribe(store, queue="fizbit")
    assert store.subscriptions.get(PROJECT, "fizbit", sid).source == "fizbit"
    assert [s.source for s in store.subscriptions.list(PROJECT, "fizbit")] == ["fizbit"]
    assert [s.source for s in store.subscriptions.live(PROJECT, "fizbit")] == ["fizbit"]


def test_age_grows_with_the_clock(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store)
    clock.advance(42)
    assert store.subscriptions.get(PROJECT, QUEUE, sid).age == 42
    assert [s.age for s in store.subscriptions.list(PROJECT, QUEUE)] == [42]
    assert [s.age for s in store.subscriptions.live(PROJECT, QUEUE)] == [42]


def test_age_is_whole_seconds_rounded_down(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store)
    clock.advance(7.9)
    assert store.subscriptions.get(PROJECT, QUEUE, sid).age == 7


def test_create_does_not_need_a_queue_record(store: DataDriver) -> None:
    sid = subscribe(store, queue="no-record")
    assert store.subscriptions.get(PROJECT, "no-record", sid).subscriber == HOOK


# -- uniqueness --------------------------------------------------------------------


def test_duplicate_subscriber_raises_with_the_holder_unconfirmed(store: DataDriver) -> None:
    sid = subscribe(store, HOOK)
    with pytest.raises(errors.SubscriptionAlreadyExists) as raised:
        subscribe(store, HOOK)
    assert (raised.value.sid, raised.value.confirmed) == (sid, False)
    assert str(raised.value) == ALREADY_EXISTS_TEXT


def test_duplicate_of_a_confirmed_subscription_says_so(store: DataDriver) -> None:
    sid = subscribe(store, HOOK)
    store.subscriptions.confirm(PROJECT, QUEUE, sid, True)
    with pytest.raises(errors.SubscriptionAlreadyExists) as raised:
        subscribe(store, HOOK)
    assert (raised.value.sid, raised.value.confirmed) == (sid, True)


def test_duplicate_changes_nothing(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store, HOOK, ttl=600, options={"a": 1})
    clock.advance(10)
    with pytest.raises(errors.SubscriptionAlreadyExists):
        subscribe(store, HOOK, ttl=900, options={"b": 2})
    assert store.subscriptions.get(PROJECT, QUEUE, sid) == Subscription(
        id=sid, source=QUEUE, subscriber=HOOK, ttl=600, age=10, options={"a": 1}, confirmed=False
    )
    assert listed(store) == [sid]


def test_duplicate_check_is_exact(store: DataDriver) -> None:
    first = subscribe(store, HOOK)
    second = subscribe(store, HOOK + "/")
    third = subscribe(store, HOOK.upper())
    assert len({first, second, third}) == 3
    assert listed(store) == [first, second, third]


def test_same_subscriber_on_another_queue_is_fine(store: DataDriver) -> None:
    here = subscribe(store, HOOK, queue="q1")
    there = subscribe(store, HOOK, queue="q2")
    assert here != there
    assert listed(store, queue="q1") == [here]
    assert listed(store, queue="q2") == [there]


def test_same_subscriber_in_another_project_is_fine(store: DataDriver) -> None:
    mine = subscribe(store, HOOK, project="p1")
    theirs = subscribe(store, HOOK, project="p2")
    anonymous = subscribe(store, HOOK, project=None)
    assert len({mine, theirs, anonymous}) == 3
    assert listed(store, project="p1") == [mine]
    assert listed(store, project="p2") == [theirs]
    assert listed(store, project=None) == [anonymous]


def test_none_project_is_its_own_project(store: DataDriver) -> None:
    sid = subscribe(store, project=None)
    assert store.subscriptions.get(None, QUEUE, sid).subscriber == HOOK
    assert_missing(store, sid, project=PROJECT)
    assert listed(store, project=PROJECT) == []
    assert store.subscriptions.live(PROJECT, QUEUE) == []
    named = subscribe(store, project=PROJECT)
    assert_missing(store, named, project=None)
    assert listed(store, project=None) == [sid]


# -- missing ids -------------------------------------------------------------------


def test_get_of_a_deleted_id_raises(store: DataDriver) -> None:
    sid = subscribe(store)
    store.subscriptions.delete(PROJECT, QUEUE, sid)
    assert_missing(store, sid)


@pytest.mark.parametrize("sid", BAD_IDS)
def test_get_of_a_malformed_id_raises(store: DataDriver, sid: str) -> None:
    subscribe(store)
    assert_missing(store, sid)


def test_get_of_an_id_from_another_queue_raises(store: DataDriver) -> None:
    sid = subscribe(store, queue="q1")
    subscribe(store, queue="q2")
    assert_missing(store, sid, queue="q2")


def test_get_of_an_id_from_another_project_raises(store: DataDriver) -> None:
    sid = subscribe(store, project="p1")
    assert_missing(store, sid, project="p2")


# -- list ---------------------------------------------------------------------------


def test_list_is_in_creation_order(store: DataDriver) -> None:
    created = subscribe_n(store, 7)
    assert listed(store) == created
    assert created == sorted(created)


def test_list_is_in_creation_order_as_time_passes(store: DataDriver, clock: FakeClock) -> None:
    created = []
    for n in range(5):
        created.append(subscribe(store, f"http://example.com/{n}"))
        clock.advance(0.5 if n % 2 else 3)
    assert listed(store) == created
    assert created == sorted(created)


def test_list_returns_full_records(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store, HOOK, ttl=600, options={"x": [1]})
    store.subscriptions.confirm(PROJECT, QUEUE, sid, True)
    clock.advance(5)
    assert store.subscriptions.list(PROJECT, QUEUE) == [
        Subscription(
            id=sid, source=QUEUE, subscriber=HOOK, ttl=600, age=5, options={"x": [1]}, confirmed=True
        )
    ]


def test_list_default_limit_is_ten(store: DataDriver) -> None:
    created = subscribe_n(store, 12)
    assert sids(store.subscriptions.list(PROJECT, QUEUE)) == created[:10]


def test_list_limit(store: DataDriver) -> None:
    created = subscribe_n(store, 5)
    assert sids(store.subscriptions.list(PROJECT, QUEUE, limit=1)) == created[:1]
    assert sids(store.subscriptions.list(PROJECT, QUEUE, limit=3)) == created[:3]
    assert sids(store.subscriptions.list(PROJECT, QUEUE, limit=20)) == created


def test_list_marker_is_exclusive(store: DataDriver) -> None:
    created = subscribe_n(store, 5)
    assert sids(store.subscriptions.list(PROJECT, QUEUE, marker=created[1])) == created[2:]
    assert store.subscriptions.list(PROJECT, QUEUE, marker=created[-1]) == []


def test_list_marker_and_limit_together(store: DataDriver) -> None:
    created = subscribe_n(store, 6)
    assert sids(store.subscriptions.list(PROJECT, QUEUE, marker=created[0], limit=2)) == created[1:3]


def test_paging_walks_every_subscription_once(store: DataDriver) -> None:
    created = subscribe_n(store, 13)
    assert list_all(store, page_size=4) == created
    assert list_all(store, page_size=1) == created


def test_a_deleted_id_still_works_as_marker(store: DataDriver) -> None:
    first, second, third = subscribe_n(store, 3)
    store.subscriptions.delete(PROJECT, QUEUE, second)
    assert sids(store.subscriptions.list(PROJECT, QUEUE, marker=second)) == [third]
    assert sids(store.subscriptions.list(PROJECT, QUEUE, marker=first)) == [third]


def test_list_of_unknown_queue_is_empty(store: DataDriver) -> None:
    subscribe(store)
    assert store.subscriptions.list(PROJECT, "never-used") == []
    assert store.subscriptions.list("other-project", QUEUE) == []


def test_list_shows_only_its_queue(store: DataDriver) -> None:
    mine = subscribe_n(store, 3, queue="q1")
    subscribe_n(store, 3, queue="q2")
    assert listed(store, queue="q1") == mine


# -- expiry -------------------------------------------------------------------------


def test_subscription_lives_until_its_ttl(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store, ttl=60)
    clock.advance(59)
    subscription = store.subscriptions.get(PROJECT, QUEUE, sid)
    assert (subscription.ttl, subscription.age) == (60, 59)
    assert listed(store) == [sid]
    assert sids(store.subscriptions.live(PROJECT, QUEUE)) == [sid]


def test_expired_subscription_is_gone_everywhere(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store, ttl=60)
    clock.advance(61)
    assert_missing(store, sid)
    assert store.subscriptions.list(PROJECT, QUEUE) == []
    assert store.subscriptions.live(PROJECT, QUEUE) == []
    with pytest.raises(errors.SubscriptionDoesNotExist):
        store.subscriptions.confirm(PROJECT, QUEUE, sid, True)
    with pytest.raises(errors.SubscriptionDoesNotExist):
        store.subscriptions.update(PROJECT, QUEUE, sid, ttl=3600)
    store.subscriptions.delete(PROJECT, QUEUE, sid)
    assert_missing(store, sid)


def test_expired_subscription_does_not_block_its_subscriber(store: DataDriver, clock: FakeClock) -> None:
    old = subscribe(store, HOOK, ttl=60)
    store.subscriptions.confirm(PROJECT, QUEUE, old, True)
    clock.advance(61)
    new = subscribe(store, HOOK, ttl=60, options={"fresh": True})
    assert new != old
    assert store.subscriptions.get(PROJECT, QUEUE, new) == Subscription(
        id=new, source=QUEUE, subscriber=HOOK, ttl=60, age=0, options={"fresh": True}, confirmed=False
    )
    assert listed(store) == [new]
    assert_missing(store, old)


def test_expired_subscription_does_not_block_an_update(store: DataDriver, clock: FakeClock) -> None:
    subscribe(store, HOOK, ttl=60)
    other = subscribe(store, OTHER_HOOK, ttl=3600)
    clock.advance(61)
    store.subscriptions.update(PROJECT, QUEUE, other, subscriber=HOOK)
    assert store.subscriptions.get(PROJECT, QUEUE, other).subscriber == HOOK
    assert listed(store) == [other]


def test_expiry_affects_only_expired_subscriptions(store: DataDriver, clock: FakeClock) -> None:
    subscribe(store, HOOK, ttl=60)
    long = subscribe(store, OTHER_HOOK, ttl=120)
    clock.advance(61)
    assert listed(store) == [long]
    assert sids(store.subscriptions.live(PROJECT, QUEUE)) == [long]


def test_gc_leaves_live_subscriptions(store: DataDriver, clock: FakeClock) -> None:
    subscribe(store, HOOK, ttl=60)
    long = subscribe(store, OTHER_HOOK, ttl=120)
    clock.advance(61)
    store.gc()
    assert listed(store) == [long]
    assert store.subscriptions.get(PROJECT, QUEUE, long).age == 61


# -- update -------------------------------------------------------------------------


def test_update_subscriber(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store, HOOK, ttl=600, options={"a": 1})
    clock.advance(20)
    store.subscriptions.update(PROJECT, QUEUE, sid, subscriber=OTHER_HOOK)
    # Only the subscriber changed; the ttl keeps counting from creation.
    assert store.subscriptions.get(PROJECT, QUEUE, sid) == Subscription(
        id=sid, source=QUEUE, subscriber=OTHER_HOOK, ttl=600, age=20, options={"a": 1}, confirmed=False
    )


def test_update_frees_the_old_subscriber(store: DataDriver) -> None:
    sid = subscribe(store, HOOK)
    store.subscriptions.update(PROJECT, QUEUE, sid, subscriber=OTHER_HOOK)
    again = subscribe(store, HOOK)
    assert listed(store) == [sid, again]
    with pytest.raises(errors.SubscriptionAlreadyExists) as raised:
        subscribe(store, OTHER_HOOK)
    assert raised.value.sid == sid


def test_update_ttl_restarts_the_lifetime(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store, ttl=60)
    clock.advance(50)
    store.subscriptions.update(PROJECT, QUEUE, sid, ttl=100)
    subscription = store.subscriptions.get(PROJECT, QUEUE, sid)
    assert (subscription.ttl, subscription.age) == (100, 0)
    clock.advance(99)
    assert store.subscriptions.get(PROJECT, QUEUE, sid).age == 99
    clock.advance(2)
    assert_missing(store, sid)


def test_update_to_a_shorter_ttl_counts_from_now(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store, ttl=3600)
    clock.advance(100)
    store.subscriptions.update(PROJECT, QUEUE, sid, ttl=60)
    clock.advance(59)
    assert listed(store) == [sid]
    clock.advance(2)
    assert listed(store) == []


def test_update_options_replaces_them_whole(store: DataDriver) -> None:
    sid = subscribe(store, options={"a": 1, "b": {"c": 2}})
    store.subscriptions.update(PROJECT, QUEUE, sid, options={"b": {"d": 3}})
    assert store.subscriptions.get(PROJECT, QUEUE, sid).options == {"b": {"d": 3}}
    store.subscriptions.update(PROJECT, QUEUE, sid, options={})
    assert store.subscriptions.get(PROJECT, QUEUE, sid).options == {}


def test_update_every_field_at_once(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store, HOOK, ttl=60, options={"a": 1})
    store.subscriptions.confirm(PROJECT, QUEUE, sid, True)
    clock.advance(30)
    store.subscriptions.update(PROJECT, QUEUE, sid, subscriber=OTHER_HOOK, ttl=300, options={"z": None})
    assert store.subscriptions.get(PROJECT, QUEUE, sid) == Subscription(
        id=sid, source=QUEUE, subscriber=OTHER_HOOK, ttl=300, age=0, options={"z": None}, confirmed=True
    )


def test_update_with_no_fields_changes_nothing(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store, options={"a": 1})
    clock.advance(5)
    before = store.subscriptions.get(PROJECT, QUEUE, sid)
    store.subscriptions.update(PROJECT, QUEUE, sid)
    assert store.subscriptions.get(PROJECT, QUEUE, sid) == before


def test_update_to_its_own_subscriber_is_fine(store: DataDriver) -> None:
    sid = subscribe(store, HOOK)
    store.subscriptions.update(PROJECT, QUEUE, sid, subscriber=HOOK, options={"b": 2})
    assert store.subscriptions.get(PROJECT, QUEUE, sid).options == {"b": 2}


@pytest.mark.parametrize("confirmed", [False, True])
def test_update_to_a_taken_subscriber_raises_and_changes_nothing(
    store: DataDriver, clock: FakeClock, confirmed: bool
) -> None:
    holder = subscribe(store, HOOK)
    store.subscriptions.confirm(PROJECT, QUEUE, holder, confirmed)
    sid = subscribe(store, OTHER_HOOK, ttl=600, options={"a": 1})
    clock.advance(10)
    before = store.subscriptions.get(PROJECT, QUEUE, sid)
    with pytest.raises(errors.SubscriptionAlreadyExists) as raised:
        store.subscriptions.update(PROJECT, QUEUE, sid, subscriber=HOOK, ttl=900, options={"b": 2})
    assert (raised.value.sid, raised.value.confirmed) == (holder, confirmed)
    assert str(raised.value) == ALREADY_EXISTS_TEXT
    assert store.subscriptions.get(PROJECT, QUEUE, sid) == before
    assert store.subscriptions.get(PROJECT, QUEUE, holder).subscriber == HOOK


def test_update_to_a_subscriber_of_another_queue_is_fine(store: DataDriver) -> None:
    subscribe(store, HOOK, queue="q1")
    sid = subscribe(store, OTHER_HOOK, queue="q2")
    store.subscriptions.update(PROJECT, "q2", sid, subscriber=HOOK)
    assert store.subscriptions.get(PROJECT, "q2", sid).subscriber == HOOK


def test_update_of_a_deleted_id_raises(store: DataDriver) -> None:
    sid = subscribe(store)
    store.subscriptions.delete(PROJECT, QUEUE, sid)
    with pytest.raises(errors.SubscriptionDoesNotExist) as raised:
        store.subscriptions.update(PROJECT, QUEUE, sid, ttl=600)
    assert str(raised.value) == f"Subscription {sid} does not exist"


@pytest.mark.parametrize("sid", BAD_IDS)
def test_update_of_a_malformed_id_raises(store: DataDriver, sid: str) -> None:
    subscribe(store)
    with pytest.raises(errors.SubscriptionDoesNotExist) as raised:
        store.subscriptions.update(PROJECT, QUEUE, sid, subscriber=OTHER_HOOK)
    assert str(raised.value) == f"Subscription {sid} does not exist"


def test_update_of_an_id_from_another_queue_raises(store: DataDriver) -> None:
    sid = subscribe(store, HOOK, queue="q1")
    with pytest.raises(errors.SubscriptionDoesNotExist):
        store.subscriptions.update(PROJECT, "q2", sid, subscriber=OTHER_HOOK)
    assert store.subscriptions.get(PROJECT, "q1", sid).subscriber == HOOK
    assert listed(store, queue="q2") == []


# -- confirm ------------------------------------------------------------------------


def test_confirm_true_then_false(store: DataDriver) -> None:
    sid = subscribe(store)
    store.subscriptions.confirm(PROJECT, QUEUE, sid, True)
    assert store.subscriptions.get(PROJECT, QUEUE, sid).confirmed is True
    store.subscriptions.confirm(PROJECT, QUEUE, sid, True)
    assert store.subscriptions.get(PROJECT, QUEUE, sid).confirmed is True
    store.subscriptions.confirm(PROJECT, QUEUE, sid, False)
    assert store.subscriptions.get(PROJECT, QUEUE, sid).confirmed is False


def test_confirm_changes_only_the_flag(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store, HOOK, ttl=600, options={"a": 1})
    clock.advance(30)
    store.subscriptions.confirm(PROJECT, QUEUE, sid, True)
    assert store.subscriptions.get(PROJECT, QUEUE, sid) == Subscription(
        id=sid, source=QUEUE, subscriber=HOOK, ttl=600, age=30, options={"a": 1}, confirmed=True
    )


def test_confirm_survives_an_update(store: DataDriver) -> None:
    sid = subscribe(store, HOOK)
    store.subscriptions.confirm(PROJECT, QUEUE, sid, True)
    store.subscriptions.update(PROJECT, QUEUE, sid, subscriber=OTHER_HOOK, ttl=600)
    assert store.subscriptions.get(PROJECT, QUEUE, sid).confirmed is True


def test_confirm_of_a_deleted_id_raises(store: DataDriver) -> None:
    sid = subscribe(store)
    store.subscriptions.delete(PROJECT, QUEUE, sid)
    with pytest.raises(errors.SubscriptionDoesNotExist) as raised:
        store.subscriptions.confirm(PROJECT, QUEUE, sid, True)
    assert str(raised.value) == f"Subscription {sid} does not exist"


@pytest.mark.parametrize("sid", BAD_IDS)
def test_confirm_of_a_malformed_id_raises(store: DataDriver, sid: str) -> None:
    with pytest.raises(errors.SubscriptionDoesNotExist):
        store.subscriptions.confirm(PROJECT, QUEUE, sid, True)


def test_confirm_of_an_id_from_another_queue_raises(store: DataDriver) -> None:
    sid = subscribe(store, queue="q1")
    with pytest.raises(errors.SubscriptionDoesNotExist):
        store.subscriptions.confirm(PROJECT, "q2", sid, True)
    assert store.subscriptions.get(PROJECT, "q1", sid).confirmed is False


# -- delete / delete_all ------------------------------------------------------------


def test_delete_removes_only_that_subscription(store: DataDriver) -> None:
    first, second, third = subscribe_n(store, 3)
    store.subscriptions.delete(PROJECT, QUEUE, second)
    assert_missing(store, second)
    assert listed(store) == [first, third]
    assert sids(store.subscriptions.live(PROJECT, QUEUE)) == [first, third]


def test_delete_frees_the_subscriber(store: DataDriver) -> None:
    sid = subscribe(store, HOOK)
    store.subscriptions.delete(PROJECT, QUEUE, sid)
    again = subscribe(store, HOOK)
    assert again != sid
    assert listed(store) == [again]


def test_delete_twice_is_fine(store: DataDriver) -> None:
    sid = subscribe(store)
    store.subscriptions.delete(PROJECT, QUEUE, sid)
    store.subscriptions.delete(PROJECT, QUEUE, sid)
    assert listed(store) == []


@pytest.mark.parametrize("sid", BAD_IDS)
def test_delete_of_a_malformed_id_is_fine(store: DataDriver, sid: str) -> None:
    kept = subscribe(store)
    store.subscriptions.delete(PROJECT, QUEUE, sid)
    assert listed(store) == [kept]


def test_delete_of_an_id_from_another_queue_does_nothing(store: DataDriver) -> None:
    sid = subscribe(store, queue="q1")
    store.subscriptions.delete(PROJECT, "q2", sid)
    store.subscriptions.delete("other-project", "q1", sid)
    assert listed(store, queue="q1") == [sid]


def test_delete_all_removes_only_that_queues_subscriptions(store: DataDriver) -> None:
    subscribe_n(store, 4, queue="q1")
    kept_queue = subscribe_n(store, 2, queue="q2")
    kept_project = subscribe_n(store, 2, queue="q1", project="p2")
    kept_none = subscribe_n(store, 2, queue="q1", project=None)
    store.subscriptions.delete_all(PROJECT, "q1")
    assert listed(store, queue="q1") == []
    assert store.subscriptions.live(PROJECT, "q1") == []
    assert listed(store, queue="q2") == kept_queue
    assert listed(store, queue="q1", project="p2") == kept_project
    assert listed(store, queue="q1", project=None) == kept_none


def test_delete_all_frees_every_subscriber(store: DataDriver) -> None:
    subscribe(store, HOOK)
    store.subscriptions.delete_all(PROJECT, QUEUE)
    sid = subscribe(store, HOOK)
    assert listed(store) == [sid]


def test_delete_all_of_unknown_queue_is_fine(store: DataDriver) -> None:
    store.subscriptions.delete_all(PROJECT, "never-used")
    assert listed(store, queue="never-used") == []


# -- live ---------------------------------------------------------------------------


def test_live_returns_every_subscription_unpaged(store: DataDriver) -> None:
    created = subscribe_n(store, 25)
    live = store.subscriptions.live(PROJECT, QUEUE)
    assert sorted(sids(live)) == sorted(created)
    by_id = {s.id: s for s in live}
    assert [by_id[sid].subscriber for sid in created] == [f"http://example.com/{n}" for n in range(25)]


def test_live_skips_expired_and_other_queues(store: DataDriver, clock: FakeClock) -> None:
    short = subscribe_n(store, 3, ttl=60)
    long = [subscribe(store, f"http://example.net/{n}", ttl=120) for n in range(12)]
    subscribe_n(store, 2, queue="elsewhere")
    assert sorted(sids(store.subscriptions.live(PROJECT, QUEUE))) == sorted(short + long)
    clock.advance(61)
    assert sorted(sids(store.subscriptions.live(PROJECT, QUEUE))) == sorted(long)


def test_live_of_unknown_queue_is_empty(store: DataDriver) -> None:
    assert store.subscriptions.live(PROJECT, "never-used") == []


def test_live_returns_full_records(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store, HOOK, ttl=600, options={"post_data": '{"m": "$zaqar_message$"}'})
    store.subscriptions.confirm(PROJECT, QUEUE, sid, True)
    clock.advance(3)
    assert store.subscriptions.live(PROJECT, QUEUE) == [
        Subscription(
            id=sid,
            source=QUEUE,
            subscriber=HOOK,
            ttl=600,
            age=3,
            options={"post_data": '{"m": "$zaqar_message$"}'},
            confirmed=True,
        )
    ]


# -- options ------------------------------------------------------------------------


def test_options_round_trip(store: DataDriver) -> None:
    options = {
        "post_headers": {"X-Token": "t", "X-Empty": ""},
        "_retry_policy": {"minimum_delay": 5, "maximum_delay": 30, "retry_backoff_function": "linear"},
        "nested": {"list": [1, "two", 3.5, None, True, False, {"deep": []}], "empty": {}},
        "unicode": "żółw ☃ 🐢",
        "from": "zaqar@example.com",
        "flag": False,
        "nothing": None,
    }
    sid = subscribe(store, options=options)
    assert store.subscriptions.get(PROJECT, QUEUE, sid).options == options
    assert store.subscriptions.list(PROJECT, QUEUE)[0].options == options
    assert store.subscriptions.live(PROJECT, QUEUE)[0].options == options
    store.subscriptions.update(PROJECT, QUEUE, sid, options=options | {"extra": ["é"]})
    assert store.subscriptions.get(PROJECT, QUEUE, sid).options == options | {"extra": ["é"]}


def test_options_are_copied_not_shared(store: DataDriver) -> None:
    options: dict[str, Any] = {"a": {"b": 1}}
    sid = subscribe(store, options=options)
    options["a"]["b"] = 2
    read = store.subscriptions.get(PROJECT, QUEUE, sid).options
    assert read == {"a": {"b": 1}}
    read["a"]["b"] = 3
    assert store.subscriptions.get(PROJECT, QUEUE, sid).options == {"a": {"b": 1}}


def test_unicode_subscriber_and_queue_round_trip(store: DataDriver) -> None:
    subscriber = "mailto:żółw@example.com?subject=☃"
    sid = subscribe(store, subscriber, queue="kolejka_1")
    assert store.subscriptions.get(PROJECT, "kolejka_1", sid).subscriber == subscriber
    with pytest.raises(errors.SubscriptionAlreadyExists):
        subscribe(store, subscriber, queue="kolejka_1")


# -- independence from the queue record ---------------------------------------------


def test_deleting_the_queue_keeps_its_subscriptions(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {})
    post_n(store, 3)
    created = subscribe_n(store, 2)
    store.queues.delete(PROJECT, QUEUE)
    assert listed(store) == created
    assert sids(store.subscriptions.live(PROJECT, QUEUE)) == created
    with pytest.raises(errors.SubscriptionAlreadyExists):
        subscribe(store, "http://example.com/0")


def test_message_expiry_and_gc_leave_subscriptions_alone(store: DataDriver, clock: FakeClock) -> None:
    sid = subscribe(store, ttl=600)
    post_n(store, 5, ttl=60)
    clock.advance(61)
    store.gc()
    assert listed(store) == [sid]


# -- concurrency --------------------------------------------------------------------


def test_concurrent_creates_of_one_subscriber_have_one_winner(store: DataDriver) -> None:
    def creator() -> tuple[str, str]:
        try:
            return "created", subscribe(store, HOOK)
        except errors.SubscriptionAlreadyExists as exc:
            assert exc.confirmed is False
            return "conflict", exc.sid

    results = _run_together([creator] * THREADS)
    winners = [sid for outcome, sid in results if outcome == "created"]
    assert len(winners) == 1
    assert [sid for _, sid in results] == winners * THREADS
    assert listed(store) == winners


def test_concurrent_creates_of_distinct_subscribers_all_succeed(store: DataDriver) -> None:
    per_thread = 10

    def creator(t: int) -> Callable[[], list[str]]:
        return lambda: [subscribe(store, f"http://example.com/{t}/{n}") for n in range(per_thread)]

    results = _run_together([creator(t) for t in range(THREADS)])
    every = [sid for created in results for sid in created]
    assert len(set(every)) == THREADS * per_thread
    for created in results:
        assert created == sorted(created), "a thread's ids are out of creation order"
    assert list_all(store, page_size=7) == sorted(every)
    assert len(store.subscriptions.live(PROJECT, QUEUE)) == THREADS * per_thread
