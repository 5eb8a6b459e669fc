"""Subscriptions as a client sees them, over every transport."""

from __future__ import annotations

import pytest

from tests.clients import assert_error

TYPES = "['http', 'https', 'mailto', 'trust+http', 'trust+https']"
UNSUPPORTED = f"The subscriber type of subscription must be supported in the list {TYPES}."


def _create(client, queue="q", subscriber="http://127.0.0.1:1/hook", **extra):
    return client.call("subscription_create", queue_name=queue, subscriber=subscriber, **extra)


def _sid(result):
    assert result.status == 201, result.body
    return result.body["subscription_id"]


def test_create_get_list_delete(client):
    sid = _sid(_create(client, ttl=600, options={"post_headers": {"X-Token": "t"}}))
    got = client.call("subscription_get", queue_name="q", subscription_id=sid)
    assert got.status == 200
    assert got.body == {"id": sid, "source": "q", "subscriber": "http://127.0.0.1:1/hook", "ttl": 600,
                        "age": got.body["age"], "options": {"post_headers": {"X-Token": "t"}},
                        "confirmed": False}
    listed = client.call("subscription_list", queue_name="q")
    assert [s["id"] for s in listed.body["subscriptions"]] == [sid]
    assert client.call("subscription_delete", queue_name="q", subscription_id=sid).status == 204
    assert client.call("subscription_get", queue_name="q", subscription_id=sid).status == 404


def test_create_makes_the_queue_lazily(client):
    _sid(_create(client, queue="lazy"))
    names = [q["name"] for q in client.call("queue_list").body["queues"]]
    assert "lazy" in names


def test_list_pages_by_id(client):
    ids = [_sid(_create(client, subscriber=f"http://127.0.0.1:1/h{i}")) for i in range(5)]
    first = client.call("subscription_list", queue_name="q", limit=3).body["subscriptions"]
    rest = client.call("subscription_list", queue_name="q", limit=3, marker=first[-1]["id"]).body
    assert [s["id"] for s in first + rest["subscriptions"]] == sorted(ids)


def test_duplicate_unconfirmed_subscription(client):
    sid = _sid(_create(client))
    again = _create(client)
    if client.transport.startswith("http"):
        assert (again.status, again.body) == (201, {"subscription_id": sid})
    else:  # websocket.md §6.3: any duplicate is a conflict there
        assert again.status == 409


def test_duplicate_of_a_confirmed_subscription_is_409(client):
    sid = _sid(_create(client))
    confirmed = client.call("subscription_confirm", queue_name="q", subscription_id=sid, confirmed=True)
    assert confirmed.status == 204
    assert client.call("subscription_get", queue_name="q", subscription_id=sid).body["confirmed"] is True
    assert _create(client).status == 409


def test_update_changes_fields(client):
    sid = _sid(_create(client))
    result = client.call("subscription_update", queue_name="q", subscription_id=sid,
                         subscription={"ttl": 120, "options": {"a": 1}})
    assert result.status == 204
    got = client.call("subscription_get", queue_name="q", subscription_id=sid).body
    assert (got["ttl"], got["options"]) == (120, {"a": 1})


@pytest.mark.parametrize("fields, description", [
    ({"subscriber": "ftp://x/y"}, UNSUPPORTED),
    ({"subscriber": 5}, UNSUPPORTED),
    ({"ttl": 59}, "The TTL for a subscription must be at least 60 seconds long."),
    ({"ttl": "x"}, "TTL must be an integer."),
    ({"ttl": 10**12}, "The TTL seconds for a subscription plus current time must be less than "
                      "9999-12-31 23:59:59.999999."),
    ({"options": [1]}, "Options must be a dict."),
    ({"options": {"_retry_policy": {"minimum_delay": 20, "maximum_delay": 10}}},
     "minimum_delay must less than maximum_delay."),
    ({"options": {"_retry_policy": {"retry_backoff_function": "random"}}}, "invalid retry_backoff_function."),
])
def test_bad_subscriptions_get_400_and_store_nothing(client, fields, description):
    body = {"subscriber": "http://127.0.0.1:1/hook", **fields}
    mistyped = (not isinstance(body.get("ttl", 0), int) or not isinstance(body.get("options", {}), dict)
                or not isinstance(body["subscriber"], str))
    if client.transport.startswith("websocket") and mistyped:
        description = "Schema validation failed."  # the envelope schema catches wrong types first
    result = client.call("subscription_create", queue_name="q", **body)
    assert_error(result, 400, description, "Invalid API request", client.transport)
    assert client.call("subscription_list", queue_name="q").body["subscriptions"] == []


def test_missing_subscriber_over_http_is_400(http_client):
    result = http_client.call("subscription_create", queue_name="q", ttl=60)
    assert_error(result, 400, "Missing parameter subscriber in body.", "Invalid API request")


def test_unknown_subscription_is_404(client):
    result = client.call("subscription_get", queue_name="q", subscription_id="nope")
    assert_error(result, 404, "Subscription nope does not exist", "Not found", client.transport)


def test_purge_removes_subscriptions(client):
    _sid(_create(client))
    assert client.call("queue_purge", queue_name="q", resource_types=["subscriptions"]).status == 204
    assert client.call("subscription_list", queue_name="q").body["subscriptions"] == []


def test_subscriptions_expire(client, clock):
    sid = _sid(_create(client, ttl=60))
    clock.advance(61)
    assert client.call("subscription_get", queue_name="q", subscription_id=sid).status == 404
