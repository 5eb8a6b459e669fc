"""A Keystone-protected zaqar-server over real sockets: expiry closes websockets, clients keep working.

One ``zaqar-server`` with ``auth_strategy = keystone`` (``tests.functional.auth_setup``)
validates tokens against the local identity endpoint of ``tests.keystone``.
"""

from __future__ import annotations

import json
import struct
import time
import uuid

import pytest
import websocket
from zaqarclient.queues import client as zaqar
from zaqarclient.transport import errors
from zaqarclient.transport import request as zc_request
from zaqarclient.transport import ws as zc_ws

from tests.functional import auth_setup

pytestmark = [pytest.mark.slow, auth_setup.IGNORE_WEBOB_CGI]

keystone, auth_server = auth_setup.keystone, auth_setup.auth_server


def _connect(server) -> websocket.WebSocket:
    return websocket.create_connection(server.ws_url, timeout=15)


def _call(conn, action: str, token: str | None = None, **body) -> dict:
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "header-project"}
    if token is not None:
        headers["X-Auth-Token"] = token
    conn.send(json.dumps({"action": action, "headers": headers, "body": body}))
    return json.loads(conn.recv())


def _wait_for_close(conn) -> tuple[int, str]:
    """The code and reason of the server's close frame; fails if none comes within the socket timeout."""
    while True:
        frame = conn.recv_frame()  # raw frames: the client library would answer a close itself
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", frame.data[:2])[0], frame.data[2:].decode()


def test_a_connection_is_closed_when_its_token_expires(auth_server, keystone):
    project = f"p-{uuid.uuid4().hex[:8]}"
    conn = _connect(auth_server)
    try:
        started = time.monotonic()
        token = keystone.issue(project, lifetime=2.0)
        assert _call(conn, "authenticate", token)["headers"]["status"] == 200
        listed = _call(conn, "queue_list")
        assert (listed["headers"]["status"], listed["body"]) == (200, {"queues": []})
        assert _wait_for_close(conn) == (4003, "Authentication expired.")
        # the sweeper looks every 0.5 s: the close comes right after the expiry, not long after
        assert 1.5 <= time.monotonic() - started < 5.0
    finally:
        conn.close()


def test_reauthentication_replaces_the_expiry(auth_server, keystone):
    project = f"p-{uuid.uuid4().hex[:8]}"
    renewed, witness = _connect(auth_server), _connect(auth_server)
    try:
        short = keystone.issue(project, lifetime=2.0)
        assert _call(renewed, "authenticate", short)["headers"]["status"] == 200
        assert _call(witness, "authenticate", short)["headers"]["status"] == 200
        assert _call(renewed, "authenticate", keystone.issue(project))["headers"]["status"] == 200
        # once the witness, authenticated with the same short token, is closed, its time is up ...
        assert _wait_for_close(witness) == (4003, "Authentication expired.")
        # ... and a sweep (every 0.5 s) looked at every connection; give it one more look, then the
        # renewed connection must still be served: nothing to poll for, so a bounded wait.
        time.sleep(0.6)
        assert _call(renewed, "queue_list")["headers"]["status"] == 200
    finally:
        renewed.close()
        witness.close()


def test_unauthenticated_frames_get_403_and_the_connection_stays_open(auth_server, keystone):
    conn = _connect(auth_server)
    try:
        refused = _call(conn, "queue_list")
        assert (refused["headers"]["status"], refused["body"]) == (403, {"error": "Not authentified."})
        failed = _call(conn, "authenticate", "no-such-token")
        assert (failed["headers"]["status"], failed["body"]) == (401, {"error": "Authentication failed."})
        assert failed["request"] == {"action": "authenticate", "body": {}, "headers": {}, "api": "v2"}
        assert _call(conn, "authenticate", keystone.issue("p"))["headers"]["status"] == 200
    finally:
        conn.close()


def _zaqarclient(url: str, token: str, project: str) -> zaqar.Client:
    options = {"os_auth_token": token, "os_project_id": project}
    return zaqar.Client(url, version=2, conf={"auth_opts": {"backend": "keystone", "options": options}})


def test_python_zaqarclient_with_a_keystone_token(auth_server, keystone):
    project = f"p-{uuid.uuid4().hex[:8]}"
    client = _zaqarclient(auth_server.url, keystone.issue(project), project)
    queue = client.queue("jobs")
    queue.post({"body": {"task": "resize"}, "ttl": 300})
    assert [m.body for m in queue.claim(ttl=60, grace=60)] == [{"task": "resize"}]
    with pytest.raises(errors.UnauthorizedError):
        _zaqarclient(auth_server.url, "no-such-token", project).queue("jobs").post({"body": 1})



def _ws_list(url: str, token: str, project: str) -> list[str]:
    """python-zaqarclient's websocket transport: authenticate first (with the token), then queue_list."""
    options = {"os_auth_token": token, "os_project_id": project}
    conf = {"auth_opts": {"backend": "keystone", "options": options}}
    with zc_ws.WebsocketTransport(conf) as transport:
        listed = transport.send(zc_request.Request(url, "queue_list", content="{}"))
        return [q["name"] for q in json.loads(listed.content)["queues"]]


def test_python_zaqarclient_websocket_transport_with_a_keystone_token(auth_server, keystone):
    project = f"p-{uuid.uuid4().hex[:8]}"
    _zaqarclient(auth_server.url, keystone.issue(project), project).queue("jobs").post({"body": 1})
    assert _ws_list(auth_server.ws_url, keystone.issue(project), project) == ["jobs"]
    with pytest.raises(errors.UnauthorizedError):
        _ws_list(auth_server.ws_url, "no-such-token", project)


def test_python_zaqarclient_shares_and_uses_a_pre_signed_url(auth_server, keystone):
    project = f"p-{uuid.uuid4().hex[:8]}"
    owner = _zaqarclient(auth_server.url, keystone.issue(project), project)
    grant = owner.queue("shared").signed_url(paths=["messages"], methods=["GET", "POST"], ttl_seconds=600)
    assert grant["project"] == project and grant["paths"] == ["/v2/queues/shared/messages"]
    options = {k: grant[k] for k in ("expires", "methods", "paths", "signature")}
    options["os_project_id"] = project
    guest = zaqar.Client(auth_server.url, version=2,
                         conf={"auth_opts": {"backend": "signed-url", "options": options}})
    guest.queue("shared").post({"body": "from a guest", "ttl": 300})
    assert [m.body for m in guest.queue("shared").messages(echo=True)] == ["from a guest"]
    with pytest.raises(errors.ResourceNotFound):  # a grant for one queue opens no other
        guest.queue("elsewhere").post({"body": 1})
