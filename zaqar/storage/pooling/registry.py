"""Which message store serves a queue: the catalog lookup, placement by weight, open drivers.

One registry per process. It opens each pool's driver on first use and keeps
it; a pool's record is re-read from the management store at most every
``refresh`` seconds, so a pool whose URI another process changed (or that
another process deleted) is reopened (or closed) within that time. Positive
catalog answers are kept for as long (``placements``): a placement never
changes while its pool exists, and the placements of a pool found gone or
moved are dropped at once.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Iterator

from zaqar import storage
from zaqar.storage import base, errors
from zaqar.storage.control import ControlDriver, Pool
from zaqar.storage.pooling.placements import Placements

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class _Open:
    uri: str
    driver: base.DataDriver
    checked: float  # time.monotonic() when the newest record this entry agrees with was read


def _open_store(uri: str, clock: base.Clock) -> base.DataDriver:
    """Open a pool's store; a URI no driver serves is that pool's outage, not a bug (503, not 500)."""
    try:
        name = storage.driver_for_uri(uri)
    except storage.InvalidDriver as exc:
        raise errors.BackendUnavailable(reason=str(exc)) from exc
    return storage.load_data_driver(name, uri, clock=clock)


class Registry:
    def __init__(
        self,
        control: ControlDriver,
        *,
        clock: base.Clock = time.time,
        refresh: float = 5.0,
        rng: random.Random | None = None,
        adopt_from: str | None = None,
    ) -> None:
        self.control = control
        self._adopt_from = adopt_from
        self._clock = clock
        self._refresh = refresh
        self._rng = rng or random.Random()
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()
        self.placements = Placements(max_age=refresh)

    # -- drivers ---------------------------------------------------------------------------

    def driver(self, pool: str) -> base.DataDriver:
        """The open driver of the registered pool ``pool``.

        Raises:
            BackendUnavailable: the pool is no longer registered, or its store cannot be opened.
        """
        driver = self._registered(pool)
        if driver is None:
            raise errors.BackendUnavailable(reason=f"pool {pool} is not registered")
        return driver

    def _registered(self, pool: str) -> base.DataDriver | None:
        with self._lock:
            entry = self._open.get(pool)
        if entry is not None and time.monotonic() - entry.checked < self._refresh:
            return entry.driver
        read_at = time.monotonic()
        try:
            record = self.control.pools.get(pool)
        except errors.PoolDoesNotExist:
            self._close(pool)
            self.placements.forget_pool(pool)
            return None
        return self._current(record, read_at)

    def _current(self, record: Pool, read_at: float) -> base.DataDriver:
        """The driver for ``record``, read from the management store at ``read_at``.

        An entry that agrees with a record read later wins over this one: a
        thread holding a record from before a URI change must not bring the
        old store back.
        """
        with self._lock:
            entry = self._open.get(record.name)
            if entry is not None and (entry.uri == record.uri or entry.checked >= read_at):
                entry.checked = max(entry.checked, read_at)
                return entry.driver
            moved = entry is not None
        if moved:
            # NOTE: a changed URI may be a pool deleted and registered again, whose placements
            # were forgotten; re-read them rather than trust what was kept.
            self.placements.forget_pool(record.name)
        # NOTE: opened outside the lock: connecting to a slow store must not stall other pools.
        fresh = _open_store(record.uri, self._clock)
        with self._lock:
            entry = self._open.get(record.name)
            if entry is not None and (entry.uri == record.uri or entry.checked >= read_at):
                stale, kept = fresh, entry.driver  # another thread got there first
            else:
                stale = entry.driver if entry is not None else None
                self._open[record.name] = _Open(record.uri, fresh, read_at)
                kept = fresh
        if stale is not None:
            stale.close()
        return kept

    def _close(self, pool: str) -> None:
        with self._lock:
            entry = self._open.pop(pool, None)
        if entry is not None:
            entry.driver.close()

    def every(self) -> Iterator[tuple[str, base.DataDriver]]:
        """Every registered pool's driver, by pool name (for listings across pools and gc)."""
        read_at = time.monotonic()
        registered = self.control.pools.all()
        names = {p.name for p in registered}
        with self._lock:
            gone = [name for name in self._open if name not in names]
        for name in gone:
            self._close(name)
            self.placements.forget_pool(name)
        for record in sorted(registered, key=lambda p: p.name):
            yield record.name, self._current(record, read_at)

    def close(self) -> None:
        with self._lock:
            entries, self._open = list(self._open.values()), {}
        for entry in entries:
            entry.driver.close()

    # -- routing and placement -------------------------------------------------------------

    def lookup(self, project: str | None, queue: str) -> base.DataDriver | None:
        """The driver of the pool holding the queue, or None for a queue placed nowhere."""
        routed = self.routed(project, queue)
        return None if routed is None else routed[1]

    def routed(self, project: str | None, queue: str) -> tuple[str, base.DataDriver] | None:
        """The queue's pool and its driver, or None for a queue placed nowhere.

        A kept placement whose pool turns out to be gone was forgotten on the way
        (``_registered``), so the catalog is asked once more before giving up.

        Raises:
            BackendUnavailable: the catalog places the queue on a pool that is not registered.
        """
        for _ in range(2):
            pool = self.pool_of(project, queue)
            if pool is None:
                return None
            driver = self._registered(pool)
            if driver is not None:
                return pool, driver
        raise errors.BackendUnavailable(reason=f"pool {pool} is not registered")

    def pool_of(self, project: str | None, queue: str) -> str | None:
        """The queue's pool, adopting a queue the ``adopt_from`` pool held before pooling was on.

        A deployment that turns pooling on keeps its message store as a pool
        (``enable_virtual_pool``); its existing queues are in no catalog yet,
        and are placed where they already are on first use.
        """
        pool = self.placements.get(project, queue)
        if pool is not None:
            return pool
        return self.placements.read(project, queue, lambda: self._read_placement(project, queue))

    def _read_placement(self, project: str | None, queue: str) -> str | None:
        try:
            return self.control.catalog.get(project, queue)
        except errors.QueueNotMapped:
            pass
        if self._adopt_from is None:
            return None
        former = self._registered(self._adopt_from)  # None once an operator deleted that pool
        if former is not None and former.queues.exists(project, queue):
            return self.control.catalog.insert(project, queue, self._adopt_from)
        return None

    def place(self, project: str | None, queue: str, flavor: str | None = None) -> base.DataDriver:
        """The queue's pool, choosing one by weight first when the queue is placed nowhere yet.

        Raises:
            FlavorDoesNotExist: ``flavor`` names no flavor of the project.
            NoPoolFound: no pool (of the flavor) has a positive weight.
        """
        routed = self.routed(project, queue)
        if routed is not None:
            return routed[1]
        chosen = self.choose(project, flavor)
        pool = self.placements.read(project, queue,
                                    lambda: self.control.catalog.insert(project, queue, chosen))
        assert pool is not None  # insert always answers a pool
        return self.driver(pool)

    def choose(self, project: str | None, flavor: str | None) -> str:
        """A pool for a new queue: weighted at random among the flavor's pools that answer.

        Without a flavor, among the pools that belong to no flavor, so a
        flavor's dedicated pools only get queues asked for with that flavor;
        when every pool belongs to some flavor, among all pools. A pool whose
        store does not answer is passed over: a queue placed there would fail
        until it came back. Placement happens once per queue, so the check is cheap.

        Raises:
            NoPoolFound: no candidate has a positive weight.
            BackendUnavailable: candidates exist, but none answers.
        """
        read_at = time.monotonic()
        pools = self.control.pools.all()
        if flavor is not None:
            members = set(self.control.flavors.get(project, flavor).pools)
            candidates = [p for p in pools if p.name in members]
        else:
            candidates = [p for p in pools if p.flavor is None] or pools
        candidates = [p for p in candidates if p.weight > 0]
        if not candidates:
            raise errors.NoPoolFound(flavor)
        while candidates:
            (chosen,) = self._rng.choices(candidates, weights=[p.weight for p in candidates])
            if self._answers(chosen, read_at):
                return chosen.name
            candidates.remove(chosen)
        raise errors.BackendUnavailable(reason="no pool that may take the queue answers")

    def _answers(self, pool: Pool, read_at: float) -> bool:
        try:
            alive = self._current(pool, read_at).is_alive()
        except errors.StorageError as exc:
            LOG.warning("pool %s cannot be opened: %s", pool.name, exc)
            return False
        if not alive:
            LOG.warning("pool %s does not answer; new queues go elsewhere", pool.name)
        return alive
