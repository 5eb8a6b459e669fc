"""The pooled message store: one DataDriver made of many, for deployments past one database.

A composite with the same interface as a single store (upstream's
``storage/pooling.py`` idea): the management store's catalog says which pool
holds each (project, queue); a queue placed nowhere is placed by weight when
something first writes to it (create, post, subscribe), and every later call
for it goes to that pool. Nothing above this module knows there are pools,
except the admin operations that register them and the per-pool health check.
"""

from __future__ import annotations

import logging
import random
import time

from zaqar import storage
from zaqar.storage import base, errors
from zaqar.storage.control import ControlDriver
from zaqar.storage.pooling import placements
from zaqar.storage.pooling.messages import ClaimController, MessageController
from zaqar.storage.pooling.queues import QueueController
from zaqar.storage.pooling.registry import Registry
from zaqar.storage.pooling.subscriptions import SubscriptionController

LOG = logging.getLogger(__name__)


def held_queues(control: ControlDriver, store: base.DataDriver, pool: str) -> int:
    """How many queues still live on ``pool``, whose store is ``store``; changes nothing.

    Placements outlive deleted queues, which do not count here. None is
    forgotten: when nothing is held the pool's deletion forgets them all, and
    when something is, the pool stays and so must every placement on it.
    NOTE: this pruned the deleted queues' placements even when the delete was
    then refused (409); another process still placing such a queue on this
    pool from its cache posted there, while this one placed it anew elsewhere
    (a post answered 201 that no one could read, the queue listed twice).
    Deleting a pool is an operator's act: set its weight to 0 first, so no
    new queue is placed on it meanwhile.
    """
    return sum(1 for project, queue in control.catalog.placed(pool)
               if store.queues.exists(project, queue) or store.subscriptions.live(project, queue))


class DataDriver(base.DataDriver):
    """Owns ``control`` and the drivers of every pool: ``close`` closes them all."""

    def __init__(
        self,
        control: ControlDriver,
        *,
        clock: base.Clock = time.time,
        refresh: float = 5.0,
        rng: random.Random | None = None,
        adopt_from: str | None = None,
    ) -> None:
        """``adopt_from`` names the pool that was the message store before pooling was on.

        ``control`` is the management store as the API layer must use it: its pool and
        placement deletes also drop the placements this process keeps (``placements``).
        """
        self._registry = Registry(control, clock=clock, refresh=refresh, rng=rng, adopt_from=adopt_from)
        self.control: ControlDriver = placements.ControlDriver(control, self._registry.placements)
        self._queues = QueueController(self._registry)
        self._messages = MessageController(self._registry)
        self._claims = ClaimController(self._registry)
        self._subscriptions = SubscriptionController(self._registry)

    @property
    def capabilities(self) -> frozenset[base.Capability]:  # type: ignore[override]
        """What every pool guarantees: a queue may land on any of them."""
        pools = self.control.pools.all()
        if not pools:
            return frozenset()
        return frozenset.intersection(*(storage.driver_class(p.uri).capabilities for p in pools))

    @property
    def queues(self) -> QueueController:
        return self._queues

    @property
    def messages(self) -> MessageController:
        return self._messages

    @property
    def claims(self) -> ClaimController:
        return self._claims

    @property
    def subscriptions(self) -> SubscriptionController:
        return self._subscriptions

    def pool_store(self, pool: str) -> base.DataDriver:
        """The message store of one registered pool. Raises BackendUnavailable."""
        return self._registry.driver(pool)

    def is_alive(self) -> bool:
        """The catalog and every pool answer."""
        if not self.control.is_alive():
            return False
        try:
            return all(driver.is_alive() for _, driver in self._registry.every())
        except errors.StorageError:
            return False

    def gc(self) -> int:
        """Sweep every pool; one pool being down does not keep the others from being swept."""
        removed = 0
        for pool in self.control.pools.all():
            try:
                removed += self._registry.driver(pool.name).gc()
            except errors.StorageError as exc:
                LOG.warning("expired-message sweep of pool %s failed: %s", pool.name, exc)
        return removed

    def close(self) -> None:
        self._registry.close()
        self.control.close()
