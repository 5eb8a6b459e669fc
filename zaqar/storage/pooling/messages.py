"""Messages and claims across pools: every call goes to the queue's pool.

A queue placed nowhere behaves as a missing queue does on a single store:
empty listings, nothing to claim, "does not exist" for ids.

Dead letters: a claim moves over-claimed messages within one store, atomically
and keeping their ids. So a dead-letter queue placed nowhere yet is placed on
the source queue's pool. When it already lives on another pool, the source
store moves the messages into a way station of its own first (a queue named
``WAYSTATION + name``, a name no client can create, which sorts after every
valid name and is left out of listings), and they are then carried over,
at least once, to the dead-letter queue's pool. Across pools a moved message
keeps its body and remaining ttl but gets a new id, and its claim count
starts again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from zaqar.storage import base, errors
from zaqar.storage.pooling.registry import Registry

LOG = logging.getLogger(__name__)

_CARRY_BATCH = 100

# "~" is outside the queue-name alphabet and above every character in it.
WAYSTATION = "~"


class MessageController(base.MessageController):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def post(
        self, project: str | None, queue: str, drafts: Sequence[base.MessageDraft], client_id: str | None
    ) -> list[str]:
        return self._registry.place(project, queue).messages.post(project, queue, drafts, client_id)

    def list(
        self,
        project: str | None,
        queue: str,
        *,
        marker: str | None = None,
        limit: int = 10,
        echo: bool = False,
        client_id: str | None = None,
        include_claimed: bool = False,
        include_delayed: bool = False,
    ) -> list[base.Message]:
        driver = self._registry.lookup(project, queue)
        if driver is None:
            return []
        return driver.messages.list(
            project, queue, marker=marker, limit=limit, echo=echo, client_id=client_id,
            include_claimed=include_claimed, include_delayed=include_delayed,
        )

    def get(self, project: str | None, queue: str, message_id: str) -> base.Message:
        driver = self._registry.lookup(project, queue)
        if driver is None:
            raise errors.MessageDoesNotExist(message_id, queue, project)
        return driver.messages.get(project, queue, message_id)

    def get_many(self, project: str | None, queue: str, ids: Sequence[str]) -> list[base.Message]:
        driver = self._registry.lookup(project, queue)
        return [] if driver is None else driver.messages.get_many(project, queue, ids)

    def delete(
        self, project: str | None, queue: str, message_id: str, claim_id: str | None = None
    ) -> None:
        driver = self._registry.lookup(project, queue)
        if driver is not None:
            driver.messages.delete(project, queue, message_id, claim_id=claim_id)

    def delete_many(
        self,
        project: str | None,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None = None,
    ) -> None:
        driver = self._registry.lookup(project, queue)
        if driver is not None:
            driver.messages.delete_many(project, queue, ids, claim_ids=claim_ids)
        elif claim_ids:
            raise errors.ClaimDoesNotExist(claim_ids[0], queue, project)

    def pop(self, project: str | None, queue: str, limit: int) -> list[base.Message]:
        driver = self._registry.lookup(project, queue)
        return [] if driver is None else driver.messages.pop(project, queue, limit)


class ClaimController(base.ClaimController):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def create(
        self,
        project: str | None,
        queue: str,
        *,
        ttl: int,
        grace: int,
        limit: int,
        dead_letter: base.DeadLetter | None = None,
    ) -> tuple[str | None, list[base.Message]]:
        routed = self._registry.routed(project, queue)
        if routed is None:
            return None, []
        source, driver = routed
        if dead_letter is None:
            return driver.claims.create(project, queue, ttl=ttl, grace=grace, limit=limit)
        target = self._registry.pool_of(project, dead_letter.queue)
        if target is None:  # NOTE: read first: inserting takes the catalog's write lock
            target = self._registry.control.catalog.insert(project, dead_letter.queue, source)
        if target == source:
            return driver.claims.create(project, queue, ttl=ttl, grace=grace, limit=limit,
                                        dead_letter=dead_letter)
        # Opened before claiming: once the claim is made, it must be answered.
        target_driver = self._registry.driver(target)
        station = dataclasses.replace(dead_letter, queue=WAYSTATION + dead_letter.queue)
        result = driver.claims.create(project, queue, ttl=ttl, grace=grace, limit=limit,
                                      dead_letter=station)
        try:
            _carry(project, station.queue, driver, dead_letter.queue, target_driver)
        except errors.StorageError as exc:
            LOG.warning("dead letters for %s/%s wait on pool %s for the next claim: %s",
                        project, dead_letter.queue, source, exc)
        return result

    def get(self, project: str | None, queue: str, claim_id: str) -> base.Claim:
        return self._placed(project, queue, claim_id).claims.get(project, queue, claim_id)

    def update(self, project: str | None, queue: str, claim_id: str, *, ttl: int, grace: int) -> None:
        self._placed(project, queue, claim_id).claims.update(project, queue, claim_id, ttl=ttl, grace=grace)

    def delete(self, project: str | None, queue: str, claim_id: str) -> None:
        driver = self._registry.lookup(project, queue)
        if driver is not None:
            driver.claims.delete(project, queue, claim_id)

    def _placed(self, project: str | None, queue: str, claim_id: str) -> base.DataDriver:
        driver = self._registry.lookup(project, queue)
        if driver is None:
            raise errors.ClaimDoesNotExist(claim_id, queue, project)
        return driver


def _carry(
    project: str | None, station: str, source: base.DataDriver, queue: str, target: base.DataDriver
) -> None:
    """Move the way station's messages on ``source`` to ``queue`` on ``target``.

    At least once: each batch is posted to the target before it leaves the
    way station, so a crash or an outage in between loses nothing; the next
    claim carries what is left. Two claims carrying at the same moment may
    both post a batch, so a dead letter can arrive twice, never not at all.
    """
    while batch := source.messages.list(project, station, limit=_CARRY_BATCH, echo=True,
                                        include_claimed=True, include_delayed=True):
        drafts = [base.MessageDraft(m.body, max(1, m.ttl - m.age)) for m in batch]
        target.messages.post(project, queue, drafts, None)
        source.messages.delete_many(project, station, [m.id for m in batch])
