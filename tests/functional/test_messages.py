"""Message operations as a client sees them, over every transport."""

from __future__ import annotations

from tests.clients import assert_error


def _post(client, queue="q", bodies=(1,), **extra):
    result = client.call("message_post", queue_name=queue, messages=[{"body": b, **extra} for b in bodies])
    assert result.status == 201, result.body
    return [href.rsplit("/", 1)[1] for href in result.body["resources"]]


def test_post_returns_resources_and_location_in_order(client):
    result = client.call("message_post", queue_name="q", messages=[{"body": "a"}, {"body": "b", "ttl": 120}])
    assert result.status == 201
    ids = [r.rsplit("/", 1)[1] for r in result.body["resources"]]
    assert result.body["resources"] == [f"/v2/queues/q/messages/{i}" for i in ids]
    if client.transport == "http":
        assert result.headers["location"] == f"/v2/queues/q/messages?ids={','.join(ids)}"


def test_get_returns_exactly_the_documented_keys(client, clock):
    (mid,) = _post(client, bodies=[{"event": "x", "n": [1, None]}])
    clock.advance(7)
    result = client.call("message_get", queue_name="q", message_id=mid)
    assert result.body == {"id": mid, "href": f"/v2/queues/q/messages/{mid}", "ttl": 3600, "age": 7,
                           "body": {"event": "x", "n": [1, None]}}


def test_default_ttl_comes_from_queue_metadata(client):
    client.call("queue_create", queue_name="q", metadata={"_default_message_ttl": 120})
    (mid,) = _post(client)
    assert client.call("message_get", queue_name="q", message_id=mid).body["ttl"] == 120


def test_list_hides_own_messages_unless_echo(client):
    _post(client, bodies=[1, 2])
    assert client.call("message_list", queue_name="q").body["messages"] == []
    listed = client.call("message_list", queue_name="q", echo=True).body
    assert [m["body"] for m in listed["messages"]] == [1, 2]


def test_list_pages_fifo_to_an_empty_last_page(client):
    ids = _post(client, bodies=list(range(25)))
    seen, marker = [], None
    while True:
        params = {"echo": True, "limit": 10}
        if marker:
            params["marker"] = marker
        page = client.call("message_list", queue_name="q", **params).body
        if not page["messages"]:
            assert page.get("links", []) == []
            break
        seen += [m["id"] for m in page["messages"]]
        marker = page["messages"][-1]["id"]
        if client.transport == "http":  # the websocket hands out no links (websocket.md §6.2)
            assert page["links"][0]["rel"] == "next"
            assert f"marker={marker}" in page["links"][0]["href"]
    assert seen == ids


def test_list_skips_claimed_unless_included(client):
    ids = _post(client, bodies=[1, 2, 3])
    client.call("claim_create", queue_name="q", limit=1)
    free = client.call("message_list", queue_name="q", echo=True).body["messages"]
    assert [m["id"] for m in free] == ids[1:]
    every = client.call("message_list", queue_name="q", echo=True, include_claimed=True).body["messages"]
    assert [m["id"] for m in every] == ids
    assert "?claim_id=" in every[0]["href"]


def test_expired_messages_disappear(client, clock):
    (mid,) = _post(client, ttl=60)
    clock.advance(61)
    assert client.call("message_get", queue_name="q", message_id=mid).status == 404
    assert client.call("message_list", queue_name="q", echo=True).body["messages"] == []


def test_get_many_returns_found_and_404_when_none(client):
    ids = _post(client, bodies=[1, 2])
    found = client.call("message_get_many", queue_name="q", message_ids=[ids[0], "nope"])
    assert [m["id"] for m in found.body["messages"]] == [ids[0]]
    missing = client.call("message_get_many", queue_name="q", message_ids=["nope"])
    assert missing.status == 404


def test_delete_many_and_pop(client):
    ids = _post(client, bodies=[1, 2, 3, 4])
    assert client.call("message_delete_many", queue_name="q", message_ids=ids[:1]).status == 204
    popped = client.call("message_delete_many", queue_name="q", pop=2)
    assert popped.status == 200
    assert [m["body"] for m in popped.body["messages"]] == [2, 3]
    assert set(popped.body["messages"][0]) == {"id", "age", "ttl", "claim_count", "claim_id", "body"}
    left = client.call("message_list", queue_name="q", echo=True).body["messages"]
    assert [m["id"] for m in left] == ids[3:]


def test_delete_claimed_message_needs_its_claim(client):
    (mid,) = _post(client)
    claim = client.call("claim_create", queue_name="q")
    claim_id = claim.body["messages"][0]["href"].split("=")[-1]
    refused = client.call("message_delete", queue_name="q", message_id=mid)
    assert_error(refused, 403, "This message is claimed; it cannot be deleted without a valid claim ID.",
                 "Unable to delete", client.transport)
    assert client.call("message_delete", queue_name="q", message_id=mid, claim_id=claim_id).status == 204
    assert client.call("message_get", queue_name="q", message_id=mid).status == 404


def test_delete_with_claim_on_free_message_is_400_and_keeps_it(client):
    (mid,) = _post(client)
    result = client.call("message_delete", queue_name="q", message_id=mid, claim_id="0" * 32)
    assert result.status == 400
    assert result.body["description"] == "A claim was specified, but the message is not currently claimed."
    assert client.call("message_get", queue_name="q", message_id=mid).status == 200


def test_delayed_queue_hides_messages_until_due(client, clock):
    client.call("queue_create", queue_name="q", metadata={"_default_message_delay": 30})
    _post(client)
    assert client.call("message_list", queue_name="q", echo=True).body["messages"] == []
    assert client.call("claim_create", queue_name="q").status == 204
    clock.advance(31)
    assert len(client.call("message_list", queue_name="q", echo=True).body["messages"]) == 1
