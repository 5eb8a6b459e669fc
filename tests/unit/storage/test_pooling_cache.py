"""Placements the pooled store keeps in memory: what is kept, and when it is dropped.

Real SQLite pools and one SQLite management store shared by two pooled
stores, as two server processes share them. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from zaqar import storage
from zaqar.storage import errors, pooling
from zaqar.storage.base import MessageDraft
from zaqar.storage.control import CatalogController, ControlDriver

P, Q = "project", "q"


class _CountingCatalog(CatalogController):
    """The real catalog, counting the reads that route a call."""

    def __init__(self, real: CatalogController) -> None:
        self._real, self.gets = real, 0

    def get(self, project: str | None, queue: str) -> str:
        self.gets += 1
        return self._real.get(project, queue)

    def insert(self, project: str | None, queue: str, pool: str) -> str:
        return self._real.insert(project, queue, pool)

    def delete(self, project: str | None, queue: str) -> None:
        self._real.delete(project, queue)

    def list(self, project: str | None, *, marker: str | None = None,
             limit: int = 10) -> list[tuple[str, str]]:
        return self._real.list(project, marker=marker, limit=limit)

    def count(self, pool: str) -> int:
        return self._real.count(pool)

    def placed(self, pool: str) -> list[tuple[str | None, str]]:
        return self._real.placed(pool)

    def forget_pool(self, pool: str) -> int:
        return self._real.forget_pool(pool)


class _Counting(ControlDriver):
    def __init__(self, real: ControlDriver) -> None:
        self._real, self.catalog_ = real, _CountingCatalog(real.catalog)

    pools = property(lambda self: self._real.pools)
    flavors = property(lambda self: self._real.flavors)
    catalog = property(lambda self: self.catalog_)

    def close(self) -> None:
        self._real.close()


@pytest.fixture
def open_control(tmp_path: Path) -> Iterator[Callable[[], ControlDriver]]:
    """Management store drivers on one file, as each server process opens its own."""
    opened: list[ControlDriver] = []

    def open_one() -> ControlDriver:
        opened.append(storage.load_control_driver("sqlite", f"sqlite:///{tmp_path / 'catalog.sqlite'}"))
        return opened[-1]

    yield open_one
    for driver in opened:
        driver.close()


@pytest.fixture
def open_pooled(open_control, clock: FakeClock) -> Iterator[Callable[..., pooling.DataDriver]]:
    stores: list[pooling.DataDriver] = []

    def open_one(refresh: float = 60.0, control: ControlDriver | None = None) -> pooling.DataDriver:
        stores.append(pooling.DataDriver(control or open_control(), clock=clock, refresh=refresh))
        return stores[-1]

    yield open_one
    for store in stores:
        store.close()


def _pool(control: ControlDriver, tmp: Path, name: str, weight: int) -> str:
    uri = f"sqlite:///{tmp / f'{name}.sqlite'}"
    control.pools.create(name, uri, weight)
    return uri


def _post(store: pooling.DataDriver, body: object = "x", queue: str = Q) -> None:
    store.messages.post(P, queue, [MessageDraft(body, 300)], None)


def _bodies(uri: str, clock: FakeClock, queue: str = Q) -> list[object]:
    driver = storage.load_data_driver("sqlite", uri, clock=clock)
    try:
        return [m.body for m in driver.messages.list(P, queue, echo=True)]
    finally:
        driver.close()


def test_a_placed_queue_is_routed_without_reading_the_catalog_again(open_control, open_pooled, tmp_path):
    counting = _Counting(open_control())
    _pool(counting, tmp_path, "a", 100)
    store = open_pooled(control=counting)
    _post(store)
    after_placement = counting.catalog_.gets
    for _ in range(10):
        store.queues.get_metadata(P, Q)
        _post(store)
    assert counting.catalog_.gets == after_placement
    assert len(store.messages.list(P, Q, echo=True, limit=20)) == 11


def test_a_queue_placed_nowhere_is_asked_about_every_time(open_control, open_pooled, tmp_path):
    control = open_control()
    _pool(control, tmp_path, "a", 100)
    here, there = open_pooled(), open_pooled()
    assert here.messages.list(P, Q) == []  # placed nowhere yet: nothing kept
    _post(there, "placed by the other process")
    assert [m.body for m in here.messages.list(P, Q, echo=True)] == ["placed by the other process"]


def test_deleting_a_pool_here_forgets_its_placements_at_once(open_control, open_pooled, tmp_path, clock):
    control = open_control()
    _pool(control, tmp_path, "a", 100)
    b = _pool(control, tmp_path, "b", 0)
    store = open_pooled()
    _post(store, "on a")
    control.pools.update("b", weight=100)
    store.control.pools.update("a", weight=0)
    store.control.pools.delete("a")  # as pool_delete?force=true does it
    assert store.control.catalog.forget_pool("a") == 1
    _post(store, "placed again")
    assert control.catalog.get(P, Q) == "b"
    assert _bodies(b, clock) == ["placed again"]


def test_a_pool_whose_queues_are_gone_goes_without_force_with_its_placements(
        open_control, open_pooled, tmp_path, clock):
    control = open_control()
    _pool(control, tmp_path, "a", 100)
    b = _pool(control, tmp_path, "b", 0)
    store = open_pooled()
    _post(store, "on a")
    store.queues.delete(P, Q)
    control.pools.update("b", weight=100)
    store.control.pools.update("a", weight=0)
    # as pool_delete (without force) does it: nothing held, so the pool and its placements go
    assert pooling.held_queues(store.control, store.pool_store("a"), "a") == 0
    store.control.pools.delete("a")
    store.control.catalog.forget_pool("a")
    _post(store, "placed again")
    assert control.catalog.get(P, Q) == "b"
    assert _bodies(b, clock) == ["placed again"]


def test_a_pool_deleted_by_another_process_is_followed_within_the_refresh(open_control, open_pooled,
                                                                        tmp_path, clock):
    control = open_control()
    _pool(control, tmp_path, "a", 100)
    b = _pool(control, tmp_path, "b", 0)
    here, there = open_pooled(refresh=0.2), open_pooled()
    _post(here, "on a")
    control.pools.update("b", weight=100)
    there.control.pools.update("a", weight=0)
    there.control.pools.delete("a")
    there.control.catalog.forget_pool("a")
    deadline = time.monotonic() + 10
    while True:
        _post(here, "after")
        try:
            if control.catalog.get(P, Q) == "b":
                break
        except errors.QueueNotMapped:
            pass
        assert time.monotonic() < deadline, "the placement on the deleted pool was kept"
        time.sleep(0.02)
    assert _bodies(b, clock) == ["after"]
