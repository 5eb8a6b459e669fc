"""Keystone authentication over every transport (http-v2.md §0.2, §0.10; websocket.md §8).

Tokens come from a local identity endpoint (``tests.keystone``): valid, expired,
unknown, of another project, with and without the admin role. Over HTTP a
token travels on every request and a bad one is a 401 from keystonemiddleware;
over the websocket ``authenticate`` binds the connection once and everything
before it is a 403 ``Not authentified.``. The identity (project, roles) always
comes from the token, never from ``X-Project-ID`` or ``X-Roles``.
"""

from __future__ import annotations

import logging
import time
import uuid

import falcon.testing
import pytest

from tests.clients import HttpActionClient, WsActionClient
from tests.functional import auth_setup
from tests.functional.auth_setup import login, refused_unauthenticated
from tests.functional.conftest import ServerClosed
from zaqar.transport import wsgi
from zaqar.transport.wsgi.cors import CorsSettings

# This module's fixtures: Keystone on, for ``client`` over every transport.
api, client, keystone, keystone_auth, auth_server, project = (
    auth_setup.api, auth_setup.client, auth_setup.keystone, auth_setup.keystone_auth, auth_setup.auth_server,
    auth_setup.project)

pytestmark = auth_setup.IGNORE_WEBOB_CGI

NOT_AUTHORIZED = "You are not authorized to complete this action."


def _poll(check, timeout: float = 15.0, interval: float = 0.1):
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)


def test_a_valid_token_is_served_in_its_project(client, keystone, project):
    login(client, keystone.issue(project))
    assert client.call("queue_create", queue_name="jobs").status == 201
    assert client.call("message_post", queue_name="jobs", messages=[{"body": "hi", "ttl": 60}]).status == 201
    listed = client.call("message_list", queue_name="jobs", echo=True)
    assert (listed.status, [m["body"] for m in listed.body["messages"]]) == (200, ["hi"])


def test_nothing_is_served_without_a_token(client):
    refused_unauthenticated(client, client.call("queue_list"))
    refused_unauthenticated(client, client.call("message_post", queue_name="q", messages=[{"body": 1}]))


@pytest.mark.parametrize("kind", ["unknown", "expired", "revoked"])
def test_unknown_and_expired_tokens_are_refused(client, keystone, project, kind):
    if kind == "unknown":
        token = "0123456789abcdef0123456789abcdef"
    elif kind == "expired":
        token = keystone.issue(project, lifetime=-60)
    else:
        token = keystone.issue(project)
        keystone.forget(token)
    if isinstance(client, HttpActionClient):
        client.headers["X-Auth-Token"] = token
        refused_unauthenticated(client, client.call("queue_list"))
        return
    failed = client.call("authenticate", headers={"X-Auth-Token": token})
    assert (failed.status, failed.body) == (401, {"title": None, "description": "Authentication failed."})
    refused_unauthenticated(client, client.call("queue_list"))  # still unauthenticated afterwards


def test_the_project_is_the_tokens_whatever_the_header_says(client, keystone, project):
    other = project + "-other"
    login(client, keystone.issue(project))
    posted = client.call("message_post", queue_name="q", messages=[{"body": "mine"}],
                         headers={"X-Project-ID": other})
    assert posted.status == 201
    login(client, keystone.issue(other))  # a token of another project does not see it ...
    seen = client.call("message_list", queue_name="q", echo=True, headers={"X-Project-ID": project})
    assert (seen.status, seen.body["messages"]) == (200, [])
    login(client, keystone.issue(project))  # ... its own project does
    seen = client.call("message_list", queue_name="q", echo=True, headers={"X-Project-ID": other})
    assert [m["body"] for m in seen.body["messages"]] == ["mine"]


