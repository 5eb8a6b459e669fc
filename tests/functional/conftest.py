"""In-process functional suite: every test runs over each transport through one fixture."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients import HttpActionClient, WsActionClient, falcon_send
from tests.conftest import FakeClock
from zaqar import storage
from zaqar.api import Api, Context, Features
from zaqar.transport import wsgi
from zaqar.transport.websocket import protocol

TRANSPORTS = ["http", "websocket-json", "websocket-msgpack"]


@pytest.fixture
def api(tmp_path: Path, clock: FakeClock) -> Iterator[Api]:
    store = storage.load_data_driver("sqlite", f"sqlite:///{tmp_path / 'zaqar.sqlite'}", clock=clock)
    yield Api(Context(store=store, clock=clock, features=Features(admin_mode=True)))
    store.close()


@pytest.fixture(params=TRANSPORTS)
def client(request: pytest.FixtureRequest, api: Api) -> HttpActionClient | WsActionClient:
    if request.param == "http":
        return HttpActionClient(falcon_send(wsgi.build_app(api)))
    binary = request.param.endswith("msgpack")
    return WsActionClient(functools.partial(protocol.handle_frame, api), binary=binary)


@pytest.fixture
def http_client(api: Api) -> HttpActionClient:
    """For operations only HTTP has (queue HEAD and PATCH, websocket.md §6.1)."""
    return HttpActionClient(falcon_send(wsgi.build_app(api)))
