"""The functional suite: every test runs over each transport through one fixture.

In process (fast, with a clock tests can move): ``http`` through falcon's
test client, ``websocket-json`` and ``websocket-msgpack`` through the
websocket protocol functions, on SQLite. Over real sockets against a real
zaqar-server (marked slow): the same three transports, through ``requests``
with keep-alive and through websocket-client connections, with the server on
each message store (sqlite, redis, sqlalchemy/PostgreSQL). Each test gets a
fresh project, so one server per store serves the whole session.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import websocket

from tests import backends
from tests.clients import FrameSend, HttpActionClient, WsActionClient, falcon_send, requests_send
from tests.conftest import FakeClock
from tests.server import ServerProcess, running_server
from zaqar import storage
from zaqar.api import Api, Context, Features
from zaqar.transport import wsgi
from zaqar.transport.websocket import protocol

IN_PROCESS = ["http", "websocket-json", "websocket-msgpack"]
OVER_SOCKETS = ["http-socket", "websocket-json-socket", "websocket-msgpack-socket"]
# "pooled": pooling on, queues spread over a SQLite, a Redis and a PostgreSQL pool.
STORES = {"sqlite": None, "redis": backends.redis_uri, "sqlalchemy": backends.sql_uri, "pooled": None}
TRANSPORTS = IN_PROCESS + [f"{name}@pooled" for name in IN_PROCESS] + [
    pytest.param(f"{name}@{store}", marks=pytest.mark.slow) for store in STORES for name in OVER_SOCKETS
]
ADMIN = {"X-Roles": "admin"}

Client = HttpActionClient | WsActionClient


@pytest.fixture
def api(tmp_path: Path, clock: FakeClock) -> Iterator[Api]:
    store = storage.load_data_driver("sqlite", f"sqlite:///{tmp_path / 'zaqar.sqlite'}", clock=clock)
    yield Api(Context(store=store, clock=clock, features=Features(admin_mode=True)))
    store.close()


@pytest.fixture
def pooled_api(tmp_path: Path, clock: FakeClock) -> Iterator[Api]:
    """Pooling on over two SQLite pools, in process."""
    from zaqar.storage import pooling

    control = storage.load_control_driver("sqlite", f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    for name in ("a", "b"):
        control.pools.create(name, f"sqlite:///{tmp_path / f'pool-{name}.sqlite'}", 100)
    store = pooling.DataDriver(control, clock=clock)
    features = Features(admin_mode=True, pooling=True)
    yield Api(Context(store=store, clock=clock, features=features, control=control,
                      pool_store=store.pool_store))
    store.close()


@contextlib.contextmanager
def _pooled_server(workdir: Path) -> Iterator[ServerProcess]:
    """A pooled zaqar-server whose pools (SQLite, Redis, PostgreSQL) are registered through its API."""
    with contextlib.ExitStack() as stack:
        uris = [f"sqlite:///{workdir / 'pool-sqlite.sqlite'}",
                stack.enter_context(backends.redis_uri()), stack.enter_context(backends.sql_uri())]
        options = {"DEFAULT": {"admin_mode": "true", "pooling": "true"}}
        server = stack.enter_context(running_server(workdir, options=options))
        admin = HttpActionClient(requests_send(server.url), project="functional-admin")
        for number, uri in enumerate(uris):
            created = admin.call("pool_create", headers=ADMIN, pool_name=f"pool-{number}", uri=uri,
                                 weight=100)
            assert created.status == 201, created.body
        yield server


@pytest.fixture(scope="session")
def live_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], ServerProcess]]:
    """One zaqar-server per message store, started on first use and stopped at the end."""
    servers: dict[str, ServerProcess] = {}
    with contextlib.ExitStack() as stack:

        def get(store: str) -> ServerProcess:
            if store not in servers:
                workdir = tmp_path_factory.mktemp(f"server-{store}")
                if store == "pooled":
                    servers[store] = stack.enter_context(_pooled_server(workdir))
                    return servers[store]
                options: dict[str, dict[str, str]] = {"DEFAULT": {"admin_mode": "true"}}
                uri_of = STORES[store]
                if uri_of is not None:
                    uri = stack.enter_context(uri_of())
                    options["drivers"] = {"message_store": store}
                    options[f"drivers:message_store:{store}"] = {"uri": uri}
                servers[store] = stack.enter_context(running_server(workdir, options=options))
            return servers[store]

        yield get


class ServerClosed(ConnectionError):
    """The server answered a request by closing the websocket (e.g. 4003 when a token expired)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"the server closed the websocket with {code}")
        self.code = code


def _socket_frames(url: str) -> tuple[websocket.WebSocket, FrameSend]:
    conn = websocket.create_connection(url, timeout=30)

    def send(data: bytes, binary: bool) -> bytes:
        if binary:
            conn.send_binary(data)
        else:
            conn.send(data.decode())
        opcode, reply = conn.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ServerClosed(int.from_bytes(reply[:2], "big") if len(reply) >= 2 else None)
        return reply

    return conn, send


@pytest.fixture(params=TRANSPORTS)
def client(request: pytest.FixtureRequest) -> Iterator[Client]:
    name, _, store = request.param.partition("@")
    binary = "msgpack" in name
    if name in IN_PROCESS:
        api = request.getfixturevalue("pooled_api" if store == "pooled" else "api")
        if name == "http":
            yield HttpActionClient(falcon_send(wsgi.build_app(api)))
        else:
            yield WsActionClient(functools.partial(protocol.handle_frame, api), binary=binary)
        return
    if "clock" in request.fixturenames:
        pytest.skip("moves the server's clock: runs in process only")
    server = request.getfixturevalue("live_servers")(store)
    project = f"functional-{uuid.uuid4().hex}"
    if name == "http-socket":
        yield HttpActionClient(requests_send(server.url), project=project)
        return
    conn, send = _socket_frames(server.ws_url)
    try:
        yield WsActionClient(send, binary=binary, project=project)
    finally:
        conn.close()


@pytest.fixture
def pooled(request: pytest.FixtureRequest) -> bool:
    """Whether this test's ``client`` talks to a pooled server."""
    return str(request.node.callspec.params.get("client", "")).endswith("@pooled")


@pytest.fixture
def http_client(api: Api) -> HttpActionClient:
    """For operations only HTTP has (queue HEAD and PATCH, websocket.md §6.1)."""
    return HttpActionClient(falcon_send(wsgi.build_app(api)))
