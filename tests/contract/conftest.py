"""The storage contract suite runs against every driver through one fixture.

sqlite always runs; redis, sqlalchemy (PostgreSQL) and sqlalchemy-mysql (MySQL or
MariaDB, the same driver) run against the real servers named by
ZAQAR_TEST_REDIS_URL / ZAQAR_TEST_SQL_URL / ZAQAR_TEST_MYSQL_URL (tests/backends.py).
The tests themselves never name a driver: they skip on capabilities.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tests import backends
from tests.conftest import FakeClock
from zaqar import storage
from zaqar.storage.base import Capability, DataDriver


@contextmanager
def _sqlite(tmp: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp / 'zaqar.sqlite'}"


DRIVERS = {
    "sqlite": _sqlite,
    "redis": lambda tmp: backends.redis_uri(),
    "sqlalchemy": lambda tmp: backends.sql_uri(),
    "sqlalchemy-mysql": lambda tmp: backends.mysql_uri(),
}


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
    driver_uri: tuple[str, str], clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[DataDriver]:
    name, uri = driver_uri
    driver = storage.load_data_driver(name.partition("-")[0], uri, clock=clock)
    missing = _required_capabilities(request) - set(driver.capabilities)
    if missing:
        driver.close()
        pytest.skip(f"driver lacks {', '.join(sorted(c.value for c in missing))}")
    yield driver
    driver.close()
