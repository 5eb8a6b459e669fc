"""Contract: claims, their expiry, release and message TTL extension (base.ClaimController)."""

from __future__ import annotations

import pytest

from tests.conftest import FakeClock
from tests.contract.helpers import MALFORMED_ID, PROJECT, QUEUE, claim, ids, post, post_n
from zaqar.storage import errors
from zaqar.storage.base import Capability, DataDriver

pytestmark = pytest.mark.requires(Capability.CLAIMS)


def _live_claim(store: DataDriver, **kwargs: int) -> str:
    cid, messages = claim(store, **kwargs)
    assert cid is not None and messages
    return cid


# -- create ----------------------------------------------------------------------


def test_create_claims_oldest_first_up_to_limit(store: DataDriver) -> None:
    posted = post_n(store, 5)
    cid, messages = claim(store, limit=3)
    assert cid is not None
    assert ids(messages) == posted[:3]
    assert [m.body for m in messages] == [0, 1, 2]


def test_successive_claims_take_the_next_messages(store: DataDriver) -> None:
    posted = post_n(store, 5)
    first_cid, first = claim(store, limit=2)
    second_cid, second = claim(store, limit=2)
    third_cid, third = claim(store, limit=2)
    assert (ids(first), ids(second), ids(third)) == (posted[:2], posted[2:4], posted[4:])
    assert len({first_cid, second_cid, third_cid}) == 3


def test_claim_with_limit_above_available_takes_all(store: DataDriver) -> None:
    posted = post_n(store, 3)
    _, messages = claim(store, limit=10)
    assert ids(messages) == posted


def test_claimed_messages_report_the_claim(store: DataDriver) -> None:
    post(store, "x")
    cid, (message,) = claim(store)
    assert (message.claimed, message.claim_id) == (True, cid)
    got = store.messages.get(PROJECT, QUEUE, message.id)
    assert (got.claimed, got.claim_id) == (True, cid)


def test_claimed_message_keeps_body_and_age(store: DataDriver, clock: FakeClock) -> None:
    post(store, {"k": [1]})
    clock.advance(12)
    _, (message,) = claim(store)
    assert (message.body, message.age) == ({"k": [1]}, 12)


def test_claim_on_missing_queue_gives_nothing(store: DataDriver) -> None:
    assert claim(store, queue="missing") == (None, [])
    assert store.queues.exists(PROJECT, "missing") is False


def test_claim_on_empty_queue_gives_nothing(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {})
    assert claim(store) == (None, [])


def test_claim_when_everything_is_claimed_gives_nothing(store: DataDriver) -> None:
    post_n(store, 3)
    claim(store)
    assert claim(store) == (None, [])


def test_claim_skips_expired_messages(store: DataDriver, clock: FakeClock) -> None:
    post(store, "short", ttl=60)
    (long,) = post(store, "long", ttl=600)
    clock.advance(61)
    _, messages = claim(store)
    assert ids(messages) == [long]


