"""Contract: moving over-claimed messages to a dead-letter queue (ClaimController.create)."""

from __future__ import annotations

import pytest

from tests.conftest import FakeClock
from tests.contract.helpers import PROJECT, QUEUE, claim, ids, post
from zaqar.storage import errors
from zaqar.storage.base import Capability, DataDriver, DeadLetter

pytestmark = pytest.mark.requires(Capability.CLAIMS)

DLQ = "dlq"
DEAD_LETTER = DeadLetter(queue=DLQ, max_claim_count=2)


def _claim_and_release(
    store: DataDriver, dead_letter: DeadLetter = DEAD_LETTER, limit: int = 10
) -> list[str]:
    """Claim with dead-lettering, release at once; return the ids that were claimed."""
    cid, messages = claim(store, limit=limit, dead_letter=dead_letter)
    if cid is not None:
        store.claims.delete(PROJECT, QUEUE, cid)
    return ids(messages)


def _exhaust(store: DataDriver, dead_letter: DeadLetter = DEAD_LETTER) -> None:
    """Claim (and release) until the queue's only message reached max_claim_count."""
    for _ in range(dead_letter.max_claim_count):
        assert len(_claim_and_release(store, dead_letter)) == 1


def test_each_claim_increments_claim_count(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    _claim_and_release(store)
    assert store.messages.get(PROJECT, QUEUE, mid).claim_count == 1
    _claim_and_release(store)
    assert store.messages.get(PROJECT, QUEUE, mid).claim_count == 2


def test_message_is_claimed_at_most_max_claim_count_times(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    deliveries = sum(_claim_and_release(store).count(mid) for _ in range(5))
    assert deliveries == 2


def test_claim_past_the_maximum_moves_the_message_instead(store: DataDriver) -> None:
    (mid,) = post(store, {"payload": [1, 2]})
    _exhaust(store)
    assert claim(store, dead_letter=DEAD_LETTER) == (None, [])
    moved = store.messages.get(PROJECT, DLQ, mid)
    assert moved.body == {"payload": [1, 2]}
    assert moved.claim_count == 2
    assert (moved.claimed, moved.claim_id) == (False, None)


def test_moved_message_leaves_the_source_queue(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    _exhaust(store)
    claim(store, dead_letter=DEAD_LETTER)
    with pytest.raises(errors.MessageDoesNotExist):
        store.messages.get(PROJECT, QUEUE, mid)
    assert store.messages.list(PROJECT, QUEUE, include_claimed=True) == []
    assert store.queues.stats(PROJECT, QUEUE).total == 0


def test_moved_message_appears_in_dead_letter_listing_and_record(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    _exhaust(store)
    claim(store, dead_letter=DEAD_LETTER)
    assert store.queues.exists(PROJECT, DLQ) is True
    assert ids(store.messages.list(PROJECT, DLQ)) == [mid]
    assert store.queues.stats(PROJECT, DLQ).total == 1


def test_moved_message_is_appended_after_existing_dead_letters(store: DataDriver) -> None:
    # NOTE: compared by body: a pooled store may have placed the dead-letter queue on another pool
    # than the source, and a message carried across pools gets a new id there (pooling/messages.py).
    post(store, "already dead", queue=DLQ)
    post(store, "x")
    _exhaust(store)
    claim(store, dead_letter=DEAD_LETTER)
    assert [m.body for m in store.messages.list(PROJECT, DLQ)] == ["already dead", "x"]


def test_dead_letter_queue_keeps_its_metadata(store: DataDriver) -> None:
    store.queues.create(PROJECT, DLQ, {"kind": "dead"})
    post(store, "x")
    _exhaust(store)
    claim(store, dead_letter=DEAD_LETTER)
    assert store.queues.get_metadata(PROJECT, DLQ) == {"kind": "dead"}


def test_dead_letter_queue_is_in_the_same_project(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    _exhaust(store)
    claim(store, dead_letter=DEAD_LETTER)
    assert store.queues.exists("other", DLQ) is False
    assert store.queues.exists(None, DLQ) is False
    assert store.messages.get_many(None, DLQ, [mid]) == []


def test_claim_returns_fresh_messages_and_moves_exhausted_ones(store: DataDriver) -> None:
    (exhausted,) = post(store, "old")
    _exhaust(store)
    (fresh,) = post(store, "new")
    cid, messages = claim(store, dead_letter=DEAD_LETTER)
    assert cid is not None
    assert ids(messages) == [fresh]
    assert ids(store.messages.list(PROJECT, DLQ)) == [exhausted]


def test_claim_count_keeps_counting_across_expired_claims(store: DataDriver, clock: FakeClock) -> None:
    (mid,) = post(store, "x", ttl=10_000)
    for _ in range(2):
        assert ids(claim(store, ttl=100, dead_letter=DEAD_LETTER)[1]) == [mid]
        clock.advance(101)
    assert claim(store, dead_letter=DEAD_LETTER) == (None, [])
    assert store.messages.get(PROJECT, DLQ, mid).claim_count == 2


def test_dead_letter_ttl_shortens_the_moved_message_life(store: DataDriver, clock: FakeClock) -> None:
    dead_letter = DeadLetter(queue=DLQ, max_claim_count=2, ttl=120)
    (mid,) = post(store, "x", ttl=300)
    _exhaust(store, dead_letter)
    claim(store, dead_letter=dead_letter)
    clock.advance(119)
    assert ids(store.messages.list(PROJECT, DLQ)) == [mid]
    clock.advance(2)
    assert store.messages.list(PROJECT, DLQ) == []
    assert store.messages.get_many(PROJECT, DLQ, [mid]) == []


def test_dead_letter_ttl_lengthens_the_moved_message_life(store: DataDriver, clock: FakeClock) -> None:
    dead_letter = DeadLetter(queue=DLQ, max_claim_count=2, ttl=1000)
    (mid,) = post(store, "x", ttl=300)
    _exhaust(store, dead_letter)
    claim(store, dead_letter=dead_letter)
    clock.advance(500)
    assert ids(store.messages.list(PROJECT, DLQ)) == [mid]
    clock.advance(501)
    assert store.messages.get_many(PROJECT, DLQ, [mid]) == []


def test_claim_count_stays_zero_without_dead_letter(store: DataDriver) -> None:
    (mid,) = post(store, "x")
    for _ in range(3):
        cid, messages = claim(store)
        assert ids(messages) == [mid]
        assert cid is not None
        store.claims.delete(PROJECT, QUEUE, cid)
    assert store.messages.get(PROJECT, QUEUE, mid).claim_count == 0
    assert store.queues.exists(PROJECT, DLQ) is False
