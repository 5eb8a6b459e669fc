"""Subscriptions across pools: they live in their queue's pool, beside its messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zaqar.storage import base, errors
from zaqar.storage.pooling.registry import Registry


class SubscriptionController(base.SubscriptionController):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def create(
        self, project: str | None, queue: str, subscriber: str, ttl: int, options: Mapping[str, Any]
    ) -> str:
        driver = self._registry.place(project, queue)
        return driver.subscriptions.create(project, queue, subscriber, ttl, options)

    def get(self, project: str | None, queue: str, subscription_id: str) -> base.Subscription:
        driver = self._placed(project, queue, subscription_id)
        return driver.subscriptions.get(project, queue, subscription_id)

    def list(
        self, project: str | None, queue: str, *, marker: str | None = None, limit: int = 10
    ) -> list[base.Subscription]:
        driver = self._registry.lookup(project, queue)
        return [] if driver is None else driver.subscriptions.list(project, queue, marker=marker, limit=limit)

    def update(
        self,
        project: str | None,
        queue: str,
        subscription_id: str,
        *,
        subscriber: str | None = None,
        ttl: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self._placed(project, queue, subscription_id).subscriptions.update(
            project, queue, subscription_id, subscriber=subscriber, ttl=ttl, options=options
        )

    def confirm(self, project: str | None, queue: str, subscription_id: str, confirmed: bool) -> None:
        self._placed(project, queue, subscription_id).subscriptions.confirm(
            project, queue, subscription_id, confirmed
        )

    def delete(self, project: str | None, queue: str, subscription_id: str) -> None:
        driver = self._registry.lookup(project, queue)
        if driver is not None:
            driver.subscriptions.delete(project, queue, subscription_id)

    def delete_all(self, project: str | None, queue: str) -> None:
        driver = self._registry.lookup(project, queue)
        if driver is not None:
            driver.subscriptions.delete_all(project, queue)

    def live(self, project: str | None, queue: str) -> list[base.Subscription]:
        driver = self._registry.lookup(project, queue)
        return [] if driver is None else driver.subscriptions.live(project, queue)

    def _placed(self, project: str | None, queue: str, subscription_id: str) -> base.DataDriver:
        driver = self._registry.lookup(project, queue)
        if driver is None:
            raise errors.SubscriptionDoesNotExist(subscription_id)
        return driver
