"""Queue operations as a client sees them, over every transport."""

from __future__ import annotations

from tests.clients import RESERVED_DEFAULTS


def test_create_then_recreate_keeps_metadata(client):
    assert client.call("queue_create", queue_name="q", metadata={"k": 1}).status == 201
    assert client.call("queue_create", queue_name="q", metadata={"k": 2}).status == 204
    assert client.call("queue_get", queue_name="q").body == {"k": 1, **RESERVED_DEFAULTS}


def test_get_of_unknown_queue_reports_defaults(client):
    result = client.call("queue_get", queue_name="never")
    assert (result.status, result.body) == (200, RESERVED_DEFAULTS)


def test_exists_follows_lazy_creation(http_client):
    client = http_client
    assert client.call("queue_exists", queue_name="q").status == 404
    client.call("message_post", queue_name="q", messages=[{"body": 1}])
    assert client.call("queue_exists", queue_name="q").status == 204


def test_list_pages_to_the_end_with_next_links(client):
    for name in ("c", "a", "b"):
        client.call("queue_create", queue_name=name)
    page = client.call("queue_list", limit=2)
    assert [q["name"] for q in page.body["queues"]] == ["a", "b"]
    assert page.body["queues"][0]["href"] == "/v2/queues/a"
    nxt = client.call("queue_list", limit=2, marker="b")
    assert [q["name"] for q in nxt.body["queues"]] == ["c"]
    last = client.call("queue_list", limit=2, marker="c")
    assert last.body["queues"] == []
    assert last.body.get("links", []) == []


def test_list_detailed_shows_metadata(client):
    client.call("queue_create", queue_name="a", metadata={"color": "red"})
    client.call("queue_create", queue_name="b", metadata={"color": "blue"})
    body = client.call("queue_list", detailed=True).body
    assert [q["metadata"]["color"] for q in body["queues"]] == ["red", "blue"]
    plain = client.call("queue_list").body
    assert all("metadata" not in q for q in plain["queues"])


def test_list_counts_and_fills_reserved_defaults_over_http(http_client):
    http_client.call("queue_create", queue_name="a", metadata={"color": "red"})
    http_client.call("queue_create", queue_name="b")
    body = http_client.call("queue_list", detailed=True, with_count=True).body
    assert body["count"] == 2
    assert body["queues"][0]["metadata"]["_default_message_ttl"] == 3600


def test_update_applies_json_patch_and_returns_full_metadata(http_client):
    client = http_client
    client.call("queue_create", queue_name="q", metadata={"a": 1, "b": 2})
    patch = [
        {"op": "replace", "path": "/metadata/a", "value": 10},
        {"op": "remove", "path": "/metadata/b"},
        {"op": "add", "path": "/metadata/_default_message_ttl", "value": 120},
        {"op": "remove", "path": "/metadata/_max_claim_count"},
    ]
    result = client.call("queue_update", queue_name="q", patch=patch)
    assert result.status == 200
    assert result.body == {**RESERVED_DEFAULTS, "a": 10, "_default_message_ttl": 120}
    assert client.call("queue_get", queue_name="q").body == result.body


def test_update_conflicts_on_missing_key_and_changes_nothing(http_client):
    client = http_client
    client.call("queue_create", queue_name="q", metadata={"a": 1})
    bad = [{"op": "add", "path": "/metadata/x", "value": 1},
           {"op": "replace", "path": "/metadata/missing", "value": 1}]
    result = client.call("queue_update", queue_name="q", patch=bad)
    assert result.status == 409
    assert result.body["description"] == "Can't replace non-existent object missing."
    assert client.call("queue_get", queue_name="q").body == {"a": 1, **RESERVED_DEFAULTS}


def test_update_of_unknown_queue_is_404(http_client):
    client = http_client
    result = client.call("queue_update", queue_name="nope",
                         patch=[{"op": "add", "path": "/metadata/a", "value": 1}])
    assert result.status == 404
    project = client.headers["X-Project-ID"]
    assert result.body["description"] == f"Queue nope does not exist for project {project}"


def test_delete_removes_messages(client):
    client.call("message_post", queue_name="q", messages=[{"body": 1}])
    assert client.call("queue_delete", queue_name="q").status == 204
    assert client.call("queue_delete", queue_name="q").status == 204
    assert client.call("queue_get_stats", queue_name="q").body == {
        "messages": {"claimed": 0, "free": 0, "total": 0}}


def test_stats_count_claimed_and_free(client, clock):
    client.call("message_post", queue_name="q", messages=[{"body": i} for i in range(3)])
    clock.advance(5)
    client.call("claim_create", queue_name="q", limit=1)
    stats = client.call("queue_get_stats", queue_name="q").body["messages"]
    assert (stats["total"], stats["claimed"], stats["free"]) == (3, 1, 2)
    assert stats["oldest"]["age"] == 5
    assert stats["oldest"]["href"].startswith("/v2/queues/q/messages/")
    assert set(stats["newest"]) == {"href", "age", "created"}


def test_purge_keeps_claimed_messages_and_the_queue(client):
    client.call("queue_create", queue_name="q", metadata={"m": 1})
    client.call("message_post", queue_name="q", messages=[{"body": i} for i in range(5)])
    client.call("claim_create", queue_name="q", limit=2)
    assert client.call("queue_purge", queue_name="q", resource_types=["messages"]).status == 204
    stats = client.call("queue_get_stats", queue_name="q").body["messages"]
    assert (stats["total"], stats["claimed"]) == (2, 2)
    assert client.call("queue_get", queue_name="q").body["m"] == 1


def test_purge_rejects_unknown_resource_types(client):
    client.call("message_post", queue_name="q", messages=[{"body": 1}])
    result = client.call("queue_purge", queue_name="q", resource_types=["bogus"])
    assert result.status == 400
    assert client.call("queue_get_stats", queue_name="q").body["messages"]["total"] == 1


def test_concurrent_patches_lose_no_update(http_client):
    import threading

    http_client.call("queue_create", queue_name="q")

    def add(worker: int) -> None:
        for i in range(5):
            result = http_client.call("queue_update", queue_name="q",
                                      patch=[{"op": "add", "path": f"/metadata/k{worker}_{i}", "value": i}])
            assert result.status == 200

    threads = [threading.Thread(target=add, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = http_client.call("queue_get", queue_name="q").body
    assert {f"k{w}_{i}" for w in range(4) for i in range(5)} <= set(stored)
