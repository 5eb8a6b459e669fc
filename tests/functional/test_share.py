"""``POST /v2/queues/{queue_name}/share`` and pre-signed requests without auth (http-v2.md §8).

Share is HTTP only (websocket.md §12). Without an auth strategy HTTP still
verifies every request that carries ``URL-Signature`` (404 when it does not
verify, §0.3 step 2), while the websocket consults grants only with auth on
(§10). Confirmation URLs from the notifier verify like shared ones: one
signature for both.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients import PROJECT, HttpActionClient, WsActionClient, assert_error, falcon_send
from tests.conftest import FakeClock
from zaqar import storage
from zaqar.api import Api, Context, Features
from zaqar.notification.confirmation import Signer
from zaqar.transport import wsgi
from zaqar.transport.websocket import protocol

SECRET = "share-test-key"
TOMORROW = "2023-11-15T22:13:20"  # FakeClock starts at 2023-11-14T22:13:20Z; the default lifetime is a day


@pytest.fixture
def api(tmp_path: Path, clock: FakeClock) -> Iterator[Api]:
    store = storage.load_data_driver("sqlite", f"sqlite:///{tmp_path / 'zaqar.sqlite'}", clock=clock)
    yield Api(Context(store=store, clock=clock, features=Features(admin_mode=True), signed_url_key=SECRET))
    store.close()


def _documented_signature(paths, methods, project, expires) -> str:
    """http-v2.md §8.2, written out independently: the separator is backslash + n."""
    text = "\\n".join([",".join(sorted(paths)), ",".join(sorted(methods)), str(project), expires])
    return hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()


def _signed(grant) -> dict[str, str]:
    return {"URL-Signature": grant["signature"], "URL-Expires": grant["expires"],
            "URL-Methods": ",".join(grant["methods"]), "URL-Paths": ",".join(grant["paths"]),
            "X-Project-ID": grant["project"]}


def test_defaults_one_day_of_get_on_messages(http_client):
    shared = http_client.call("queue_share", queue_name="not-created-yet")
    paths = ["/v2/queues/not-created-yet/messages"]
    assert (shared.status, shared.body) == (200, {
        "paths": paths, "methods": ["GET"], "project": PROJECT, "expires": TOMORROW,
        "signature": _documented_signature(paths, ["GET"], PROJECT, TOMORROW)})


def test_paths_and_methods_come_back_sorted_and_absolute(http_client):
    shared = http_client.call("queue_share", queue_name="q", paths=["subscriptions", "claims", "messages"],
                              methods=["POST", "GET", "DELETE"], expires="2030-01-01T00:00:00")
    assert shared.body["paths"] == [f"/v2/queues/q/{p}" for p in ("claims", "messages", "subscriptions")]
    assert shared.body["methods"] == ["DELETE", "GET", "POST"]
    assert shared.body["signature"] == _documented_signature(shared.body["paths"], shared.body["methods"],
                                                             PROJECT, "2030-01-01T00:00:00")


@pytest.mark.parametrize("given, stored", [
    ("2030-01-01T02:30:00+02:30", "2030-01-01T00:00:00"),
    ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00"),
    ("2030-01-01T00:00:00.123456", "2030-01-01T00:00:00"),  # python-zaqarclient's naive isoformat
    ("2030-01-01", "2030-01-01T00:00:00"),
])
def test_expires_is_normalised_to_utc_seconds(http_client, given, stored):
    assert http_client.call("queue_share", queue_name="q", expires=given).body["expires"] == stored


@pytest.mark.parametrize("fields, description", [
    ({"dummy": 1}, "Unknown keys: {'dummy'}"),
    ({"paths": ["messages", "notallowed"]}, "Invalid paths: {'notallowed'}"),
    ({"paths": "messages"}, "Invalid paths: {'a', 'e', 'g', 'm', 's'}"),
    ({"paths": [7]}, "Invalid paths: {7}"),
    ({"methods": "GET"}, "`methods` should be a list"),
    ({"methods": ["GET", 1]}, "`methods` should be a list"),
    ({"expires": "1234"}, "`expires` should be date format, for example 2016-01-01T00:00:00, "
                          "not integer value: 1234"),
    ({"expires": 1234}, "`expires` should be date format, for example 2016-01-01T00:00:00, "
                        "not integer value: 1234"),
    ({"expires": "junk"}, "Unable to parse date string 'junk'"),
    ({"expires": ["2030-01-01"]}, "Unable to parse date string ['2030-01-01']"),
    ({"expires": "2016-01-01T00:00:00"}, "`expires` is lower than the current time"),
    # review 8 #3: instants no datetime holds once moved to UTC were a 500
    ({"expires": "0001-01-01T00:00:00+01:00"}, "`expires` is lower than the current time"),
    ({"expires": "9999-12-31T23:59:59-01:00"}, "Unable to parse date string '9999-12-31T23:59:59-01:00'"),
    ({"methods": ["GET", "a\x00"]}, 'The "methods" parameter is invalid. The value may not contain NUL '
                                    "characters or unpaired surrogates."),
])
def test_bad_fields_are_400(http_client, fields, description):
    headers = dict(http_client.headers, **{"Content-Type": "application/json"})
    raw = json.dumps(fields).encode()
    status, _, content = http_client.send("POST", "/v2/queues/q/share", "", headers, raw)
    assert (status, json.loads(content)) == (400, {"title": "Invalid API request",
                                                   "description": description})


@pytest.mark.parametrize("raw, description", [
    (b"{not json", "Request body could not be parsed."),
    # NOTE: no UTF-8 text holds an unpaired surrogate, so the signature could never be computed
    (b'{"methods": ["GET", "\\ud800"]}', "Request body could not be parsed."),
    (b"[]", "Document type not supported."),
    (None, "Request body can not be empty"),
])
def test_bad_bodies_are_400(http_client, raw, description):
    status, _, content = http_client.send("POST", "/v2/queues/q/share", "", dict(http_client.headers), raw)
    assert (status, json.loads(content)) == (400, {"title": "Invalid request body",
                                                   "description": description})


def test_empty_paths_fall_back_to_messages(http_client):
    shared = http_client.call("queue_share", queue_name="q", paths=[])
    assert shared.body["paths"] == ["/v2/queues/q/messages"]


def test_an_invalid_queue_name_is_400(http_client):
    assert_error(http_client.call("queue_share", queue_name="bad name"), 400,
                 "The format of the submitted queue name or project id is not valid.",
                 "Invalid queue identification")


def test_no_secret_key_no_share_and_no_grant(api):
    keyless_api = Api(dataclasses.replace(api.ctx, signed_url_key=None))
    keyless = HttpActionClient(falcon_send(wsgi.build_app(keyless_api)))
    assert_error(keyless.call("queue_share", queue_name="q"), 400, "The `key` can't be None",
                 "Invalid API request")
    grant = {"signature": "0" * 64, "expires": "2030-01-01T00:00:00", "methods": ["GET"],
             "paths": ["/v2/queues/q/messages"], "project": PROJECT}
    refused = keyless.call("message_list", queue_name="q", headers=_signed(grant))
    assert (refused.status, refused.body) == (404, {"title": "404 Not Found"})


def test_without_auth_http_still_verifies_grants(http_client, clock):
    grant = http_client.call("queue_share", queue_name="q", methods=["POST"]).body
    assert http_client.call("message_post", queue_name="q", messages=[{"body": 1}],
                            headers=_signed(grant)).status == 201
    refused = http_client.call("message_list", queue_name="q", headers=_signed(grant))  # GET was not granted
    assert (refused.status, refused.body) == (404, {"title": "404 Not Found"})
    clock.advance(24 * 3600 + 1)
    refused = http_client.call("message_post", queue_name="q", messages=[{"body": 1}], headers=_signed(grant))
    assert (refused.status, refused.body) == (404, {"title": "404 Not Found"})


@pytest.mark.parametrize("expires", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_grant_expiries_no_datetime_holds_are_a_404_not_a_500(http_client, expires):
    """Review 8 #3: unauthenticated, any client could get a 500 and a traceback with one header."""
    grant = http_client.call("queue_share", queue_name="q").body
    overflowing = {**_signed(grant), "URL-Expires": expires}
    refused = http_client.call("message_list", queue_name="q", headers=overflowing)
    assert (refused.status, refused.body) == (404, {"title": "404 Not Found"})


