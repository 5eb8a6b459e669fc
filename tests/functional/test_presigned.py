"""Pre-signed URLs over every transport, with Keystone on (http-v2.md §8.3, websocket.md §10).

A grant comes from ``share`` (HTTP, with a token); the tests then use it with
no token at all: over HTTP in ``URL-*`` headers (keystonemiddleware is
bypassed, the app verifies; a refusal is 404 ``{"title": "404 Not Found"}``),
over the websocket in the envelope headers of a connection that never
authenticated (a refusal is 403 ``Not authentified.``). Valid, expired,
tampered, wrong-path and wrong-method grants, on each transport.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest

from tests.clients import HttpActionClient, Result, WsActionClient
from tests.functional import auth_setup

pytestmark = auth_setup.IGNORE_WEBOB_CGI

# This module's fixtures: Keystone on, for ``client`` over every transport, and ``sharer``.
api, client, keystone, keystone_auth, auth_server, project, sharer = (
    auth_setup.api, auth_setup.client, auth_setup.keystone, auth_setup.keystone_auth, auth_setup.auth_server,
    auth_setup.project, auth_setup.sharer)

MESSAGES = [{"body": {"task": "resize"}, "ttl": 300}]


def signed(client: Any, grant: dict[str, Any], **changed: Any) -> dict[str, Any]:
    """The headers carrying ``grant`` (with ``changed`` values): comma lists on HTTP, arrays in envelopes."""
    grant = {**grant, **changed}
    as_text = isinstance(client, HttpActionClient)
    return {
        "URL-Signature": grant["signature"],
        "URL-Expires": grant["expires"],
        "URL-Methods": ",".join(grant["methods"]) if as_text else grant["methods"],
        "URL-Paths": ",".join(grant["paths"]) if as_text else grant["paths"],
        "X-Project-ID": grant["project"],
    }


def assert_refused(client: Any, result: Result) -> None:
    if isinstance(client, HttpActionClient):
        assert (result.status, result.body) == (404, {"title": "404 Not Found"})
    else:
        assert (result.status, result.body) == (403, {"title": None, "description": "Not authentified."})


def test_a_grant_lets_its_holder_use_the_queues_messages(client, sharer, project):
    grant = sharer("jobs", methods=["GET", "POST", "DELETE"])
    assert grant["project"] == project and grant["paths"] == ["/v2/queues/jobs/messages"]
    headers = signed(client, grant)
    posted = client.call("message_post", queue_name="jobs", messages=MESSAGES, headers=headers)
    assert posted.status == 201, posted.body
    message_id = posted.body["resources"][0].rsplit("/", 1)[1]
    listed = client.call("message_list", queue_name="jobs", echo=True, headers=headers)
    assert [m["body"] for m in listed.body["messages"]] == [{"task": "resize"}]
    got = client.call("message_get", queue_name="jobs", message_id=message_id, headers=headers)
    assert (got.status, got.body["id"]) == (200, message_id)
    deleted = client.call("message_delete", queue_name="jobs", message_id=message_id, headers=headers)
    assert deleted.status == 204
    assert client.call("message_list", queue_name="jobs", echo=True, headers=headers).body["messages"] == []


def test_the_grant_acts_for_the_signed_project_only(client, sharer, keystone, project):
    grant = sharer("jobs", methods=["POST"])
    assert client.call("message_post", queue_name="jobs", messages=MESSAGES,
                       headers=signed(client, grant)).status == 201
    auth_setup.login(client, keystone.issue(project))
    listed = client.call("message_list", queue_name="jobs", echo=True)
    assert [m["body"] for m in listed.body["messages"]] == [{"task": "resize"}]


def test_an_expired_grant_is_refused(client, sharer, clock):
    grant = sharer("jobs")
    assert client.call("message_list", queue_name="jobs", headers=signed(client, grant)).status == 200
    clock.advance(24 * 3600 + 1)  # the default lifetime is one day
    assert_refused(client, client.call("message_list", queue_name="jobs", headers=signed(client, grant)))


def test_a_grant_stops_working_at_its_expiry_on_a_live_server(client, sharer, request):
    if "@" not in str(request.node.callspec.params["client"]):
        pytest.skip("real time: the in-process variants move the clock instead (test above)")
    expires = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(seconds=2)
    grant = sharer("jobs", expires=expires.isoformat())
    headers = signed(client, grant)
    assert client.call("message_list", queue_name="jobs", headers=headers).status == 200
    deadline = time.monotonic() + 15
    while (result := client.call("message_list", queue_name="jobs", headers=headers)).status == 200:
        assert time.monotonic() < deadline, "the grant outlived its expiry"
        time.sleep(0.2)
    assert_refused(client, result)


@pytest.mark.parametrize("tamper", ["signature", "methods", "paths", "project", "expires"])
def test_a_tampered_grant_is_refused(client, sharer, project, tamper):
    grant = sharer("jobs", methods=["GET"])
    queue = "jobs"
    if tamper == "signature":
        changed = {"signature": grant["signature"][:-1] + ("0" if grant["signature"][-1] != "0" else "1")}
    elif tamper == "methods":
        changed = {"methods": ["GET", "POST"]}
    elif tamper == "paths":
        queue = "other"
        changed = {"paths": ["/v2/queues/other/messages"]}
    elif tamper == "project":
        changed = {"project": project + "-other"}
    else:
        changed = {"expires": "2099-01-01T00:00:00"}
    headers = signed(client, grant, **changed)
    assert_refused(client, client.call("message_list", queue_name=queue, headers=headers))
    if tamper == "methods":
        posted = client.call("message_post", queue_name=queue, messages=MESSAGES, headers=headers)
        assert_refused(client, posted)


@pytest.mark.parametrize("expires", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00",
                                     "9999-12-31T23:59:59.999999-23:59"])
def test_an_expiry_no_datetime_holds_is_refused_and_the_connection_still_serves(client, sharer, expires):
    """Review 8 #3: with no credentials, HTTP got a 500 and a traceback; a websocket was dropped."""
    grant = sharer("jobs")
    refused = client.call("message_list", queue_name="jobs", headers=signed(client, grant, expires=expires))
    assert_refused(client, refused)
    listed = client.call("message_list", queue_name="jobs", headers=signed(client, grant))  # same connection
    assert listed.status == 200, listed.body