def test_admin_resources_need_the_admin_role_in_the_token(client, keystone, project):
    login(client, keystone.issue(project, roles=("member",)))
    spoofed = {"X-Roles": "admin"}
    for action, params in [("check_node_health", {}), ("pool_list", {}), ("pool_get", {"pool_name": "a"}),
                           ("flavor_create", {"flavor_name": "f", "pool_list": ["a"]})]:
        denied = client.call(action, headers=spoofed, **params)
        assert (denied.status, denied.body["description"]) == (403, NOT_AUTHORIZED), action
    login(client, keystone.issue(project, roles=("member", "admin")))
    health = client.call("check_node_health")
    assert health.status == 200 and health.body["catalog_reachable"] is True
    assert client.call("pool_list").status == 200


def test_a_token_stops_working_when_it_expires(client, keystone, project):
    login(client, keystone.issue(project, lifetime=2.0))
    assert client.call("queue_list").status == 200

    def refused():
        try:
            result = client.call("queue_list")
        except ServerClosed as closed:  # a live websocket may be closed (4003) before it answers 403
            assert closed.code == 4003
            return "closed"
        return result if result.status != 200 else None

    outcome = _poll(refused)
    if outcome != "closed":
        refused_unauthenticated(client, outcome)


def test_version_discovery_needs_no_token(client):
    if not isinstance(client, HttpActionClient):
        pytest.skip("HTTP only")
    assert client.call("get_versions").status == 300


def test_websocket_reauthentication_replaces_the_identity(client, keystone, project):
    if not isinstance(client, WsActionClient):
        pytest.skip("websocket only")
    other = project + "-other"
    login(client, keystone.issue(project))
    client.call("message_post", queue_name="q", messages=[{"body": "mine"}])
    login(client, keystone.issue(other))
    assert client.call("message_list", queue_name="q", echo=True).body["messages"] == []


def test_a_failed_reauthentication_leaves_the_connection_unauthenticated(client, keystone, project):
    if not isinstance(client, WsActionClient):
        pytest.skip("websocket only")
    login(client, keystone.issue(project))
    assert client.call("queue_list").status == 200
    assert client.call("authenticate", headers={"X-Auth-Token": "not-a-token"}).status == 401
    refused_unauthenticated(client, client.call("queue_list"))


def test_websocket_authenticate_still_checks_its_schema(client):
    if not isinstance(client, WsActionClient):
        pytest.skip("websocket only")
    reply = client.raw({"action": "authenticate", "headers": {"X-Project-ID": "p"}})
    assert (reply["headers"]["status"], reply["body"]) == (400, {"error": "Schema validation failed."})