@pytest.mark.parametrize("spelling", ["{}Z", "{}+00:00", "{}.000", "{}.999999"])
def test_a_grant_verifies_only_with_the_expiry_spelled_as_share_gave_it(http_client, spelling):
    """The signature covers the expiry as sent (review 8 nit: other spellings of it verified too)."""
    grant = http_client.call("queue_share", queue_name="q").body
    assert http_client.call("message_list", queue_name="q", headers=_signed(grant)).status == 200
    respelled = {**_signed(grant), "URL-Expires": spelling.format(grant["expires"])}
    refused = http_client.call("message_list", queue_name="q", headers=respelled)
    assert (refused.status, refused.body) == (404, {"title": "404 Not Found"})


def test_a_grant_never_opens_admin_resources(http_client):
    grant = http_client.call("queue_share", queue_name="q").body
    denied = http_client.call("check_node_health", headers={**_signed(grant), "X-Roles": "admin"})
    assert (denied.status, denied.body) == (404, {"title": "404 Not Found"})


def test_without_auth_the_websocket_does_not_consult_grants(api):
    """websocket.md §10: grants are looked at only while auth is on; here the envelope is served as is."""
    client = WsActionClient(functools.partial(protocol.handle_frame, api, session=protocol.Session()),
                            binary=False)
    bogus = {"URL-Signature": "bogus", "URL-Methods": ["GET"], "URL-Paths": [], "URL-Expires": "x"}
    assert client.call("message_post", queue_name="q", messages=[{"body": 1}], headers=bogus).status == 201


def test_confirmation_urls_from_the_notifier_verify(api, http_client, clock):
    """The notifier's confirmation document (http-v2.md §6.8) opens exactly its confirm URL."""
    created = http_client.call("subscription_create", queue_name="q", subscriber="http://127.0.0.1:9/hook",
                               ttl=600)
    sid = created.body["subscription_id"]
    subscription = api.ctx.store.subscriptions.get(PROJECT, "q", sid)
    document = Signer(SECRET, 3600, clock=clock).confirmation(PROJECT, "q", subscription,
                                                             "SubscriptionConfirmation")
    headers = {"URL-Signature": document["URL-Signature"], "URL-Expires": document["URL-Expires"],
               "URL-Methods": ",".join(document["URL-Methods"]), "URL-Paths": ",".join(document["URL-Paths"]),
               "X-Project-ID": document["X-Project-ID"]}
    confirmed = http_client.call("subscription_confirm", queue_name="q", subscription_id=sid, confirmed=True,
                                 headers=headers)
    assert confirmed.status == 204, confirmed.body
    assert http_client.call("subscription_get", queue_name="q", subscription_id=sid).body["confirmed"] is True
    refused = http_client.call("subscription_delete", queue_name="q", subscription_id=sid, headers=headers)
    assert (refused.status, refused.body) == (404, {"title": "404 Not Found"})
