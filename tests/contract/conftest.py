"""The storage contract suite runs against every driver through one fixture.

sqlite always runs; redis, sqlalchemy (PostgreSQL) and sqlalchemy-mysql (MySQL or
MariaDB, the same driver) run against the real servers named by
ZAQAR_TEST_REDIS_URL / ZAQAR_TEST_SQL_URL / ZAQAR_TEST_MYSQL_URL (tests/backends.py).
``pooled-sqlite`` (two SQLite pools) and ``pooled-mixed`` (a SQLite, a Redis and
a PostgreSQL pool) run the same suite through the pooled store, whose
management store is a SQLite file; queues land on pools at random by weight.
The tests themselves never name a driver: they skip on capabilities.
A driver with a read cache (Redis, PostgreSQL) is handed over only once the
cache is in use, so the whole suite runs through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tests import backends
from tests.conftest import FakeClock
from zaqar import storage
from zaqar.storage.base import Capability, DataDriver
from zaqar.storage.cache import Cache


@contextmanager
def _sqlite(tmp: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp / 'zaqar.sqlite'}"


@contextmanager
def _pools(tmp: Path, *others: AbstractContextManager[str]) -> Iterator[str]:
    """Pool URIs joined by spaces: the given servers' and SQLite files (two when alone, else one)."""
    with contextlib.ExitStack() as stack:
        uris = [f"sqlite:///{tmp / f'pool-{n}.sqlite'}" for n in range(1 if others else 2)]
        uris += [stack.enter_context(other) for other in others]
        yield " ".join(uris)


DRIVERS = {
    "sqlite": _sqlite,
    "redis": lambda tmp: backends.redis_uri(),
    "sqlalchemy": lambda tmp: backends.sql_uri(),
    "sqlalchemy-mysql": lambda tmp: backends.mysql_uri(),
    "pooled-sqlite": lambda tmp: _pools(tmp),
    "pooled-mixed": lambda tmp: _pools(tmp, backends.redis_uri(), backends.sql_uri()),
}


def pooled_store(control_uri: str, pool_uris: list[str], clock: FakeClock) -> DataDriver:
    """A pooled store over the given pools (weight 100 each), its catalog in ``control_uri``."""
    from zaqar.storage import pooling

    control = storage.load_control_driver("sqlite", control_uri)
    for number, uri in enumerate(pool_uris):
        control.pools.create(f"pool-{number}", uri, 100)
    return pooling.DataDriver(control, clock=clock)


def _open(name: str, uri: str, clock: FakeClock, tmp: Path) -> DataDriver:
    if name.startswith("pooled"):
        return pooled_store(f"sqlite:///{tmp / 'catalog.sqlite'}", uri.split(" "), clock)
    return storage.load_data_driver(name.partition("-")[0], uri, clock=clock)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(*capabilities): skip unless the driver has them")


def _required_capabilities(request: pytest.FixtureRequest) -> set[Capability]:
    needed: set[Capability] = set()
    for marker in request.node.iter_markers("requires"):
        needed.update(marker.args)
    return needed


@pytest.fixture(params=sorted(DRIVERS))
def driver_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    target: AbstractContextManager[str] = DRIVERS[request.param](tmp_path)
    with target as uri:
        yield request.param, uri


@pytest.fixture
def store(
    driver_uri: tuple[str, str], clock: FakeClock, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[DataDriver]:
    name, uri = driver_uri
    driver = _open(name, uri, clock, tmp_path)
    missing = _required_capabilities(request) - set(driver.capabilities)
    if missing:
        driver.close()
        pytest.skip(f"driver lacks {', '.join(sorted(c.value for c in missing))}")
    cache = getattr(driver, "cache", None)
    if isinstance(cache, Cache) and not cache.wait_active(10):
        driver.close()
        pytest.fail("the store's cache never subscribed to its invalidation channel")
    yield driver
    driver.close()
