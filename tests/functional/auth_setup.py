"""Fixtures for the auth suites: Keystone on, over every transport, with a local identity endpoint.

A test module imports these names to override the suite-wide ``api`` and
``client``. In process, the HTTP client goes through the app wrapped exactly
as ``zaqar-server`` wraps it (keystonemiddleware in front, talking to
``tests.keystone.FakeKeystone`` over loopback) and the websocket clients
through the protocol functions with a connection ``Session`` and the same
middleware instance. Over real sockets (marked slow), one ``zaqar-server``
with ``auth_strategy = keystone`` serves the session. The Api is admin-mode
and pooled, so pools, flavors and health exist, and has a signed-URL key.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients import HttpActionClient, Result, WsActionClient, falcon_send, requests_send
from tests.conftest import FakeClock
from tests.functional.conftest import IN_PROCESS, OVER_SOCKETS, Client, _socket_frames
from tests.keystone import FakeKeystone
from tests.server import ServerProcess, running_server
from zaqar import bootstrap, storage
from zaqar import conf as zconf
from zaqar.api import Api, Context, Features
from zaqar.storage import pooling
from zaqar.transport import wsgi
from zaqar.transport.auth import KeystoneAuth
from zaqar.transport.websocket import protocol

# keystonemiddleware imports webob, which imports the deprecated cgi module (Python 3.11).
IGNORE_WEBOB_CGI = pytest.mark.filterwarnings("ignore:'cgi' is deprecated:DeprecationWarning")

SECRET = "pre-signed-url-test-key"
KEYSTONE = "keystone"
AUTH_TRANSPORTS = IN_PROCESS + [
    pytest.param(f"{name}@{KEYSTONE}", marks=pytest.mark.slow) for name in OVER_SOCKETS
]


def server_options(keystone: FakeKeystone) -> dict[str, dict[str, str]]:
    return {
        "DEFAULT": {"auth_strategy": "keystone", "admin_mode": "true", "pooling": "true"},
        "pooling:catalog": {"enable_virtual_pool": "true"},
        "signed_url": {"secret_key": SECRET},
        "keystone_authtoken": keystone.options,
    }


@pytest.fixture(scope="session")
def keystone() -> Iterator[FakeKeystone]:
    with FakeKeystone() as running:
        yield running


@pytest.fixture(scope="session")
def keystone_auth(keystone: FakeKeystone, tmp_path_factory: pytest.TempPathFactory) -> KeystoneAuth:
    """The middleware as bootstrap builds it from a zaqar.conf with ``auth_strategy = keystone``."""
    path = tmp_path_factory.mktemp("keystone-conf") / "zaqar.conf"
    path.write_text("".join(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
                            for section, values in server_options(keystone).items()))
    conf = zconf.load(["--config-file", str(path)])
    found = bootstrap.authenticator(conf)
    assert found is not None
    return found


@pytest.fixture
def api(tmp_path: Path, clock: FakeClock) -> Iterator[Api]:
    """Admin-mode and pooled over two SQLite pools, with a signed-URL key, in process."""
    control = storage.load_control_driver("sqlite", f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    for name in ("a", "b"):
        control.pools.create(name, f"sqlite:///{tmp_path / f'pool-{name}.sqlite'}", 100)
    store = pooling.DataDriver(control, clock=clock)
    yield Api(Context(store=store, clock=clock, features=Features(admin_mode=True, pooling=True),
                      control=control, pool_store=store.pool_store, signed_url_key=SECRET))
    store.close()


@pytest.fixture(scope="session")
def auth_server(keystone: FakeKeystone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("keystone-server"), options=server_options(keystone)) as srv:
        yield srv


def in_process_http(api: Api, auth: KeystoneAuth) -> HttpActionClient:
    """HTTP through the app as zaqar-server serves it with keystone on."""
    return HttpActionClient(falcon_send(auth.wrap(wsgi.build_app(api, token_auth=True))))


def in_process_websocket(api: Api, auth: KeystoneAuth, binary: bool) -> WsActionClient:
    """One websocket connection's frames through the protocol, with its own session."""
    send = functools.partial(protocol.handle_frame, api, session=protocol.Session(), auth=auth)
    return WsActionClient(send, binary=binary)


@pytest.fixture(params=AUTH_TRANSPORTS)
def client(request: pytest.FixtureRequest, keystone_auth: KeystoneAuth) -> Iterator[Client]:
    """A client with no credentials yet, on a Keystone-protected server."""
    name, _, where = request.param.partition("@")
    binary = "msgpack" in name
    if not where:
        api = request.getfixturevalue("api")
        if name == "http":
            yield in_process_http(api, keystone_auth)
        else:
            yield in_process_websocket(api, keystone_auth, binary)
        return
    if "clock" in request.fixturenames:
        pytest.skip("moves the server's clock: runs in process only")
    server = request.getfixturevalue("auth_server")
    if name == "http-socket":
        yield HttpActionClient(requests_send(server.url))
        return
    conn, send = _socket_frames(server.ws_url)
    try:
        yield WsActionClient(send, binary=binary)
    finally:
        conn.close()
        conn.shutdown()  # NOTE: close() does nothing once the server closed first (4003 at token expiry)


@pytest.fixture
def project() -> str:
    """Tokens name the project; a fresh one per test keeps tests apart on a shared server."""
    return f"p-{uuid.uuid4().hex[:12]}"


def login(client: Client, token: str) -> None:
    """Present ``token`` from now on: on every HTTP request, or once per websocket connection."""
    if isinstance(client, HttpActionClient):
        client.headers["X-Auth-Token"] = token
        return
    reply = client.call("authenticate", headers={"X-Auth-Token": token})
    assert (reply.status, reply.body) == (200, {"message": "Authentified."}), reply.body


def refused_unauthenticated(client: Client, result: Result) -> None:
    """HTTP: keystonemiddleware's 401; websocket: the gate's 403 (websocket.md §8.1)."""
    if isinstance(client, HttpActionClient):
        assert result.status == 401, result.body
        assert result.headers["www-authenticate"].startswith("Keystone uri=")
    else:
        assert (result.status, result.body) == (403, {"title": None, "description": "Not authentified."})


@pytest.fixture
def sharer(request: pytest.FixtureRequest, keystone: FakeKeystone, project: str
           ) -> Callable[..., dict[str, Any]]:
    """``share(queue, **fields)``: a pre-signed URL for ``project``, created over HTTP with a token.

    In process on the test's Api, over sockets on the live server (share is HTTP only).
    """
    variant = str(request.node.callspec.params["client"])
    if "@" in variant:
        http = HttpActionClient(requests_send(request.getfixturevalue("auth_server").url))
    else:
        http = in_process_http(request.getfixturevalue("api"), request.getfixturevalue("keystone_auth"))
    http.headers["X-Auth-Token"] = keystone.issue(project)

    def share(queue: str, **fields: Any) -> dict[str, Any]:
        result = http.call("queue_share", queue_name=queue, **fields)
        assert result.status == 200, result.body
        return result.body

    return share
