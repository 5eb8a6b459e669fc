"""The storage contract suite runs against every driver through one fixture.

Each later driver adds one entry to DRIVER_URIS; the tests themselves never
name a driver (they skip on capabilities: mark a test or module with
``@pytest.mark.requires(Capability.CLAIMS)`` and the ``store`` fixture skips it
for a driver that lacks the capability).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from zaqar import storage
from zaqar.storage.base import Capability, DataDriver

DRIVER_URIS: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda tmp: f"sqlite:///{tmp / 'zaqar.sqlite'}",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(*capabilities): skip unless the driver has them")


def _required_capabilities(request: pytest.FixtureRequest) -> set[Capability]:
    needed: set[Capability] = set()
    for marker in request.node.iter_markers("requires"):
        needed.update(marker.args)
    return needed


@pytest.fixture(params=sorted(DRIVER_URIS))
def driver_uri(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    return request.param, DRIVER_URIS[request.param](tmp_path)


@pytest.fixture
def store(
    driver_uri: tuple[str, str], clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[DataDriver]:
    name, uri = driver_uri
    driver = storage.load_data_driver(name, uri, clock=clock)
    missing = _required_capabilities(request) - set(driver.capabilities)
    if missing:
        driver.close()
        pytest.skip(f"driver lacks {', '.join(sorted(c.value for c in missing))}")
    yield driver
    driver.close()