@pytest.mark.parametrize("spelling", ["{}Z", "{}+00:00", "{}.999999"])
def test_only_the_expiry_as_shared_verifies(client, sharer, spelling):
    """Other spellings of the signed instant verified with the same signature (review 8 nit)."""
    grant = sharer("jobs")
    respelled = signed(client, grant, expires=spelling.format(grant["expires"]))
    assert_refused(client, client.call("message_list", queue_name="jobs", headers=respelled))


def test_a_grant_opens_no_other_path(client, sharer):
    grant = sharer("jobs", methods=["GET", "POST"])
    headers = signed(client, grant)
    assert_refused(client, client.call("message_list", queue_name="other", headers=headers))
    assert_refused(client, client.call("claim_create", queue_name="jobs", headers=headers))
    assert_refused(client, client.call("queue_get_stats", queue_name="jobs", headers=headers))
    assert_refused(client, client.call("queue_list", headers=headers))


def test_a_dot_in_the_queue_name_is_not_a_wildcard(client, sharer):
    grant = sharer("a.b")
    assert client.call("message_list", queue_name="a.b", headers=signed(client, grant)).status == 200
    assert_refused(client, client.call("message_list", queue_name="axb", headers=signed(client, grant)))


def test_a_grant_allows_only_its_methods(client, sharer):
    grant = sharer("jobs")  # GET by default
    headers = signed(client, grant)
    assert client.call("message_list", queue_name="jobs", headers=headers).status == 200
    assert_refused(client, client.call("message_post", queue_name="jobs", messages=MESSAGES, headers=headers))
    assert_refused(client, client.call("message_delete_many", queue_name="jobs", message_ids=["x"],
                                       headers=headers))


@pytest.mark.parametrize("broken", ["no signature value", "methods not a list", "no expiry"])
def test_malformed_grant_headers_are_refused_not_failed(client, sharer, broken):
    grant = sharer("jobs")
    headers = signed(client, grant)
    if broken == "no signature value":
        headers["URL-Signature"] = ""
    elif broken == "methods not a list":
        headers["URL-Methods"] = "GET" if isinstance(client, WsActionClient) else ""
    else:
        del headers["URL-Expires"]
    assert_refused(client, client.call("message_list", queue_name="jobs", headers=headers))


def test_subscriptions_and_claims_grants_work_over_http(client, sharer):
    if not isinstance(client, HttpActionClient):
        pytest.skip("over the websocket a grant covers message actions only (websocket.md §10)")
    grant = sharer("jobs", paths=["claims", "subscriptions", "messages"], methods=["GET", "POST"])
    headers = signed(client, grant)
    assert client.call("message_post", queue_name="jobs", messages=MESSAGES, headers=headers).status == 201
    claimed = client.call("claim_create", queue_name="jobs", ttl=60, grace=60, headers=headers)
    assert claimed.status == 201, claimed.body
    assert client.call("subscription_list", queue_name="jobs", headers=headers).status == 200