def test_cors_preflights_pass_without_a_token_and_requests_still_need_one(api, keystone_auth, keystone):
    """Browsers send no credentials on a pre-flight; the request that follows carries its token."""
    origin = "https://dash.example.com"
    app = wsgi.build_app(api, token_auth=True, cors=CorsSettings(allowed_origins=(origin,)))
    http = falcon.testing.TestClient(keystone_auth.wrap(app))
    preflight = http.simulate_options("/v2/queues", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "X-Auth-Token, Client-ID"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    headers = {"Origin": origin, "Client-ID": str(uuid.uuid4()), "X-Project-ID": "p"}
    assert http.simulate_get("/v2/queues", headers=headers).status_code == 401
    listed = http.simulate_get("/v2/queues", headers={**headers, "X-Auth-Token": keystone.issue("p")})
    assert (listed.status_code, listed.headers["access-control-allow-origin"]) == (200, origin)
    # without CORS, an OPTIONS that looks like a pre-flight reaches the app, which wants a token
    bare = falcon.testing.TestClient(keystone_auth.wrap(wsgi.build_app(api, token_auth=True)))
    unauth = bare.simulate_options("/v2/queues", headers={**headers, "Access-Control-Request-Method": "GET"})
    assert unauth.status_code == 401


# -- tokens of no project, odd tokens, the middleware's own refusals (review 8 #1, #4, #10) ------------

@pytest.mark.parametrize("domain", [False, True], ids=["unscoped", "domain-scoped"])
def test_a_token_of_no_project_is_refused_so_such_tokens_never_share_a_namespace(client, keystone, domain):
    first, second = keystone.issue(None, domain=domain, user="mallory"), keystone.issue(None, domain=domain)
    if isinstance(client, HttpActionClient):
        for token in (first, second):
            client.headers["X-Auth-Token"] = token
            for action, params in [("queue_list", {}), ("message_post", {"queue_name": "shared",
                                                                         "messages": [{"body": "x"}]})]:
                refused = client.call(action, **params)
                assert (refused.status, refused.body) == (400, {
                    "title": "Project-Id Missing", "description": "The header X-PROJECT-ID was missing"})
        return
    for token in (first, second):  # authenticate itself refuses: the connection never acts for "None"
        failed = client.call("authenticate", headers={"X-Auth-Token": token})
        assert (failed.status, failed.body) == (400, {"title": None, "description": "Authentication failed."})
        refused_unauthenticated(client, client.call("message_post", queue_name="shared",
                                                    messages=[{"body": "secret"}]))
        refused_unauthenticated(client, client.call("queue_list"))


def test_a_token_with_surrounding_blanks_is_the_token(client, keystone, project):
    if not isinstance(client, WsActionClient):
        pytest.skip("websocket only: an HTTP server strips them itself")
    login(client, f" {keystone.issue(project)}\t")
    assert client.call("queue_list").status == 200


def test_a_project_token_after_a_refused_one_of_no_project_works(client, keystone, project):
    if not isinstance(client, WsActionClient):
        pytest.skip("websocket only")
    assert client.call("authenticate", headers={"X-Auth-Token": keystone.issue(None)}).status == 400
    login(client, keystone.issue(project))
    assert client.call("queue_list").status == 200


ODD_TOKENS = ["\u2603snow", "a\nb", "a\r\nX-Subject-Token: {good}", "x" * 100_000, "\x00", "tab\there",
              "é" * 10]


@pytest.mark.parametrize("odd", ODD_TOKENS, ids=["non-latin-1", "newline", "crlf-injection", "100-kB",
                                                 "nul", "tab", "latin-1"])
def test_odd_tokens_get_401_without_a_keystone_round_trip_or_a_traceback(client, keystone, project, odd,
                                                                        caplog):
    token = odd.replace("{good}", keystone.issue(project))
    before = keystone.validations
    if isinstance(client, HttpActionClient):
        if not all(" " < c <= "\xff" for c in token):
            pytest.skip("not a value an HTTP header can carry")
        if len(token) > 16 * 1024:
            pytest.skip("over HTTP a head this large is refused by the server itself (431)")
        client.headers["X-Auth-Token"] = token
        refused = client.call("queue_list")
        assert (refused.status, refused.body["title"]) == (401, "Unauthorized")
    else:
        failed = client.call("authenticate", headers={"X-Auth-Token": token})
        assert (failed.status, failed.body) == (401, {"title": None, "description": "Authentication failed."})
        login(client, keystone.issue(project))  # and the connection is fine for a good token after it
    assert keystone.validations - before <= (0 if isinstance(client, HttpActionClient) else 1)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_keystonemiddleware_refusals_are_json_in_the_documented_shape(client, keystone):
    if not isinstance(client, HttpActionClient):
        pytest.skip("HTTP only")
    for token in (None, "0123456789abcdef0123456789abcdef"):  # none, and one Keystone does not know
        client.headers.pop("X-Auth-Token", None)
        if token is not None:
            client.headers["X-Auth-Token"] = token
        refused = client.call("queue_list")
        assert refused.status == 401
        assert refused.body == {"title": "Unauthorized",
                                "description": "The request you have made requires authentication."}
        assert refused.headers["content-type"] == "application/json"
        assert refused.headers["www-authenticate"].startswith("Keystone uri=")
