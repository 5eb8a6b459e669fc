"""Fixtures for the pool and flavor suites: an admin-mode, pooled server, and an admin caller.

A test module imports these names to override the suite-wide ``api`` fixture
with a pooled one: the message store is the pooled composite over a SQLite
management store in ``tmp_path``, so queues really get placed on the pools
the tests register.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.clients import Result
from tests.conftest import FakeClock
from tests.functional.conftest import IN_PROCESS
from zaqar import storage
from zaqar.api import Api, Context, Features
from zaqar.storage import pooling

POOLED_IN_PROCESS = [f"{name}@pooled" for name in IN_PROCESS]


def preregistered(request: pytest.FixtureRequest) -> bool:
    """Whether the test's server had pools before the test started (the ``@pooled`` variants)."""
    return str(request.node.callspec.params.get("client", "")).endswith("@pooled")


@pytest.fixture
def api(tmp_path: Path, clock: FakeClock) -> Iterator[Api]:
    control = storage.load_control_driver("sqlite", f"sqlite:///{tmp_path / 'control.sqlite'}")
    store = pooling.DataDriver(control, clock=clock)
    features = Features(admin_mode=True, pooling=True)
    yield Api(Context(store=store, clock=clock, features=features, control=control,
                      pool_store=store.pool_store))
    store.close()  # closes the management store too


@pytest.fixture(autouse=True)
def admin_role(request: pytest.FixtureRequest) -> None:
    """Every ``client`` call runs as admin unless it sends other roles.

    The in-process variants run: the plain ones on the module's ``api``
    (pooling on, no pool registered yet), the ``@pooled`` ones on the suite's
    pooled Api or its pooled live server (pools registered beforehand; the
    tests only look at what they created themselves). The other real-socket
    variants are skipped before any server starts: those servers run without
    pooling.
    """
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or "client" not in callspec.params:
        return
    variant = str(callspec.params["client"])
    if variant not in IN_PROCESS and not variant.endswith("@pooled"):
        pytest.skip("a live server without pooling offers no pools or flavors")
    request.getfixturevalue("client").headers["X-Roles"] = "admin"


@pytest.fixture
def prefix() -> str:
    """Pools are global: on a shared live server, names must not clash between tests."""
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def uri(tmp_path: Path) -> Callable[[int], str]:
    """The URI of the n-th pool: a SQLite file, which ``storage.probe`` accepts."""
    return lambda n: f"sqlite:///{tmp_path / f'pool{n}.sqlite'}"


def create_pool(client, name: str, uri: str, weight: int = 10, **extra) -> Result:
    result = client.call("pool_create", pool_name=name, uri=uri, weight=weight, **extra)
    assert result.status == 201, result.body
    return result
