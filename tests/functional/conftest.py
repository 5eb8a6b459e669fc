"""In-process functional suite: every test runs over each transport through one fixture."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients import HttpActionClient
from tests.conftest import FakeClock
from zaqar import storage
from zaqar.api import Api, Context, Features
from zaqar.transport import wsgi

TRANSPORTS = ["http"]


@pytest.fixture
def api(tmp_path: Path, clock: FakeClock) -> Iterator[Api]:
    store = storage.load_data_driver("sqlite", f"sqlite:///{tmp_path / 'zaqar.sqlite'}", clock=clock)
    yield Api(Context(store=store, clock=clock, features=Features(admin_mode=True)))
    store.close()


@pytest.fixture(params=TRANSPORTS)
def client(request: pytest.FixtureRequest, api: Api) -> HttpActionClient:
    return HttpActionClient(wsgi.build_app(api))
