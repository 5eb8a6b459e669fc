"""Queues across pools: each call goes to the queue's pool; listings merge every pool's."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from zaqar.storage import base, errors
from zaqar.storage.pooling.messages import WAYSTATION
from zaqar.storage.pooling.registry import Registry

# NOTE: the one reserved metadata key the pooled store reads itself: it picks the pools a new
# queue may be placed on (http-v2.md §3.1). The API layer has checked that the flavor exists.
FLAVOR_KEY = "_flavor"

_MAX_STATIONS = 10_000


class QueueController(base.QueueController):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def create(self, project: str | None, name: str, metadata: Mapping[str, Any]) -> bool:
        flavor = metadata.get(FLAVOR_KEY)
        driver = self._registry.place(project, name, flavor if isinstance(flavor, str) else None)
        return driver.queues.create(project, name, metadata)

    def exists(self, project: str | None, name: str) -> bool:
        driver = self._registry.lookup(project, name)
        return driver is not None and driver.queues.exists(project, name)

    def get_metadata(self, project: str | None, name: str) -> dict[str, Any]:
        return self._placed(project, name).queues.get_metadata(project, name)

    def set_metadata(self, project: str | None, name: str, metadata: Mapping[str, Any]) -> None:
        self._placed(project, name).queues.set_metadata(project, name, metadata)

    def update_metadata(
        self, project: str | None, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        return self._placed(project, name).queues.update_metadata(project, name, change)

    def delete(self, project: str | None, name: str) -> None:
        # NOTE: the placement stays. A post racing with this delete, or a retry after the pool
        # failed half-way, then still lands on this pool, where the queue's subscriptions (which
        # outlive it, upstream) also are; forgetting it would orphan what such a post stored.
        # Placements of deleted queues are forgotten when their pool is deleted (forget_pool).
        driver = self._registry.lookup(project, name)
        if driver is not None:
            driver.queues.delete(project, name)

    def list(
        self,
        project: str | None,
        *,
        marker: str | None = None,
        limit: int = 10,
        name: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[base.QueueInfo]:
        # A queue's record lives in exactly one pool, so the first ``limit`` names of the merged
        # per-pool pages are exactly the page a single store would give. Way stations sort after
        # every queue name, so dropping them never hides a queue behind a short page.
        pages = [
            driver.queues.list(project, marker=marker, limit=limit, name=name, filters=filters)
            for _, driver in self._registry.every()
        ]
        merged = heapq.merge(*pages, key=lambda info: info.name)
        queues = (info for info in merged if not info.name.startswith(WAYSTATION))
        return list(itertools.islice(queues, limit))

    def count(self, project: str | None) -> int:
        total = 0
        for _, driver in self._registry.every():
            stations = driver.queues.list(project, marker=WAYSTATION, limit=_MAX_STATIONS)
            total += driver.queues.count(project) - len(stations)
        return total

    def stats(self, project: str | None, name: str) -> base.QueueStats:
        driver = self._registry.lookup(project, name)
        if driver is None:
            return base.QueueStats(total=0, claimed=0, oldest=None, newest=None, exists=False)
        return driver.queues.stats(project, name)

    def _placed(self, project: str | None, name: str) -> base.DataDriver:
        driver = self._registry.lookup(project, name)
        if driver is None:
            raise errors.QueueDoesNotExist(name, project)
        return driver
