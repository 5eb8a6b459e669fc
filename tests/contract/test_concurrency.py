"""Contract: claims, posts and pops stay atomic when threads share one driver.

The clock is never advanced here, so no claim or message expires meanwhile.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from tests.contract.helpers import MAX_PAGES, PROJECT, QUEUE, claim, ids, list_all, post, post_n
from zaqar.storage.base import Capability, DataDriver, MessageDraft

T = TypeVar("T")

MESSAGES = 200
THREADS = 8


def _run_together(workers: list[Callable[[], T]]) -> list[T]:
    """Start every worker at the same moment on its own thread; return their results in order."""
    barrier = threading.Barrier(len(workers))

    def start(worker: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return worker()

    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        futures = [pool.submit(start, worker) for worker in workers]
        return [future.result(timeout=120) for future in futures]


@pytest.mark.requires(Capability.CLAIMS)
def test_concurrent_claims_never_share_a_message(store: DataDriver) -> None:
    for _ in range(MESSAGES // 20):
        post_n(store, 20, ttl=3600)
    posted = ids(list_all(store, page_size=20))
    assert len(posted) == MESSAGES

    def claimer() -> list[tuple[str, list[str]]]:
        taken: list[tuple[str, list[str]]] = []
        for _ in range(MAX_PAGES):
            cid, messages = claim(store, ttl=3600, limit=5)
            if not messages:
                return taken
            assert cid is not None
            assert len(messages) <= 5
            taken.append((cid, ids(messages)))
        raise AssertionError("claiming never ran dry")

    results = _run_together([claimer] * THREADS)
    claims = [c for per_thread in results for c in per_thread]
    claim_ids = [cid for cid, _ in claims]
    assert len(set(claim_ids)) == len(claim_ids)
    counts = Counter(mid for _, mids in claims for mid in mids)
    assert [mid for mid, n in counts.items() if n > 1] == []
    assert sorted(counts) == sorted(posted)
    assert store.queues.stats(PROJECT, QUEUE).claimed == MESSAGES


def test_concurrent_producers_each_keep_their_order(store: DataDriver) -> None:
    producers, per_producer = 4, 50

    def producer(p: int) -> Callable[[], list[str]]:
        def run() -> list[str]:
            mids: list[str] = []
            for n in range(per_producer):
                mids += store.messages.post(
                    PROJECT, QUEUE, [MessageDraft(body={"p": p, "n": n}, ttl=3600)], None
                )
            return mids

        return run

    posted = _run_together([producer(p) for p in range(producers)])
    all_ids = [mid for mids in posted for mid in mids]
    assert len(set(all_ids)) == producers * per_producer

    listed = list_all(store, page_size=20, echo=True)
    assert sorted(ids(listed)) == sorted(all_ids)
    for p in range(producers):
        sequence = [m.body["n"] for m in listed if m.body["p"] == p]
        assert sequence == list(range(per_producer)), f"producer {p} out of order"
        assert [m.id for m in listed if m.body["p"] == p] == posted[p]


def test_concurrent_pops_never_return_a_message_twice(store: DataDriver) -> None:
    for _ in range(MESSAGES // 20):
        post_n(store, 20, ttl=3600)

    def popper() -> list[str]:
        taken: list[str] = []
        for _ in range(MAX_PAGES):
            popped = store.messages.pop(PROJECT, QUEUE, 3)
            if not popped:
                return taken
            taken += ids(popped)
        raise AssertionError("popping never ran dry")

    results = _run_together([popper] * THREADS)
    counts = Counter(mid for taken in results for mid in taken)
    assert [mid for mid, n in counts.items() if n > 1] == []
    assert len(counts) == MESSAGES
    assert store.queues.stats(PROJECT, QUEUE).total == 0


def test_concurrent_batch_posts_are_complete_and_each_in_order(store: DataDriver) -> None:
    batches, size = 8, 10

    def poster(b: int) -> Callable[[], list[str]]:
        return lambda: post(store, *({"b": b, "i": i} for i in range(size)))

    posted = _run_together([poster(b) for b in range(batches)])
    listed = list_all(store, page_size=20, echo=True)
    assert len(listed) == batches * size
    for b in range(batches):
        assert [m.id for m in listed if m.body["b"] == b] == posted[b]
