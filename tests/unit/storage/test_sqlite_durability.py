"""When the SQLite store makes a write durable: the group commit of ``zaqar.storage.sqlite.common``.

A power loss cannot be staged here, so these tests watch what stands between
an acknowledged write and one: an fdatasync of the database's WAL, which must
begin after the write's commit and end before the write returns. The real
fdatasync still runs; the tests only record when it happened (and, to make
writers overlap, stretch it a little).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from zaqar.storage import errors
from zaqar.storage.base import MessageDraft
from zaqar.storage.sqlite import DataDriver, common

DRAFT = [MessageDraft(body="m", ttl=300)]


class Syncs:
    """The fdatasync calls made, as (start, end, path synced), around the real one."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[float, float, str]] = []
        self.delay, self.fail_next = delay, False
        self._real = os.fdatasync
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        start = time.monotonic()
        if self.fail_next:
            self.fail_next = False
            raise OSError(5, "Input/output error")
        self._real(fd)
        time.sleep(self.delay)
        with self._lock:
            self.calls.append((start, time.monotonic(), os.readlink(f"/proc/self/fd/{fd}")))


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Syncs:
    recorder = Syncs()
    monkeypatch.setattr(common.os, "fdatasync", recorder)
    return recorder


@pytest.fixture
def open_store(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[[str], DataDriver]]:
    opened: list[DataDriver] = []

    def open_with(query: str = "") -> DataDriver:
        opened.append(DataDriver(f"sqlite:///{tmp_path / 'zaqar.sqlite'}{query}", clock=clock))
        return opened[-1]

    yield open_with
    for driver in opened:
        driver.close()


def test_an_acknowledged_post_was_synced_after_it_was_written(open_store, syncs, tmp_path):
    store = open_store("")
    syncs.calls.clear()
    before = time.monotonic()
    store.messages.post("p", "q", DRAFT, None)
    after = time.monotonic()
    assert len(syncs.calls) == 1
    start, end, path = syncs.calls[0]
    assert before <= start and end <= after
    assert path == f"{tmp_path / 'zaqar.sqlite'}-wal"  # the log the commit went to, not the main file
    # the commit itself is done before the sync starts: the WAL already holds the message then
    assert os.path.getsize(path) > 0


def test_writers_that_commit_together_share_one_sync(open_store, syncs):
    store = open_store("")
    syncs.delay = 0.02  # a slow disk: while one sync runs, the others commit and queue up
    syncs.calls.clear()
    done: list[tuple[float, float]] = []

    def post() -> None:
        for _ in range(5):
            began = time.monotonic()
            store.messages.post("p", "q", DRAFT, None)
            done.append((began, time.monotonic()))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(done) == 40 and store.queues.stats("p", "q").total == 40
    assert len(syncs.calls) < 40  # shared
    for began, returned in done:  # and still every post waited for a sync of its own time
        assert any(began <= start and end <= returned for start, end, _ in syncs.calls)


def test_normal_posts_and_default_consumes_do_not_sync(open_store, syncs):
    normal = open_store("?synchronous=normal")
    normal.messages.post("p", "q", DRAFT * 3, None)
    claim_id, claimed = normal.claims.create("p", "q", ttl=60, grace=60, limit=3)
    normal.messages.delete("p", "q", claimed[0].id, claim_id=claim_id)
    assert syncs.calls == []
    full = open_store("")
    full.messages.post("p", "q2", DRAFT * 3, None)
    syncs.calls.clear()
    claim_id, claimed = full.claims.create("p", "q2", ttl=60, grace=60, limit=3)
    full.messages.delete("p", "q2", claimed[0].id, claim_id=claim_id)
    assert syncs.calls == []  # consume_synchronous=normal: covered by the next post's sync


def test_consumes_sync_with_consume_synchronous_full(open_store, syncs):
    store = open_store("?consume_synchronous=full")
    store.messages.post("p", "q", DRAFT * 2, None)
    syncs.calls.clear()
    claim_id, claimed = store.claims.create("p", "q", ttl=60, grace=60, limit=2)
    store.messages.delete("p", "q", claimed[0].id, claim_id=claim_id)
    assert len(syncs.calls) == 2


def test_a_failed_sync_is_an_outage_for_that_write_and_the_next_one_syncs_again(open_store, syncs):
    store = open_store("")
    syncs.fail_next = True
    with pytest.raises(errors.BackendUnavailable):
        store.messages.post("p", "q", DRAFT, None)
    syncs.calls.clear()
    store.messages.post("p", "q", DRAFT, None)
    assert len(syncs.calls) == 1