def test_claim_is_scoped_by_queue_and_project(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    assert claim(store, queue="other") == (None, [])
    assert claim(store, project="other") == (None, [])
    assert claim(store, project=None) == (None, [])
    assert store.messages.get(PROJECT, QUEUE, mid).claimed is False


# -- hiding ----------------------------------------------------------------------


def test_claimed_messages_are_hidden_from_default_listing(store: DataDriver) -> None:
    posted = post_n(store, 3)
    claim(store, limit=2)
    assert ids(store.messages.list(PROJECT, QUEUE)) == posted[2:]
    assert ids(store.messages.list(PROJECT, QUEUE, include_claimed=True)) == posted


def test_claimed_messages_are_hidden_from_other_claims(store: DataDriver) -> None:
    posted = post_n(store, 3)
    claim(store, limit=2)
    _, messages = claim(store, limit=10)
    assert ids(messages) == posted[2:]


def test_claimed_messages_are_hidden_from_pop(store: DataDriver) -> None:
    posted = post_n(store, 3)
    claim(store, limit=2)
    assert ids(store.messages.pop(PROJECT, QUEUE, 10)) == posted[2:]


# -- get -------------------------------------------------------------------------


def test_get_returns_ttl_age_and_messages(store: DataDriver, clock: FakeClock) -> None:
    posted = post_n(store, 2)
    cid = _live_claim(store, ttl=100)
    clock.advance(30)
    got = store.claims.get(PROJECT, QUEUE, cid)
    assert (got.id, got.ttl, got.age) == (cid, 100, 30)
    assert sorted(ids(got.messages)) == sorted(posted)
    assert all(m.claimed and m.claim_id == cid for m in got.messages)


@pytest.mark.parametrize("cid", ["abc", "", MALFORMED_ID])
def test_get_of_unknown_or_malformed_id_raises(store: DataDriver, cid: str) -> None:
    post(store, "x")
    _live_claim(store)
    with pytest.raises(errors.ClaimDoesNotExist):
        store.claims.get(PROJECT, QUEUE, cid)


def test_get_is_scoped_by_queue_and_project(store: DataDriver) -> None:
    post(store, "x")
    cid = _live_claim(store)
    for project, queue in [(PROJECT, "other"), ("other", QUEUE), (None, QUEUE)]:
        with pytest.raises(errors.ClaimDoesNotExist):
            store.claims.get(project, queue, cid)


def test_get_lists_only_messages_that_still_exist(store: DataDriver) -> None:
    a, b = post(store, "a", "b")
    cid = _live_claim(store)
    store.messages.delete(PROJECT, QUEUE, a, claim_id=cid)
    assert ids(store.claims.get(PROJECT, QUEUE, cid).messages) == [b]


def test_get_raises_once_all_its_messages_are_deleted(store: DataDriver) -> None:
    a, b = post(store, "a", "b")
    cid = _live_claim(store)
    store.messages.delete(PROJECT, QUEUE, a, claim_id=cid)
    store.messages.delete_many(PROJECT, QUEUE, [b])
    with pytest.raises(errors.ClaimDoesNotExist):
        store.claims.get(PROJECT, QUEUE, cid)


# -- expiry ----------------------------------------------------------------------


def test_claim_lives_until_its_ttl(store: DataDriver, clock: FakeClock) -> None:
    post(store, "x", ttl=1000)
    cid = _live_claim(store, ttl=100)
    clock.advance(99)
    assert store.claims.get(PROJECT, QUEUE, cid).age == 99
    assert claim(store) == (None, [])


def test_expired_claim_cannot_be_read(store: DataDriver, clock: FakeClock) -> None:
    post(store, "x", ttl=1000)
    cid = _live_claim(store, ttl=100)
    clock.advance(101)
    with pytest.raises(errors.ClaimDoesNotExist):
        store.claims.get(PROJECT, QUEUE, cid)


def test_messages_of_expired_claim_are_available_again(store: DataDriver, clock: FakeClock) -> None:
    posted = post_n(store, 2, ttl=1000)
    old_cid = _live_claim(store, ttl=100)
    clock.advance(101)
    assert ids(store.messages.list(PROJECT, QUEUE)) == posted
    new_cid, messages = claim(store)
    assert ids(messages) == posted
    assert new_cid != old_cid


def test_message_of_expired_claim_keeps_claim_id_but_is_not_claimed(
    store: DataDriver, clock: FakeClock
) -> None:
    (mid,) = post(store, "x", ttl=1000)
    cid = _live_claim(store, ttl=100)
    clock.advance(101)
    message = store.messages.get(PROJECT, QUEUE, mid)
    assert (message.claim_id, message.claimed) == (cid, False)


def test_reclaimed_message_reports_the_new_claim(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=1000)
    _live_claim(store, ttl=100)
    clock.advance(101)
    new_cid = _live_claim(store, ttl=100)
    message = store.messages.get(PROJECT, QUEUE, mid)
    assert (message.claim_id, message.claimed) == (new_cid, True)


# -- update ----------------------------------------------------------------------


def test_update_restarts_age_and_sets_ttl(store: DataDriver, clock: FakeClock) -> None:
    post(store, "x", ttl=1000)
    cid = _live_claim(store, ttl=100)
    clock.advance(30)
    store.claims.update(PROJECT, QUEUE, cid, ttl=200, grace=60)
    got = store.claims.get(PROJECT, QUEUE, cid)
    assert (got.ttl, got.age) == (200, 0)
    clock.advance(5)
    assert store.claims.get(PROJECT, QUEUE, cid).age == 5


def test_update_moves_the_claim_expiry(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=1000)
    cid = _live_claim(store, ttl=100)
    clock.advance(90)
    store.claims.update(PROJECT, QUEUE, cid, ttl=100, grace=60)
    clock.advance(90)  # 180 s after the claim was made, 90 s after its renewal
    assert store.messages.get(PROJECT, QUEUE, mid).claimed is True
    assert claim(store) == (None, [])
    clock.advance(11)
    with pytest.raises(errors.ClaimDoesNotExist):
        store.claims.get(PROJECT, QUEUE, cid)
    assert store.messages.get(PROJECT, QUEUE, mid).claimed is False


@pytest.mark.parametrize("cid", ["abc", MALFORMED_ID])
def test_update_of_unknown_claim_raises(store: DataDriver, cid: str) -> None:
    post(store, "x")
    with pytest.raises(errors.ClaimDoesNotExist):
        store.claims.update(PROJECT, QUEUE, cid, ttl=100, grace=60)


def test_update_of_expired_claim_raises(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=1000)
    cid = _live_claim(store, ttl=100)
    clock.advance(101)
    with pytest.raises(errors.ClaimDoesNotExist):
        store.claims.update(PROJECT, QUEUE, cid, ttl=100, grace=60)
    assert store.messages.get(PROJECT, QUEUE, mid).claimed is False


def test_update_of_released_claim_raises(store: DataDriver) -> None:
    post(store, "x")
    cid = _live_claim(store)
    store.claims.delete(PROJECT, QUEUE, cid)
    with pytest.raises(errors.ClaimDoesNotExist):
        store.claims.update(PROJECT, QUEUE, cid, ttl=100, grace=60)


# -- release ---------------------------------------------------------------------


def test_release_frees_messages_at_once(store: DataDriver) -> None:
    posted = post_n(store, 2)
    cid = _live_claim(store)
    store.claims.delete(PROJECT, QUEUE, cid)
    for mid in posted:
        message = store.messages.get(PROJECT, QUEUE, mid)
        assert (message.claim_id, message.claimed) == (None, False)
    assert ids(store.messages.list(PROJECT, QUEUE)) == posted
    assert store.queues.stats(PROJECT, QUEUE).claimed == 0


def test_released_messages_can_be_claimed_again(store: DataDriver) -> None:
    posted = post_n(store, 2)
    cid = _live_claim(store)
    store.claims.delete(PROJECT, QUEUE, cid)
    new_cid, messages = claim(store)
    assert ids(messages) == posted
    assert new_cid != cid


def test_released_messages_can_be_popped_and_deleted(store: DataDriver) -> None:
    a, b = post(store, "a", "b")
    cid = _live_claim(store)
    store.claims.delete(PROJECT, QUEUE, cid)
    store.messages.delete(PROJECT, QUEUE, a)
    assert ids(store.messages.pop(PROJECT, QUEUE, 5)) == [b]


def test_released_claim_cannot_be_read(store: DataDriver) -> None:
    post(store, "x")
    cid = _live_claim(store)
    store.claims.delete(PROJECT, QUEUE, cid)
    with pytest.raises(errors.ClaimDoesNotExist):
        store.claims.get(PROJECT, QUEUE, cid)


def test_release_touches_only_its_own_messages(store: DataDriver) -> None:
    a, b = post(store, "a", "b")
    first = _live_claim(store, limit=1)
    second = _live_claim(store, limit=1)
    store.claims.delete(PROJECT, QUEUE, first)
    assert store.messages.get(PROJECT, QUEUE, a).claimed is False
    got_b = store.messages.get(PROJECT, QUEUE, b)
    assert (got_b.claimed, got_b.claim_id) == (True, second)


@pytest.mark.parametrize("cid", ["abc", "", MALFORMED_ID])
def test_release_of_unknown_or_malformed_id_is_fine(store: DataDriver, cid: str) -> None:
    (mid,) = post(store, "x")
    live = _live_claim(store)
    store.claims.delete(PROJECT, QUEUE, cid)
    assert store.messages.get(PROJECT, QUEUE, mid).claim_id == live


def test_release_of_expired_claim_is_fine(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=1000)
    cid = _live_claim(store, ttl=100)
    clock.advance(101)
    store.claims.delete(PROJECT, QUEUE, cid)
    assert store.messages.get(PROJECT, QUEUE, mid).claimed is False


def test_release_through_another_queue_or_project_does_nothing(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    cid = _live_claim(store)
    store.claims.delete(PROJECT, "other", cid)
    store.claims.delete("other", QUEUE, cid)
    store.claims.delete(None, QUEUE, cid)
    assert store.messages.get(PROJECT, QUEUE, mid).claimed is True


# -- message ttl extension -------------------------------------------------------


def test_claim_extends_message_expiring_before_the_claim(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=60)
    _, (claimed,) = claim(store, ttl=100, grace=60)
    assert claimed.ttl == 160
    assert store.messages.get(PROJECT, QUEUE, mid).ttl == 160
    clock.advance(61)  # past the message's own ttl
    assert store.messages.get(PROJECT, QUEUE, mid).age == 61
    clock.advance(98)  # 159 s: the claim lapsed, the extension holds
    assert ids(store.messages.list(PROJECT, QUEUE)) == [mid]
    clock.advance(2)  # 161 s
    assert store.messages.get_many(PROJECT, QUEUE, [mid]) == []


def test_claim_leaves_message_expiring_after_the_claim(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=300)
    _, (claimed,) = claim(store, ttl=100, grace=60)
    assert claimed.ttl == 300
    assert store.messages.get(PROJECT, QUEUE, mid).ttl == 300


def test_claim_leaves_message_expiring_between_claim_expiry_and_grace(
    store: DataDriver, clock: FakeClock
) -> None:
    (mid,) = post(store, "x", ttl=120)
    _, (claimed,) = claim(store, ttl=100, grace=60)
    assert claimed.ttl == 120
    clock.advance(121)
    assert store.messages.get_many(PROJECT, QUEUE, [mid]) == []


def test_claim_extension_applies_per_message(store: DataDriver) -> None:
    short = post(store, "short", ttl=60)
    long = post(store, "long", ttl=600)
    _, messages = claim(store, ttl=100, grace=60)
    assert {m.id: m.ttl for m in messages} == {short[0]: 160, long[0]: 600}


def test_update_extends_message_expiring_before_the_renewed_claim(
    store: DataDriver, clock: FakeClock
) -> None:
    (mid,) = post(store, "x", ttl=60)
    cid = _live_claim(store, ttl=30, grace=60)  # expires before the message: no extension
    clock.advance(20)
    store.claims.update(PROJECT, QUEUE, cid, ttl=100, grace=60)  # claim now ends at 120 s
    assert store.messages.get(PROJECT, QUEUE, mid).ttl == 160
    clock.advance(150)  # 170 s after the post, message originally expired at 60 s
    assert store.messages.get(PROJECT, QUEUE, mid).body == "x"
    clock.advance(11)  # 181 s: past claim expiry + grace
    assert store.messages.get_many(PROJECT, QUEUE, [mid]) == []


# -- delay -----------------------------------------------------------------------


def test_delayed_messages_are_not_claimable_until_the_delay_elapsed(
    store: DataDriver, clock: FakeClock
) -> None:
    (delayed,) = post(store, "delayed", delay=30)
    (plain,) = post(store, "plain")
    _, messages = claim(store)
    assert ids(messages) == [plain]
    assert claim(store) == (None, [])
    clock.advance(31)
    _, messages = claim(store)
    assert ids(messages) == [delayed]
