"""The management store's interface: pools, flavors and the queue catalog.

With ``[DEFAULT] pooling = true`` one deployment spreads its queues over many
message stores (pools). The management store (``[drivers] management_store``)
remembers three things, and nothing about messages:

* pools: a name, the URI of a message store, a placement weight, the flavor
  the pool belongs to (at most one), and free-form options. Pools are global.
* flavors: a named group of pools, per project; a queue created with
  ``_flavor`` is placed on that flavor's pools.
* the catalog: which pool holds each (project, queue).

Every method may raise ``errors.BackendUnavailable`` when the store cannot be
reached. Listings are ordered by name and page with a strictly-after marker.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

_UNSET: Any = object()  # "leave unchanged", where None is a meaningful new value


@dataclasses.dataclass(frozen=True, slots=True)
class Pool:
    name: str
    uri: str
    weight: int
    flavor: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Flavor:
    """``pools`` are the names of the pools whose ``flavor`` is this flavor, by name."""

    name: str
    project: str | None
    pools: tuple[str, ...] = ()
    capabilities: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class PoolController(abc.ABC):
    @abc.abstractmethod
    def create(self, name: str, uri: str, weight: int, *, flavor: str | None = None,
               options: Mapping[str, Any] | None = None) -> None:
        """Create, or overwrite every field of, the pool ``name``.

        Raises:
            PoolUriInUse: another pool (another name) already has exactly this ``uri``.
        """

    @abc.abstractmethod
    def get(self, name: str) -> Pool:
        """Raises PoolDoesNotExist."""

    @abc.abstractmethod
    def list(self, *, marker: str | None = None, limit: int = 10) -> list[Pool]: ...

    @abc.abstractmethod
    def all(self) -> list[Pool]:
        """Every pool, for placement and cross-pool listings (pool counts are small)."""

    @abc.abstractmethod
    def update(self, name: str, *, uri: str | None = None, weight: int | None = None,
               flavor: str | None = _UNSET, options: Mapping[str, Any] | None = None) -> Pool:
        """Change the given fields (``flavor=None`` clears it) and return the pool.

        Raises:
            PoolDoesNotExist; PoolUriInUse for a ``uri`` another pool has.
        """

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove the pool; an unknown name is not an error.

        Raises:
            PoolInUseByFlavor: the pool's ``flavor`` names a flavor that still exists.
        """


class FlavorController(abc.ABC):
    @abc.abstractmethod
    def create(self, project: str | None, name: str, pools: Sequence[str], *,
               capabilities: Mapping[str, Any] | None = None) -> None:
        """Create or overwrite the flavor; set ``flavor`` on each listed pool, clear it on pools dropped.

        Raises:
            PoolDoesNotExist: a listed pool is unknown (nothing is changed then).
        """

    @abc.abstractmethod
    def get(self, project: str | None, name: str) -> Flavor:
        """Raises FlavorDoesNotExist (also for another project's flavor)."""

    @abc.abstractmethod
    def list(
        self, project: str | None, *, marker: str | None = None, limit: int = 10
    ) -> list[Flavor]: ...

    @abc.abstractmethod
    def update(self, project: str | None, name: str, pools: Sequence[str]) -> Flavor:
        """Replace the pool list as ``create`` does. Raises FlavorDoesNotExist, PoolDoesNotExist."""

    @abc.abstractmethod
    def delete(self, project: str | None, name: str) -> None:
        """Remove the flavor and clear ``flavor`` on its pools; an unknown name is not an error."""


class CatalogController(abc.ABC):
    @abc.abstractmethod
    def get(self, project: str | None, queue: str) -> str:
        """The name of the pool holding the queue. Raises QueueNotMapped."""

    @abc.abstractmethod
    def insert(self, project: str | None, queue: str, pool: str) -> str:
        """Map the queue to ``pool`` unless it is mapped already; return the pool it is mapped to.

        Atomic: two processes placing the same new queue at once agree on one pool.
        """

    @abc.abstractmethod
    def delete(self, project: str | None, queue: str) -> None:
        """Forget the queue's placement; an unmapped queue is not an error."""

    @abc.abstractmethod
    def list(
        self, project: str | None, *, marker: str | None = None, limit: int = 10
    ) -> list[tuple[str, str]]:
        """(queue, pool) pairs of the project by queue name, strictly after ``marker``."""

    @abc.abstractmethod
    def count(self, pool: str) -> int:
        """How many queues (of every project) the pool holds."""

    @abc.abstractmethod
    def placed(self, pool: str) -> list[tuple[str | None, str]]:
        """Every (project, queue) placed on ``pool``, for pruning placements before the pool goes."""

    @abc.abstractmethod
    def forget_pool(self, pool: str) -> int:
        """Forget the placement of every queue on ``pool``; return how many were forgotten.

        Used when an operator deletes a pool that still holds queues and says so
        explicitly: the queues' data stays in that store, untouched.
        """


class ControlDriver(abc.ABC):
    """The root of a management store; one per process, shared by every thread."""

    @property
    @abc.abstractmethod
    def pools(self) -> PoolController: ...

    @property
    @abc.abstractmethod
    def flavors(self) -> FlavorController: ...

    @property
    @abc.abstractmethod
    def catalog(self) -> CatalogController: ...

    def is_alive(self) -> bool:
        return True

    @abc.abstractmethod
    def close(self) -> None: ...
