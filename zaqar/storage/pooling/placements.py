"""Placements (queue -> pool) this process read from the catalog, and the control store that drops them.

Every call for a queue needs its pool; without this, a post read the catalog
twice (once for the metadata, once for the post itself). A placement never
changes while its pool exists (queue deletes keep it), so positive answers
are kept, for at most ``max_age`` seconds (the registry's pool refresh
interval). "Not placed" is never kept: another process may place the queue
at any moment.

A placement goes away only when its pool is deleted (``forget_pool``). This
process then drops the entries at once,
through ``ControlDriver`` below, which the pooled store hands to the API
layer; the registry drops a pool's entries when its refresh finds the pool
gone or its URI changed. Another process's deletes are therefore followed
within ``max_age`` seconds at most (see specs/pooling.rst).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from zaqar.storage import control

# Placements kept at most; past that the oldest goes (insertion order).
MAX_ENTRIES = 100_000

Key = tuple[str | None, str]


class Placements:
    """Thread-safe; a lookup on a hit is a dict read and a clock read."""

    def __init__(self, max_age: float, max_entries: int = MAX_ENTRIES) -> None:
        self._max_age, self._max_entries = max_age, max_entries
        self._entries: dict[Key, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._generation = 0

    def get(self, project: str | None, queue: str) -> str | None:
        """The queue's pool if a fresh enough placement is kept, else None (ask the catalog)."""
        found = self._entries.get((project, queue))
        if found is None or time.monotonic() - found[1] >= self._max_age:
            return None
        return found[0]

    def read(self, project: str | None, queue: str, lookup: Callable[[], str | None]) -> str | None:
        """``lookup()`` (a catalog read), kept when it found a pool and no forget ran meanwhile."""
        generation, started = self._generation, time.monotonic()
        pool = lookup()
        if pool is not None and self._max_age > 0:
            with self._lock:
                if self._generation == generation:
                    if len(self._entries) >= self._max_entries:
                        del self._entries[next(iter(self._entries))]
                    self._entries[(project, queue)] = (pool, started)
        return pool

    def forget(self, project: str | None, queue: str) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop((project, queue), None)

    def forget_pool(self, pool: str) -> None:
        with self._lock:
            self._generation += 1
            self._entries = {key: entry for key, entry in self._entries.items() if entry[0] != pool}


class _Pools(control.PoolController):
    def __init__(self, real: control.PoolController, placements: Placements) -> None:
        self._real, self._placements = real, placements

    def create(self, name: str, uri: str, weight: int, *, flavor: str | None = None,
               options: Mapping[str, Any] | None = None) -> None:
        self._real.create(name, uri, weight, flavor=flavor, options=options)

    def get(self, name: str) -> control.Pool:
        return self._real.get(name)

    def list(self, *, marker: str | None = None, limit: int = 10) -> list[control.Pool]:
        return self._real.list(marker=marker, limit=limit)

    def all(self) -> list[control.Pool]:
        return self._real.all()

    def update(self, name: str, **changes: Any) -> control.Pool:  # type: ignore[override]
        return self._real.update(name, **changes)

    def delete(self, name: str) -> None:
        try:
            self._real.delete(name)
        finally:
            self._placements.forget_pool(name)


class _Catalog(control.CatalogController):
    def __init__(self, real: control.CatalogController, placements: Placements) -> None:
        self._real, self._placements = real, placements

    def get(self, project: str | None, queue: str) -> str:
        return self._real.get(project, queue)

    def insert(self, project: str | None, queue: str, pool: str) -> str:
        return self._real.insert(project, queue, pool)

    def delete(self, project: str | None, queue: str) -> None:
        try:
            self._real.delete(project, queue)
        finally:
            self._placements.forget(project, queue)

    def list(
        self, project: str | None, *, marker: str | None = None, limit: int = 10
    ) -> list[tuple[str, str]]:
        return self._real.list(project, marker=marker, limit=limit)

    def count(self, pool: str) -> int:
        return self._real.count(pool)

    def placed(self, pool: str) -> list[tuple[str | None, str]]:
        return self._real.placed(pool)

    def forget_pool(self, pool: str) -> int:
        try:
            return self._real.forget_pool(pool)
        finally:
            self._placements.forget_pool(pool)


class ControlDriver(control.ControlDriver):
    """The management store as the API layer gets it: deletes also drop this process's placements."""

    def __init__(self, real: control.ControlDriver, placements: Placements) -> None:
        self._real = real
        self._pools = _Pools(real.pools, placements)
        self._catalog = _Catalog(real.catalog, placements)

    @property
    def pools(self) -> control.PoolController:
        return self._pools

    @property
    def flavors(self) -> control.FlavorController:
        return self._real.flavors

    @property
    def catalog(self) -> control.CatalogController:
        return self._catalog

    def is_alive(self) -> bool:
        return self._real.is_alive()

    def close(self) -> None:
        self._real.close()
