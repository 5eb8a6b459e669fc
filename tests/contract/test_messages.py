"""Contract: posting, reading, listing, deleting and popping messages (base.MessageController)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import FakeClock
from tests.contract.helpers import (
    ID_PATTERN,
    MALFORMED_ID,
    PROJECT,
    QUEUE,
    claim,
    ids,
    list_all,
    post,
    post_n,
)
from zaqar.storage import errors
from zaqar.storage.base import Capability, DataDriver, MessageDraft

needs_claims = pytest.mark.requires(Capability.CLAIMS)


def _exists(store: DataDriver, mid: str, queue: str = QUEUE) -> bool:
    return bool(store.messages.get_many(PROJECT, queue, [mid]))


# -- post ------------------------------------------------------------------------


def test_post_returns_one_id_per_draft_in_order(store: DataDriver) -> None:
    posted = post(store, "a", "b", "c")
    assert len(posted) == 3
    listed = store.messages.list(PROJECT, QUEUE)
    assert ids(listed) == posted
    assert [m.body for m in listed] == ["a", "b", "c"]


def test_ids_are_url_safe(store: DataDriver) -> None:
    for mid in post_n(store, 5):
        assert ID_PATTERN.match(mid), mid


def test_ids_are_unique_within_a_queue(store: DataDriver) -> None:
    posted = post_n(store, 10) + post_n(store, 10) + post_n(store, 1)
    assert len(set(posted)) == 21


def test_post_creates_missing_queue_with_empty_metadata(store: DataDriver) -> None:
    post(store, "x")
    assert store.queues.exists(PROJECT, QUEUE) is True
    assert store.queues.get_metadata(PROJECT, QUEUE) == {}


def test_post_to_existing_queue_keeps_its_metadata(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {"a": 1})
    post(store, "x")
    assert store.queues.get_metadata(PROJECT, QUEUE) == {"a": 1}


@pytest.mark.parametrize(
    "body",
    [
        None,
        "",
        "plain string",
        0,
        -17,
        2**53,
        1.5,
        True,
        False,
        [],
        {},
        [1, "two", None, [3.25]],
        {"event": "BackupStarted", "nested": {"deep": {"list": [{"k": None}], "flag": True}}},
        'żółw ☃ 🐢 \u0000 \n\t "quoted" \\',
        {"ключ": "値", "emoji 🐢": ["ü"]},
    ],
)
def test_body_round_trips_exactly(store: DataDriver, body: Any) -> None:
    (mid,) = post(store, body)
    got = store.messages.get(PROJECT, QUEUE, mid).body
    assert got == body
    assert type(got) is type(body)
    assert store.messages.list(PROJECT, QUEUE)[0].body == body


def test_posted_message_reports_its_fields(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, {"k": "v"}, ttl=120, client_id="client-1")
    message = store.messages.get(PROJECT, QUEUE, mid)
    assert message.id == mid
    assert message.body == {"k": "v"}
    assert message.ttl == 120
    assert message.age == 0
    assert message.created == pytest.approx(clock.now)
    assert message.claim_id is None
    assert message.claimed is False
    assert message.claim_count == 0
    assert message.client_id == "client-1"


def test_message_without_client_id_reports_none(store: DataDriver) -> None:
    (mid,) = post(store, "x", client_id=None)
    assert store.messages.get(PROJECT, QUEUE, mid).client_id is None


def test_drafts_of_one_post_keep_their_own_ttl(store: DataDriver) -> None:
    drafts = [MessageDraft(body="short", ttl=60), MessageDraft(body="long", ttl=600)]
    short, long = store.messages.post(PROJECT, QUEUE, drafts, None)
    assert store.messages.get(PROJECT, QUEUE, short).ttl == 60
    assert store.messages.get(PROJECT, QUEUE, long).ttl == 600


# -- list ------------------------------------------------------------------------


def test_list_is_fifo_across_posts_at_the_same_instant(store: DataDriver) -> None:
    posted: list[str] = []
    for i in range(6):
        posted += post(store, f"m{i}")
    assert ids(store.messages.list(PROJECT, QUEUE)) == posted


def test_list_of_missing_queue_is_empty(store: DataDriver) -> None:
    assert store.messages.list(PROJECT, "missing") == []


def test_list_limit(store: DataDriver) -> None:
    posted = post_n(store, 5)
    assert ids(store.messages.list(PROJECT, QUEUE, limit=2)) == posted[:2]


def test_list_default_limit_is_ten(store: DataDriver) -> None:
    posted = post_n(store, 12)
    assert ids(store.messages.list(PROJECT, QUEUE)) == posted[:10]


def test_list_pages_with_last_id_as_marker_until_empty_page(store: DataDriver) -> None:
    posted = post_n(store, 25)
    sizes: list[int] = []
    marker: str | None = None
    seen: list[str] = []
    while page := store.messages.list(PROJECT, QUEUE, marker=marker, limit=10):
        sizes.append(len(page))
        seen += ids(page)
        marker = page[-1].id
    assert sizes == [10, 10, 5]
    assert seen == posted


def test_list_all_pages_cover_every_message_in_order(store: DataDriver) -> None:
    posted = post_n(store, 23)
    assert ids(list_all(store, page_size=7)) == posted


def test_marker_after_the_first_message_skips_only_it(store: DataDriver) -> None:
    posted = post_n(store, 4)
    assert ids(store.messages.list(PROJECT, QUEUE, marker=posted[0])) == posted[1:]


def test_marker_of_the_last_message_gives_empty_page(store: DataDriver) -> None:
    posted = post_n(store, 3)
    assert store.messages.list(PROJECT, QUEUE, marker=posted[-1]) == []


def test_marker_of_a_deleted_message_still_positions(store: DataDriver) -> None:
    posted = post_n(store, 5)
    store.messages.delete(PROJECT, QUEUE, posted[1])
    assert ids(store.messages.list(PROJECT, QUEUE, marker=posted[1])) == posted[2:]


def test_marker_of_an_expired_message_still_positions(store: DataDriver, clock: FakeClock) -> None:
    (gone,) = post(store, "short", ttl=60)
    rest = post_n(store, 3, ttl=600)
    clock.advance(61)
    assert ids(store.messages.list(PROJECT, QUEUE, marker=gone)) == rest


def test_marker_of_a_popped_message_still_positions(store: DataDriver) -> None:
    posted = post_n(store, 4)
    store.messages.pop(PROJECT, QUEUE, 2)
    assert ids(store.messages.list(PROJECT, QUEUE, marker=posted[1])) == posted[2:]


@needs_claims
def test_marker_of_a_claimed_message_still_positions(store: DataDriver) -> None:
    posted = post_n(store, 4)
    claim(store, limit=2)
    assert ids(store.messages.list(PROJECT, QUEUE, marker=posted[1])) == posted[2:]


def test_marker_positions_messages_posted_later(store: DataDriver) -> None:
    (first,) = post(store, "a")
    later = post(store, "b", "c")
    assert ids(store.messages.list(PROJECT, QUEUE, marker=first)) == later


@pytest.mark.parametrize("marker", ["abc", "", MALFORMED_ID, "-", "0"])
def test_bogus_marker_gives_empty_page(store: DataDriver, marker: str) -> None:
    post_n(store, 3)
    assert store.messages.list(PROJECT, QUEUE, marker=marker) == []


@pytest.mark.parametrize("delta", [-3, 5])
def test_hex_marker_of_another_length_gives_empty_page(store: DataDriver, delta: int) -> None:
    posted = post_n(store, 3)
    length = max(1, len(posted[0]) + delta)
    marker = ("0123456789abcdef" * (length // 16 + 1))[:length]
    assert store.messages.list(PROJECT, QUEUE, marker=marker) == []


def test_echo_false_hides_messages_of_the_same_client(store: DataDriver) -> None:
    post(store, "mine", client_id="me")
    (theirs,) = post(store, "theirs", client_id="other")
    listed = store.messages.list(PROJECT, QUEUE, echo=False, client_id="me")
    assert ids(listed) == [theirs]


def test_echo_true_shows_messages_of_the_same_client(store: DataDriver) -> None:
    posted = post(store, "mine", client_id="me") + post(store, "theirs", client_id="other")
    assert ids(store.messages.list(PROJECT, QUEUE, echo=True, client_id="me")) == posted


def test_echo_hiding_does_not_shorten_the_page(store: DataDriver) -> None:
    post_n(store, 3, client_id="me")
    theirs = post_n(store, 3, client_id="other")
    listed = store.messages.list(PROJECT, QUEUE, limit=2, echo=False, client_id="me")
    assert ids(listed) == theirs[:2]


@needs_claims
def test_claimed_messages_are_hidden_unless_included(store: DataDriver) -> None:
    posted = post_n(store, 3)
    cid, _ = claim(store, limit=1)
    assert ids(store.messages.list(PROJECT, QUEUE)) == posted[1:]
    listed = store.messages.list(PROJECT, QUEUE, include_claimed=True)
    assert ids(listed) == posted
    assert (listed[0].claimed, listed[0].claim_id) == (True, cid)
    assert (listed[1].claimed, listed[1].claim_id) == (False, None)


def test_delayed_messages_are_hidden_unless_included(store: DataDriver) -> None:
    (now,) = post(store, "now")
    (later,) = post(store, "later", delay=30)
    assert ids(store.messages.list(PROJECT, QUEUE)) == [now]
    assert ids(store.messages.list(PROJECT, QUEUE, include_delayed=True)) == [now, later]


def test_delayed_message_appears_once_its_delay_elapsed(store: DataDriver, clock: FakeClock) -> None:
    (later,) = post(store, "later", delay=30)
    clock.advance(29)
    assert store.messages.list(PROJECT, QUEUE) == []
    clock.advance(2)
    assert ids(store.messages.list(PROJECT, QUEUE)) == [later]


def test_delayed_message_keeps_its_place_in_post_order(store: DataDriver, clock: FakeClock) -> None:
    (delayed,) = post(store, "delayed", delay=30)
    (plain,) = post(store, "plain")
    clock.advance(31)
    assert ids(store.messages.list(PROJECT, QUEUE)) == [delayed, plain]


# -- ttl and age -----------------------------------------------------------------


def test_message_lives_until_its_ttl(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=60)
    clock.advance(59)
    message = store.messages.get(PROJECT, QUEUE, mid)
    assert (message.ttl, message.age) == (60, 59)
    assert ids(store.messages.list(PROJECT, QUEUE)) == [mid]


def test_expired_message_is_gone_everywhere(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=60)
    clock.advance(61)
    assert store.messages.list(PROJECT, QUEUE, include_claimed=True, include_delayed=True) == []
    with pytest.raises(errors.MessageDoesNotExist):
        store.messages.get(PROJECT, QUEUE, mid)
    assert store.messages.get_many(PROJECT, QUEUE, [mid]) == []
    assert store.queues.stats(PROJECT, QUEUE).total == 0
    assert store.messages.pop(PROJECT, QUEUE, 10) == []


def test_expiry_affects_only_expired_messages(store: DataDriver, clock: FakeClock) -> None:
    post(store, "short", ttl=60)
    (long,) = post(store, "long", ttl=120)
    clock.advance(61)
    assert ids(store.messages.list(PROJECT, QUEUE)) == [long]


def test_age_grows_with_the_clock(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x")
    clock.advance(42)
    assert store.messages.get(PROJECT, QUEUE, mid).age == 42
    assert store.messages.list(PROJECT, QUEUE)[0].age == 42
    assert store.messages.get_many(PROJECT, QUEUE, [mid])[0].age == 42


def test_age_is_whole_seconds_rounded_down(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x")
    clock.advance(7.9)
    assert store.messages.get(PROJECT, QUEUE, mid).age == 7


# -- get / get_many --------------------------------------------------------------


def test_get_returns_the_message(store: DataDriver) -> None:
    _, mid = post(store, "a", "b")
    message = store.messages.get(PROJECT, QUEUE, mid)
    assert (message.id, message.body) == (mid, "b")


@pytest.mark.parametrize("mid", ["abc", "", MALFORMED_ID])
def test_get_of_unknown_or_malformed_id_raises(store: DataDriver, mid: str) -> None:
    post(store, "x")
    with pytest.raises(errors.MessageDoesNotExist):
        store.messages.get(PROJECT, QUEUE, mid)


def test_get_of_deleted_message_raises(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    store.messages.delete(PROJECT, QUEUE, mid)
    with pytest.raises(errors.MessageDoesNotExist):
        store.messages.get(PROJECT, QUEUE, mid)


def test_get_is_scoped_by_queue_and_project(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    post(store, "y", queue="other")
    post(store, "z", project="other")
    for project, queue in [(PROJECT, "other"), ("other", QUEUE), (None, QUEUE)]:
        with pytest.raises(errors.MessageDoesNotExist):
            store.messages.get(project, queue, mid)
        assert store.messages.get_many(project, queue, [mid]) == []


@needs_claims
def test_get_returns_claimed_message(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    cid, _ = claim(store)
    message = store.messages.get(PROJECT, QUEUE, mid)
    assert (message.claimed, message.claim_id) == (True, cid)


def test_get_returns_delayed_message(store: DataDriver) -> None:
    (mid,) = post(store, "x", delay=30)
    assert store.messages.get(PROJECT, QUEUE, mid).body == "x"


def test_get_many_returns_the_known_ids(store: DataDriver) -> None:
    posted = post_n(store, 4)
    got = store.messages.get_many(PROJECT, QUEUE, [posted[2], posted[0]])
    assert sorted(ids(got)) == sorted([posted[0], posted[2]])


def test_get_many_skips_unknown_and_malformed_ids(store: DataDriver) -> None:
    a, b = post(store, "a", "b")
    store.messages.delete(PROJECT, QUEUE, b)
    got = store.messages.get_many(PROJECT, QUEUE, ["abc", MALFORMED_ID, "", a, b])
    assert ids(got) == [a]


@needs_claims
def test_get_many_returns_claimed_and_delayed_messages(store: DataDriver) -> None:
    (claimed,) = post(store, "claimed")
    claim(store)
    (delayed,) = post(store, "delayed", delay=30)
    got = store.messages.get_many(PROJECT, QUEUE, [claimed, delayed])
    assert sorted(ids(got)) == sorted([claimed, delayed])


def test_get_many_of_missing_queue_is_empty(store: DataDriver) -> None:
    assert store.messages.get_many(PROJECT, "missing", ["abc"]) == []


def test_get_many_of_no_ids_is_empty(store: DataDriver) -> None:
    post(store, "x")
    assert store.messages.get_many(PROJECT, QUEUE, []) == []


# -- delete (single) -------------------------------------------------------------


def test_delete_removes_a_free_message(store: DataDriver) -> None:
    a, b = post(store, "a", "b")
    store.messages.delete(PROJECT, QUEUE, a)
    assert ids(store.messages.list(PROJECT, QUEUE)) == [b]
    assert store.queues.stats(PROJECT, QUEUE).total == 1


@pytest.mark.parametrize("mid", ["abc", "", MALFORMED_ID])
def test_delete_of_missing_message_is_fine(store: DataDriver, mid: str) -> None:
    post(store, "x")
    store.messages.delete(PROJECT, QUEUE, mid)
    store.messages.delete(PROJECT, "missing-queue", mid)
    assert store.queues.stats(PROJECT, QUEUE).total == 1


def test_delete_twice_is_fine(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    store.messages.delete(PROJECT, QUEUE, mid)
    store.messages.delete(PROJECT, QUEUE, mid)
    assert not _exists(store, mid)


def test_delete_is_scoped_by_queue(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    store.messages.delete(PROJECT, "other", mid)
    store.messages.delete("other", QUEUE, mid)
    assert _exists(store, mid)


@needs_claims
def test_delete_without_claim_id_of_claimed_message_raises(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    claim(store)
    with pytest.raises(errors.MessageIsClaimed):
        store.messages.delete(PROJECT, QUEUE, mid)
    assert _exists(store, mid)


@needs_claims
def test_delete_without_claim_id_after_claim_expired(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=1000)
    claim(store, ttl=100)
    clock.advance(101)
    store.messages.delete(PROJECT, QUEUE, mid)
    assert not _exists(store, mid)


@needs_claims
def test_delete_with_own_live_claim_id(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    cid, _ = claim(store)
    assert cid is not None
    store.messages.delete(PROJECT, QUEUE, mid, claim_id=cid)
    assert not _exists(store, mid)


@needs_claims
def test_delete_with_own_claim_id_after_it_expired(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=1000)
    cid, _ = claim(store, ttl=100)
    assert cid is not None
    clock.advance(101)
    store.messages.delete(PROJECT, QUEUE, mid, claim_id=cid)
    assert not _exists(store, mid)


@needs_claims
def test_delete_with_other_live_claim_of_the_queue_raises_is_claimed(store: DataDriver) -> None:
    (mine,) = post(store, "mine")
    mine_cid, _ = claim(store)
    post(store, "other")
    other_cid, _ = claim(store)
    assert other_cid is not None and other_cid != mine_cid
    with pytest.raises(errors.MessageIsClaimed):
        store.messages.delete(PROJECT, QUEUE, mine, claim_id=other_cid)
    assert _exists(store, mine)


@needs_claims
def test_delete_with_lapsed_claim_after_reclaim_raises_not_live(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=1000)
    old_cid, _ = claim(store, ttl=100)
    assert old_cid is not None
    clock.advance(101)
    new_cid, _ = claim(store, ttl=100)
    assert new_cid is not None and new_cid != old_cid
    with pytest.raises(errors.ClaimNotLive):
        store.messages.delete(PROJECT, QUEUE, mid, claim_id=old_cid)
    assert _exists(store, mid)


@needs_claims
def test_delete_with_released_claim_while_claimed_by_another_raises_not_live(store: DataDriver) -> None:
    post(store, "x")
    (mid,) = post(store, "y")
    released_cid, _ = claim(store, limit=1)
    live_cid, live = claim(store, limit=1)
    assert released_cid is not None and ids(live) == [mid]
    store.claims.delete(PROJECT, QUEUE, released_cid)
    with pytest.raises(errors.ClaimNotLive):
        store.messages.delete(PROJECT, QUEUE, mid, claim_id=released_cid)
    assert _exists(store, mid)


@needs_claims
def test_delete_with_claim_of_another_queue_raises_not_live(store: DataDriver) -> None:
    post(store, "elsewhere", queue="other")
    foreign_cid, _ = claim(store, queue="other")
    assert foreign_cid is not None
    (mid,) = post(store, "x")
    claim(store)
    with pytest.raises(errors.ClaimNotLive):
        store.messages.delete(PROJECT, QUEUE, mid, claim_id=foreign_cid)
    assert _exists(store, mid)


@needs_claims
@pytest.mark.parametrize("bogus", ["abc", MALFORMED_ID, ""])
def test_delete_with_unknown_claim_id_of_claimed_message_raises_not_live(
    store: DataDriver, bogus: str
) -> None:
    (mid,) = post(store, "x")
    claim(store)
    with pytest.raises(errors.ClaimNotLive):
        store.messages.delete(PROJECT, QUEUE, mid, claim_id=bogus)
    assert _exists(store, mid)


def test_delete_with_malformed_claim_id_of_free_message_raises_not_live(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    with pytest.raises(errors.ClaimNotLive):
        store.messages.delete(PROJECT, QUEUE, mid, claim_id=MALFORMED_ID)
    assert _exists(store, mid)


@needs_claims
def test_delete_with_live_claim_id_of_never_claimed_message_raises_not_claimed(store: DataDriver) -> None:
    post(store, "claimed")
    cid, _ = claim(store)
    assert cid is not None
    (free,) = post(store, "free")
    with pytest.raises(errors.MessageNotClaimed):
        store.messages.delete(PROJECT, QUEUE, free, claim_id=cid)
    assert _exists(store, free)


@needs_claims
def test_delete_with_released_claims_own_id_raises_not_claimed(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    cid, _ = claim(store)
    assert cid is not None
    store.claims.delete(PROJECT, QUEUE, cid)
    with pytest.raises(errors.MessageNotClaimed):
        store.messages.delete(PROJECT, QUEUE, mid, claim_id=cid)
    assert _exists(store, mid)


@needs_claims
def test_delete_with_live_claim_id_of_message_whose_claim_expired_raises_not_claimed(
    store: DataDriver, clock: FakeClock
) -> None:
    mid, _ = post(store, "x", "y", ttl=1000)
    claim(store, ttl=100, limit=1)
    live_cid, _ = claim(store, ttl=500, limit=1)
    assert live_cid is not None
    clock.advance(101)
    with pytest.raises(errors.MessageNotClaimed):
        store.messages.delete(PROJECT, QUEUE, mid, claim_id=live_cid)
    assert _exists(store, mid)


# -- delete_many -----------------------------------------------------------------


def test_delete_many_removes_the_given_messages(store: DataDriver) -> None:
    a, b, c = post(store, "a", "b", "c")
    store.messages.delete_many(PROJECT, QUEUE, [a, c])
    assert ids(store.messages.list(PROJECT, QUEUE)) == [b]


def test_delete_many_ignores_unknown_and_malformed_ids(store: DataDriver) -> None:
    a, b = post(store, "a", "b")
    store.messages.delete_many(PROJECT, QUEUE, ["abc", MALFORMED_ID, a])
    assert ids(store.messages.list(PROJECT, QUEUE)) == [b]


def test_delete_many_on_missing_queue_is_fine(store: DataDriver) -> None:
    store.messages.delete_many(PROJECT, "missing", ["abc"])
    assert store.queues.exists(PROJECT, "missing") is False


def test_delete_many_is_scoped_by_queue(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    store.messages.delete_many(PROJECT, "other", [mid])
    store.messages.delete_many("other", QUEUE, [mid])
    assert _exists(store, mid)


@needs_claims
def test_delete_many_ignores_claims(store: DataDriver) -> None:
    claimed, free = post(store, "claimed", "free")
    claim(store, limit=1)
    store.messages.delete_many(PROJECT, QUEUE, [claimed, free])
    assert store.messages.get_many(PROJECT, QUEUE, [claimed, free]) == []


@needs_claims
def test_delete_many_with_matching_claim_ids(store: DataDriver) -> None:
    a, b, c = post(store, "a", "b", "c")
    cid, _ = claim(store, limit=2)
    assert cid is not None
    store.messages.delete_many(PROJECT, QUEUE, [a, b], claim_ids=[cid])
    assert ids(store.messages.list(PROJECT, QUEUE, include_claimed=True)) == [c]


@needs_claims
def test_delete_many_with_claim_of_untargeted_message_deletes_nothing(store: DataDriver) -> None:
    a, b, c = post(store, "a", "b", "c")
    first_cid, _ = claim(store, limit=1)
    other_cid, _ = claim(store, limit=1)
    assert first_cid is not None and other_cid is not None
    with pytest.raises(errors.ClaimDoesNotExist):
        store.messages.delete_many(PROJECT, QUEUE, [a, c], claim_ids=[other_cid])
    assert ids(store.messages.list(PROJECT, QUEUE, include_claimed=True)) == [a, b, c]


@needs_claims
@pytest.mark.parametrize("bogus", ["abc", MALFORMED_ID])
def test_delete_many_with_one_unknown_claim_id_deletes_nothing(store: DataDriver, bogus: str) -> None:
    a, b = post(store, "a", "b")
    cid, _ = claim(store)
    assert cid is not None
    with pytest.raises(errors.ClaimDoesNotExist):
        store.messages.delete_many(PROJECT, QUEUE, [a, b], claim_ids=[cid, bogus])
    assert ids(store.messages.list(PROJECT, QUEUE, include_claimed=True)) == [a, b]


@needs_claims
def test_delete_many_with_expired_claim_id_deletes_nothing(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=1000)
    cid, _ = claim(store, ttl=100)
    assert cid is not None
    clock.advance(101)
    with pytest.raises(errors.ClaimDoesNotExist):
        store.messages.delete_many(PROJECT, QUEUE, [mid], claim_ids=[cid])
    assert _exists(store, mid)


# -- pop -------------------------------------------------------------------------


def test_pop_returns_oldest_first_in_post_order(store: DataDriver) -> None:
    posted = post_n(store, 5)
    popped = store.messages.pop(PROJECT, QUEUE, 3)
    assert ids(popped) == posted[:3]
    assert [m.body for m in popped] == [0, 1, 2]


def test_pop_removes_the_messages(store: DataDriver) -> None:
    posted = post_n(store, 5)
    store.messages.pop(PROJECT, QUEUE, 3)
    assert ids(store.messages.list(PROJECT, QUEUE)) == posted[3:]
    assert store.messages.get_many(PROJECT, QUEUE, posted[:3]) == []
    assert store.queues.stats(PROJECT, QUEUE).total == 2


def test_pop_more_than_available_returns_all(store: DataDriver) -> None:
    posted = post_n(store, 2)
    assert ids(store.messages.pop(PROJECT, QUEUE, 10)) == posted
    assert store.messages.pop(PROJECT, QUEUE, 10) == []


def test_pop_of_empty_or_missing_queue_is_empty(store: DataDriver) -> None:
    store.queues.create(PROJECT, QUEUE, {})
    assert store.messages.pop(PROJECT, QUEUE, 5) == []
    assert store.messages.pop(PROJECT, "missing", 5) == []


def test_popped_message_reports_its_fields(store: DataDriver, clock: FakeClock) -> None:
    post(store, {"k": 1}, ttl=120, client_id="c")
    clock.advance(10)
    (popped,) = store.messages.pop(PROJECT, QUEUE, 1)
    assert popped.body == {"k": 1}
    assert (popped.ttl, popped.age) == (120, 10)
    assert (popped.claim_id, popped.claimed, popped.claim_count) == (None, False, 0)


@needs_claims
def test_pop_skips_claimed_messages(store: DataDriver) -> None:
    posted = post_n(store, 4)
    claim(store, limit=2)
    assert ids(store.messages.pop(PROJECT, QUEUE, 10)) == posted[2:]
    assert sorted(ids(store.messages.get_many(PROJECT, QUEUE, posted))) == sorted(posted[:2])


@needs_claims
def test_pop_takes_messages_whose_claim_expired(store: DataDriver, clock: FakeClock) -> None:
    posted = post_n(store, 2, ttl=1000)
    claim(store, ttl=100, limit=1)
    clock.advance(101)
    assert ids(store.messages.pop(PROJECT, QUEUE, 10)) == posted


def test_pop_ignores_delay_and_echo(store: DataDriver) -> None:
    posted = post(store, "delayed", delay=30, client_id="me") + post(store, "plain", client_id="me")
    assert ids(store.messages.pop(PROJECT, QUEUE, 10)) == posted


def test_pop_skips_expired_messages(store: DataDriver, clock: FakeClock) -> None:
    post(store, "short", ttl=60)
    (long,) = post(store, "long", ttl=600)
    clock.advance(61)
    assert ids(store.messages.pop(PROJECT, QUEUE, 10)) == [long]


def test_pop_is_scoped_by_queue_and_project(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    assert store.messages.pop(PROJECT, "other", 5) == []
    assert store.messages.pop("other", QUEUE, 5) == []
    assert store.messages.pop(None, QUEUE, 5) == []
    assert _exists(store, mid)


# -- gc --------------------------------------------------------------------------


def test_gc_removes_expired_messages_and_counts_them(store: DataDriver, clock: FakeClock) -> None:
    post(store, "a", "b", ttl=60)
    (live,) = post(store, "c", ttl=600)
    clock.advance(61)
    assert store.gc() == 2
    assert ids(store.messages.list(PROJECT, QUEUE)) == [live]
    assert store.gc() == 0


@needs_claims
def test_gc_keeps_live_messages_and_claims(store: DataDriver) -> None:
    posted = post_n(store, 3)
    cid, _ = claim(store, limit=1)
    assert cid is not None
    assert store.gc() == 0
    assert ids(store.claims.get(PROJECT, QUEUE, cid).messages) == posted[:1]
    assert ids(store.messages.list(PROJECT, QUEUE, include_claimed=True)) == posted


@needs_claims
def test_gc_keeps_expired_claim_id_usable_for_delete(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=1000)
    cid, _ = claim(store, ttl=100)
    assert cid is not None
    clock.advance(101)
    store.gc()
    assert store.messages.get(PROJECT, QUEUE, mid).claim_id == cid
    store.messages.delete(PROJECT, QUEUE, mid, claim_id=cid)
    assert not _exists(store, mid)
