"""Claims as a consumer sees them, over every transport."""

from __future__ import annotations

from tests.clients import assert_error


def _setup(client, n=3, ttl=3600):
    client.call("message_post", queue_name="q", messages=[{"body": i, "ttl": ttl} for i in range(n)])


def _claim_id(result):
    return result.body["messages"][0]["href"].split("=")[-1]


def test_claim_returns_oldest_first_with_claim_hrefs(client):
    _setup(client)
    result = client.call("claim_create", queue_name="q", limit=2, ttl=60, grace=60)
    assert result.status == 201
    assert [m["body"] for m in result.body["messages"]] == [0, 1]
    cid = _claim_id(result)
    if client.transport == "http":
        assert result.headers["location"] == f"/v2/queues/q/claims/{cid}"
    assert all(m["href"].endswith(f"?claim_id={cid}") for m in result.body["messages"])


def test_nothing_to_claim_is_204(client):
    assert client.call("claim_create", queue_name="empty").status == 204


def test_claim_get_update_and_release(client, clock):
    _setup(client, n=1)
    cid = _claim_id(client.call("claim_create", queue_name="q", ttl=100, grace=60))
    clock.advance(10)
    got = client.call("claim_get", queue_name="q", claim_id=cid).body
    assert (got["ttl"], got["age"], len(got["messages"])) == (100, 10, 1)
    assert client.call("claim_update", queue_name="q", claim_id=cid, ttl=200).status == 204
    assert client.call("claim_get", queue_name="q", claim_id=cid).body["age"] == 0
    assert client.call("claim_delete", queue_name="q", claim_id=cid).status == 204
    assert client.call("claim_get", queue_name="q", claim_id=cid).status == 404
    again = client.call("claim_create", queue_name="q")
    assert again.status == 201


def test_claim_get_renew_and_release_on_the_real_clock(client):
    """The clock-free twin of the test above, so claims also run over real sockets on every store."""
    _setup(client, n=2)
    cid = _claim_id(client.call("claim_create", queue_name="q", ttl=100, grace=60, limit=1))
    got = client.call("claim_get", queue_name="q", claim_id=cid)
    assert got.status == 200
    assert (got.body["ttl"], [m["body"] for m in got.body["messages"]]) == (100, [0])
    assert 0 <= got.body["age"] <= 5
    assert client.call("claim_update", queue_name="q", claim_id=cid, ttl=300, grace=60).status == 204
    assert client.call("claim_get", queue_name="q", claim_id=cid).body["ttl"] == 300
    second = client.call("claim_create", queue_name="q", ttl=60, limit=5)
    assert [m["body"] for m in second.body["messages"]] == [1]  # the first claim still holds 0
    assert client.call("claim_delete", queue_name="q", claim_id=cid).status == 204
    assert client.call("claim_get", queue_name="q", claim_id=cid).status == 404
    again = client.call("claim_create", queue_name="q", ttl=60)
    assert [m["body"] for m in again.body["messages"]] == [0]


def test_expired_claim_frees_its_messages(client, clock):
    _setup(client, n=1)
    cid = _claim_id(client.call("claim_create", queue_name="q", ttl=60, grace=60))
    assert client.call("claim_create", queue_name="q").status == 204
    clock.advance(61)
    assert client.call("claim_get", queue_name="q", claim_id=cid).status == 404
    assert client.call("claim_create", queue_name="q").status == 201


def test_claim_extends_short_message_lifetimes(client, clock):
    _setup(client, n=1, ttl=60)
    result = client.call("claim_create", queue_name="q", ttl=100, grace=60)
    assert result.body["messages"][0]["ttl"] == 160
    clock.advance(120)
    assert client.call("claim_get", queue_name="q", claim_id=_claim_id(result)).status == 404
    listed = client.call("message_list", queue_name="q", echo=True).body["messages"]
    assert [m["body"] for m in listed] == [0]


def test_dead_letter_after_max_claims(client, clock):
    client.call("queue_create", queue_name="q",
                metadata={"_max_claim_count": 1, "_dead_letter_queue": "dlq"})
    _setup(client, n=1)
    first = client.call("claim_create", queue_name="q", ttl=60, grace=60)
    assert first.status == 201
    clock.advance(61)
    assert client.call("claim_create", queue_name="q").status == 204
    moved = client.call("message_list", queue_name="dlq", echo=True).body["messages"]
    assert [m["body"] for m in moved] == [0]


def test_renew_of_unknown_claim_is_404(client):
    result = client.call("claim_update", queue_name="q", claim_id="0" * 32, ttl=100)
    project = client.headers["X-Project-ID"]
    assert_error(result, 404, f"Claim {'0' * 32} does not exist in queue q for project {project}",
                 "Not found", client.transport)
