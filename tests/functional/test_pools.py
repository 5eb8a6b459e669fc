"""Pools as an operator sees them, over every transport (http-v2.md §9, websocket.md §6.4).

The server is admin-mode and pooled (``tests/functional/pool_admin.py``): the
message store is the pooled composite over a SQLite management store, so
queues really get placed on the pools the tests register. Pool URIs are
SQLite files in ``tmp_path`` (``storage.probe`` accepts them).

In process only for now (the real-socket variants of ``client`` are
skipped), but written for a shared live server: pools are global, so every
name carries a per-test prefix, listings are filtered by it, and the tests
run on a server that already has pools (the ``@pooled`` variants). Roles
travel as the ``X-Roles`` header, which is how a no-auth server learns them
on both transports.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.clients import assert_error
from tests.functional import pool_admin
from tests.functional.pool_admin import create_pool

# This module's fixtures (``api`` overrides the suite's with a pooled server that has no pools yet).
api, admin_role, prefix, uri = pool_admin.api, pool_admin.admin_role, pool_admin.prefix, pool_admin.uri

NOT_AUTHORIZED = "You are not authorized to complete this action."
UNREACHABLE = "redis://127.0.0.1:1/0"


def _mine(pools, prefix):
    return [p for p in pools if p["name"].startswith(prefix)]


def test_create_get_update_delete(client, prefix, uri):
    name = prefix + "a"
    created = create_pool(client, name, uri(1), weight=5, options={"k": "v"})
    if client.transport == "http":
        assert created.headers["location"] == f"/v2/pools/{name}"
    pool = {"name": name, "uri": uri(1), "weight": 5, "flavor": None, "href": f"/v2/pools/{name}"}
    assert client.call("pool_get", pool_name=name).body == pool
    assert client.call("pool_get", pool_name=name, detailed=True).body == {**pool, "options": {"k": "v"}}
    updated = client.call("pool_update", pool_name=name, weight=7, uri=uri(2))
    assert (updated.status, updated.body) == (200, {**pool, "weight": 7, "uri": uri(2)})
    assert client.call("pool_delete", pool_name=name).status == 204
    assert_error(client.call("pool_get", pool_name=name), 404, f"Pool {name} does not exist", "Not found",
                 client.transport)
    assert client.call("pool_delete", pool_name=name).status == 204  # unknown: still 204


def test_put_overwrites_and_answers_201_again(client, prefix, uri):
    name = prefix + "a"
    create_pool(client, name, uri(1), weight=5, options={"k": "v"})
    create_pool(client, name, uri(2), weight=9)
    got = client.call("pool_get", pool_name=name, detailed=True).body
    assert (got["uri"], got["weight"], got["options"]) == (uri(2), 9, {})


def test_list_pages_to_the_end(client, prefix, uri):
    names = [f"{prefix}{i}" for i in range(5)]
    for i, name in enumerate(names):
        create_pool(client, name, uri(i), options={"i": i})
    seen, marker, pages = [], None, 0
    while True:
        params = {"limit": 2, "detailed": True, **({"marker": marker} if marker else {})}
        body = client.call("pool_list", **params).body
        if not body["pools"]:
            assert body["links"] == []
            break
        pages += 1
        (link,) = body["links"]
        query = parse_qs(urlsplit(link["href"]).query)
        assert urlsplit(link["href"]).path == "/v2/pools"
        assert query == {"limit": ["2"], "detailed": ["true"], "marker": [body["pools"][-1]["name"]]}
        seen += body["pools"]
        marker = query["marker"][0]
    assert [p["name"] for p in _mine(seen, prefix)] == names
    assert all(p["options"] == {"i": i} for i, p in enumerate(_mine(seen, prefix)))
    assert pages >= 3


def test_list_is_not_detailed_by_default(client, prefix, uri):
    create_pool(client, prefix + "a", uri(1), options={"k": "v"})
    result = client.call("pool_list")
    # Pools are global: on a shared live server the first page may hold other tests' pools.
    (mine,) = _mine(client.call("pool_list", marker=prefix[:-1]).body["pools"], prefix)
    assert "options" not in mine
    if client.transport == "http":
        assert result.headers["content-location"] == "/v2/pools"
        paged = client.call("pool_list", limit=3, detailed=False)
        assert parse_qs(urlsplit(paged.headers["content-location"]).query) == {
            "limit": ["3"], "detailed": ["false"]}


@pytest.mark.parametrize("limit", [0, 21])
def test_list_limit_out_of_range(client, limit):
    assert_error(client.call("pool_list", limit=limit), 400,
                 "Limit must be at least 1 and no greater than 20.", "Invalid API request", client.transport)


SCHEMA = "Schema validation failed."  # the websocket envelope check, before the API layer


@pytest.mark.parametrize("fields, description, ws_description", [
    ({"weight": 1}, "body: 'uri' is a required property", None),
    ({"uri": "U"}, "body: 'weight' is a required property", None),
    ({"uri": "U", "weight": -1}, "weight: -1 is less than the minimum of 0", None),
    ({"uri": "U", "weight": 2**32}, "weight: 4294967296 is greater than the maximum of 4294967295", None),
    ({"uri": "U", "weight": "1"}, "weight: '1' is not of type 'integer'", SCHEMA),
    ({"uri": "U", "weight": True}, "weight: True is not of type 'integer'", SCHEMA),
    ({"uri": 5, "weight": 1}, "uri: 5 is not of type 'string'", SCHEMA),
    ({"uri": "U", "weight": 1, "flavor": 3}, "flavor: 3 is not of type 'string'", SCHEMA),
    ({"uri": "U", "weight": 1, "flavor": "f" * 256}, f"flavor: '{'f' * 256}' is too long", None),
    ({"uri": "U", "weight": 1, "options": []}, "options: [] is not of type 'object'", SCHEMA),
])
def test_create_schema_errors_register_nothing(client, prefix, uri, fields, description, ws_description):
    if fields.get("uri") == "U":
        fields = {**fields, "uri": uri(1)}
    result = client.call("pool_create", pool_name=prefix + "a", **fields)
    expected = description if client.transport == "http" else (ws_description or description)
    assert_error(result, 400, expected, "Invalid request body", client.transport)
    assert client.call("pool_get", pool_name=prefix + "a").status == 404


def test_create_uri_longer_than_255_is_refused(client, prefix, tmp_path):
    long_uri = f"sqlite:///{tmp_path / ('x' * 255)}"
    result = client.call("pool_create", pool_name=prefix + "a", uri=long_uri, weight=1)
    assert_error(result, 400, f"uri: '{long_uri}' is too long", "Invalid request body", client.transport)


def test_create_refuses_other_body_keys_over_http(http_client, prefix, uri):
    body = json.dumps({"uri": uri(1), "weight": 1, "colour": "red"}).encode()
    headers = {**http_client.headers, "X-Roles": "admin", "Content-Type": "application/json"}
    status, _, raw = http_client.send("PUT", f"/v2/pools/{prefix}a", "", headers, body)
    assert (status, json.loads(raw)) == (400, {
        "title": "Invalid request body",
        "description": "body: Additional properties are not allowed ('colour' was unexpected)"})
    status, _, raw = http_client.send("PUT", f"/v2/pools/{prefix}a", "", headers, b"{nope")
    assert (status, json.loads(raw)) == (400, {"title": "Invalid request body",
                                                "description": "JSON could not be parsed."})


def test_unreachable_uri_is_refused_and_registers_nothing(client, prefix):
    name = prefix + "dead"
    result = client.call("pool_create", pool_name=name, uri=UNREACHABLE, weight=10)
    assert_error(result, 400, f"cannot connect to {UNREACHABLE}", "Invalid request body", client.transport)
    assert client.call("pool_get", pool_name=name).status == 404
    assert _mine(client.call("pool_list").body["pools"], prefix) == []
    if client.transport != "http":  # websocket.md §6.4: the err shape, no summary
        reply = client.raw({"action": "pool_create", "headers": client.headers,
                            "body": {"pool_name": name, "uri": UNREACHABLE, "weight": 10}})
        assert reply["headers"] == {"status": 400}
        assert reply["body"] == {"exception": f"cannot connect to {UNREACHABLE}", "error": None}


def test_update_to_an_unreachable_uri_changes_nothing(client, prefix, uri):
    name = prefix + "a"
    create_pool(client, name, uri(1))
    result = client.call("pool_update", pool_name=name, uri=UNREACHABLE, weight=99)
    assert_error(result, 400, f"cannot connect to {UNREACHABLE}", "Invalid request body", client.transport)
    got = client.call("pool_get", pool_name=name).body
    assert (got["uri"], got["weight"]) == (uri(1), 10)


def test_a_uri_belongs_to_one_pool(client, prefix, uri):
    create_pool(client, prefix + "a", uri(1))
    create_pool(client, prefix + "b", uri(2))
    conflict = "The database URI is in use by another pool."
    result = client.call("pool_create", pool_name=prefix + "c", uri=uri(1), weight=1)
    assert_error(result, 409, conflict, "Resource conflict", client.transport)
    result = client.call("pool_update", pool_name=prefix + "b", uri=uri(1))
    assert_error(result, 409, conflict, "Resource conflict", client.transport)
    assert client.call("pool_get", pool_name=prefix + "c").status == 404
    assert client.call("pool_get", pool_name=prefix + "b").body["uri"] == uri(2)


def test_update_errors(client, prefix, uri):
    name = prefix + "a"
    create_pool(client, name, uri(1))
    nothing = "One of `uri`, `weight`, `flavor`, or `options` needs to be specified"
    assert_error(client.call("pool_update", pool_name=name), 400, nothing, "Invalid request body",
                 client.transport)
    assert_error(client.call("pool_update", pool_name=name, weight=-1), 400,
                 "weight: -1 is less than the minimum of 0", "Invalid request body", client.transport)
    assert_error(client.call("pool_update", pool_name=prefix + "nope", weight=1), 404,
                 f"Pool {prefix}nope does not exist", "Not found", client.transport)


def test_update_sets_flavor_and_options(client, prefix, uri):
    name = prefix + "a"
    create_pool(client, name, uri(1))
    result = client.call("pool_update", pool_name=name, flavor="gold", options={"x": 1})
    assert (result.body["flavor"], "options" in result.body) == ("gold", False)
    assert client.call("pool_get", pool_name=name, detailed=True).body["options"] == {"x": 1}


def test_a_pool_in_a_flavor_cannot_be_deleted(client, prefix, uri):
    name, flavor = prefix + "a", prefix + "f"
    create_pool(client, name, uri(1))
    assert client.call("flavor_create", flavor_name=flavor, pool_list=[name]).status == 201
    assert client.call("pool_get", pool_name=name).body["flavor"] == flavor
    result = client.call("pool_delete", pool_name=name, force=True)
    assert_error(result, 403, f"This pool is used by flavors {flavor}; It cannot be deleted.",
                 "Unable to delete", client.transport)
    assert client.call("pool_get", pool_name=name).status == 200
    assert client.call("flavor_delete", flavor_name=flavor).status == 204
    assert client.call("pool_get", pool_name=name).body["flavor"] is None
    assert client.call("pool_delete", pool_name=name).status == 204


def test_a_pool_holding_queues_is_deleted_only_by_force(client, prefix, uri):
    name, flavor = prefix + "a", prefix + "f"
    create_pool(client, name, uri(1))
    # a flavor of this pool alone puts the queues there, whatever other pools the server has
    assert client.call("flavor_create", flavor_name=flavor, pool_list=[name]).status == 201
    for queue in ("q1", "q2"):
        assert client.call("queue_create", queue_name=queue, metadata={"_flavor": flavor}).status == 201
    held = (f"Pool {name} still holds 2 queues; delete them first, or repeat the request with "
            "force=true to forget their placement.")
    assert_error(client.call("pool_delete", pool_name=name), 409, held, "Resource conflict", client.transport)
    # force does not override the flavor check, and a refusal changes nothing
    assert client.call("pool_delete", pool_name=name, force=True).status == 403
    assert client.call("queue_get", queue_name="q1").status == 200
    assert client.call("flavor_delete", flavor_name=flavor).status == 204
    assert_error(client.call("pool_delete", pool_name=name, force=False), 409, held, "Resource conflict",
                 client.transport)
    assert client.call("pool_get", pool_name=name).status == 200
    assert client.call("pool_delete", pool_name=name, force=True).status == 204
    assert client.call("pool_get", pool_name=name).status == 404
    assert client.call("pool_delete", pool_name=name).status == 204  # nothing left to refuse


def test_a_pool_whose_queues_were_all_deleted_goes_without_force(client, prefix, uri):
    name, flavor = prefix + "a", prefix + "f"
    create_pool(client, name, uri(1))
    assert client.call("flavor_create", flavor_name=flavor, pool_list=[name]).status == 201
    for queue in ("q1", "q2"):
        assert client.call("queue_create", queue_name=queue, metadata={"_flavor": flavor}).status == 201
    assert client.call("flavor_delete", flavor_name=flavor).status == 204
    assert client.call("queue_delete", queue_name="q1").status == 204
    held = (f"Pool {name} still holds 1 queues; delete them first, or repeat the request with "
            "force=true to forget their placement.")
    assert_error(client.call("pool_delete", pool_name=name), 409, held, "Resource conflict", client.transport)
    assert client.call("queue_delete", queue_name="q2").status == 204
    assert client.call("pool_delete", pool_name=name).status == 204
    assert client.call("pool_get", pool_name=name).status == 404


def test_no_pool_to_place_a_queue_on_is_503(client, request):
    if pool_admin.preregistered(request):
        pytest.skip("this server has pools")
    text = "No pools registered, so the queue cannot be placed; an operator must register a pool first."
    assert_error(client.call("queue_create", queue_name="q"), 503, text, "Service temporarily unavailable",
                 client.transport)


@pytest.mark.parametrize("action, params", [
    ("pool_list", {}),
    ("pool_get", {"pool_name": "{p}a"}),
    ("pool_create", {"pool_name": "{p}b", "weight": 1}),
    ("pool_update", {"pool_name": "{p}a", "weight": 3}),
    ("pool_delete", {"pool_name": "{p}a"}),
])
def test_every_pool_action_needs_the_admin_role(client, prefix, uri, action, params):
    create_pool(client, prefix + "a", uri(1))
    params = {k: v.format(p=prefix) if isinstance(v, str) else v for k, v in params.items()}
    if action == "pool_create":
        params["uri"] = uri(2)
    for roles in ("", "member, reader"):
        result = client.call(action, headers={"X-Roles": roles}, **params)
        assert_error(result, 403, NOT_AUTHORIZED, "Not authorized", client.transport)
    assert client.call("pool_get", pool_name=prefix + "a").body["weight"] == 10
    assert client.call("pool_get", pool_name=prefix + "b").status == 404


def test_pool_and_flavor_names_no_store_can_hold(client, prefix, uri):
    """Refused or unknown alike on every management store (a PostgreSQL catalog answered 500)."""
    bad = prefix + "a\x00"
    create_pool(client, prefix + "ok", uri(1))
    refused = client.call("pool_create", pool_name=bad, uri=uri(2), weight=1)
    assert_error(refused, 400, 'The "pool_name" parameter is invalid. The value may not contain NUL '
                 "characters or unpaired surrogates.")
    assert client.call("pool_get", pool_name=bad).status == 404  # nothing was registered
    assert client.call("pool_update", pool_name=bad, weight=3).status == 404
    assert client.call("pool_delete", pool_name=bad).status == 204
    assert client.call("flavor_create", flavor_name=bad, pool_list=[prefix + "ok"]).status == 400
    assert client.call("flavor_get", flavor_name=bad).status == 404
    assert client.call("flavor_update", flavor_name=bad, pool_list=[prefix + "ok"]).status == 404
    assert client.call("flavor_delete", flavor_name=bad).status == 204
    placed = client.call("queue_create", queue_name=prefix.strip("-_") or "q", metadata={"_flavor": "g\x00"})
    assert_error(placed, 400, "Flavor g\x00 does not exist.")
