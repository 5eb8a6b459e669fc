"""Flavors as an operator sees them, over every transport (http-v2.md §10, websocket.md §6.4).

Same server as ``test_pools`` (``tests/functional/pool_admin.py``): admin
mode, pooling, a SQLite management store, pools on SQLite files in
``tmp_path``. In process only for now, but written for a shared live server
(see ``test_pools``). Flavors are per project, so a second project is simply
a different ``X-Project-ID`` header.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import falcon.testing
import pytest

from tests.clients import assert_error
from tests.functional import pool_admin
from tests.functional.pool_admin import create_pool
from zaqar import storage
from zaqar.api import Api, Context, Features
from zaqar.transport import wsgi
from zaqar.transport.websocket import protocol

# This module's fixtures (``api`` overrides the suite's with a pooled server that has no pools yet).
api, admin_role, prefix, uri = pool_admin.api, pool_admin.admin_role, pool_admin.prefix, pool_admin.uri

SQLITE_CAPABILITIES = ["AOD", "CLAIMS", "DURABILITY", "FIFO"]
SCHEMA = "Schema validation failed."  # the websocket envelope check, before the API layer


@pytest.fixture
def pools(client, prefix, uri):
    names = [prefix + "p1", prefix + "p2", prefix + "p3"]
    for i, name in enumerate(names):
        create_pool(client, name, uri(i))
    return names


def _flavor(client, name, pool_list, **extra):
    result = client.call("flavor_create", flavor_name=name, pool_list=pool_list, **extra)
    assert result.status == 201, result.body
    return result


def test_create_get_update_delete(client, prefix, pools):
    name = prefix + "f"
    created = _flavor(client, name, pools[:2], capabilities={"ignored": True})
    if client.transport == "http":
        assert created.headers["location"] == f"/v2/flavors/{name}"
    got = client.call("flavor_get", flavor_name=name)
    assert (got.status, got.body) == (200, {"name": name, "pool_list": pools[:2],
                                            "capabilities": SQLITE_CAPABILITIES,
                                            "href": f"/v2/flavors/{name}"})
    assert [client.call("pool_get", pool_name=p).body["flavor"] for p in pools] == [name, name, None]
    updated = client.call("flavor_update", flavor_name=name, pool_list=[pools[2]])
    assert (updated.status, updated.body) == (200, {"name": name, "capabilities": SQLITE_CAPABILITIES,
                                                    "pool_list": [pools[2]], "href": f"/v2/flavors/{name}"})
    assert [client.call("pool_get", pool_name=p).body["flavor"] for p in pools] == [None, None, name]
    assert client.call("flavor_delete", flavor_name=name).status == 204
    assert_error(client.call("flavor_get", flavor_name=name), 404, f"Flavor {name} does not exist",
                 "Not found", client.transport)
    assert client.call("pool_get", pool_name=pools[2]).body["flavor"] is None
    assert client.call("flavor_delete", flavor_name=name).status == 204  # unknown: still 204


def test_put_overwrites_and_answers_201_again(client, prefix, pools):
    _flavor(client, prefix + "f", pools[:2])
    _flavor(client, prefix + "f", [pools[1]])
    assert client.call("flavor_get", flavor_name=prefix + "f").body["pool_list"] == [pools[1]]
    assert client.call("pool_get", pool_name=pools[0]).body["flavor"] is None


def test_flavors_belong_to_their_project(client, prefix, pools):
    other = {"X-Project-ID": f"{prefix}another-project"}
    _flavor(client, prefix + "f", pools[:1])
    assert_error(client.call("flavor_get", flavor_name=prefix + "f", headers=other), 404,
                 f"Flavor {prefix}f does not exist", "Not found", client.transport)
    assert client.call("flavor_list", headers=other).body == {"flavors": [], "links": []}
    moved = client.call("flavor_update", flavor_name=prefix + "f", pool_list=pools[:1], headers=other)
    assert moved.status == 404
    assert client.call("flavor_delete", flavor_name=prefix + "f", headers=other).status == 204
    assert client.call("flavor_get", flavor_name=prefix + "f").status == 200


def test_list_pages_to_the_end(client, prefix, pools):
    names = [f"{prefix}f{i}" for i in range(5)]
    for i, name in enumerate(names):
        _flavor(client, name, [pools[i % 3]])
    seen, marker = [], None
    while True:
        after = {"marker": marker} if marker else {}
        body = client.call("flavor_list", limit=2, detailed=True, **after).body
        if not body["flavors"]:
            assert body["links"] == []
            break
        (link,) = body["links"]
        query = parse_qs(urlsplit(link["href"]).query)
        assert urlsplit(link["href"]).path == "/v2/flavors"
        assert query == {"limit": ["2"], "detailed": ["true"], "marker": [body["flavors"][-1]["name"]]}
        seen += body["flavors"]
        marker = query["marker"][0]
    # a pool belongs to one flavor: the later flavors took p1 and p2 over from f0 and f1
    assert seen == [
        {"name": names[0], "href": f"/v2/flavors/{names[0]}", "capabilities": []},
        {"name": names[1], "href": f"/v2/flavors/{names[1]}", "capabilities": []},
        *({"name": n, "href": f"/v2/flavors/{n}", "pool_list": [pools[i % 3]],
           "capabilities": SQLITE_CAPABILITIES} for i, n in enumerate(names) if i >= 2),
    ]


def test_list_entries_omit_capabilities_unless_detailed(client, prefix, pools):
    _flavor(client, prefix + "f", pools[:2])
    assert client.call("flavor_list").body["flavors"] == [
        {"name": prefix + "f", "href": f"/v2/flavors/{prefix}f", "pool_list": pools[:2]}]


@pytest.mark.parametrize("limit", [0, 21])
def test_list_limit_out_of_range(client, limit):
    assert_error(client.call("flavor_list", limit=limit), 400,
                 "Limit must be at least 1 and no greater than 20.", "Invalid API request", client.transport)


@pytest.mark.parametrize("fields, description, ws_description", [
    ({}, "body: 'pool_list' is a required property", None),
    ({"pool_list": None}, "pool_list: None is not of type 'array'", SCHEMA),
    ({"pool_list": "p1"}, "pool_list: 'p1' is not of type 'array'", SCHEMA),
    ({"pool_list": [1]}, "pool_list.0: 1 is not of type 'string'", None),
    ({"pool_list": ["{p}p1"], "capabilities": []}, "capabilities: [] is not of type 'object'", SCHEMA),
])
def test_create_schema_errors(client, prefix, pools, fields, description, ws_description):
    fields = {k: [x.format(p=prefix) for x in v] if k == "pool_list" and isinstance(v, list)
              and all(isinstance(x, str) for x in v) else v for k, v in fields.items()}
    result = client.call("flavor_create", flavor_name=prefix + "f", **fields)
    expected = description if client.transport == "http" else (ws_description or description)
    assert_error(result, 400, expected, "Invalid request body", client.transport)
    assert client.call("flavor_get", flavor_name=prefix + "f").status == 404


def test_create_needs_known_pools(client, prefix, pools):
    name = prefix + "f"
    assert_error(client.call("flavor_create", flavor_name=name, pool_list=[]), 400, "Bad Request",
                 "Unable to create", client.transport)
    result = client.call("flavor_create", flavor_name=name, pool_list=[pools[0], prefix + "nope"])
    assert_error(result, 400, f"Flavor {name} could not be created, error:Pool {prefix}nope does not exist",
                 "Unable to create", client.transport)
    assert client.call("flavor_get", flavor_name=name).status == 404
    assert client.call("pool_get", pool_name=pools[0]).body["flavor"] is None


def test_update_errors(client, prefix, pools):
    name = prefix + "f"
    _flavor(client, name, pools[:1])
    assert_error(client.call("flavor_update", flavor_name=name), 400, "`pool_list` needs to be specified",
                 "Invalid request body", client.transport)
    assert_error(client.call("flavor_update", flavor_name=name, pool_list=[]), 400, "Bad Request",
                 "Unable to create", client.transport)
    assert_error(client.call("flavor_update", flavor_name=prefix + "nope", pool_list=pools[:1]), 404,
                 f"Flavor {prefix}nope does not exist", "Not found", client.transport)
    result = client.call("flavor_update", flavor_name=name, pool_list=[prefix + "nope"])
    assert_error(result, 400, f"Flavor {name} cant be updated, error:Pool {prefix}nope does not exist",
                 "updatefail", client.transport)
    assert client.call("flavor_get", flavor_name=name).body["pool_list"] == pools[:1]


def test_a_flavor_whose_pools_left_it(client, prefix, pools):
    _flavor(client, prefix + "f", pools[:1])
    client.call("pool_update", pool_name=pools[0], flavor=prefix + "other")
    got = client.call("flavor_get", flavor_name=prefix + "f").body
    assert (got["pool_list"], got["capabilities"]) == ([], [])
    listed = client.call("flavor_list").body["flavors"]
    assert listed == [{"name": prefix + "f", "href": f"/v2/flavors/{prefix}f"}]


def test_websocket_takes_a_pool_name_as_a_one_element_list(client, prefix, pools):
    if client.transport == "http":
        pytest.skip("websocket.md §6.4: pool_name is a websocket body field only")
    assert client.call("flavor_create", flavor_name=prefix + "f", pool_name=pools[1]).status == 201
    assert client.call("flavor_get", flavor_name=prefix + "f").body["pool_list"] == [pools[1]]
    updated = client.call("flavor_update", flavor_name=prefix + "f", pool_name=pools[2])
    assert updated.body["pool_list"] == [pools[2]]
    both = client.call("flavor_update", flavor_name=prefix + "f", pool_name=pools[0], pool_list=pools[1:])
    assert both.body["pool_list"] == pools[1:]  # an explicit pool_list wins


def test_writes_need_the_admin_role_reads_do_not(client, prefix, pools):
    _flavor(client, prefix + "f", pools[:1])
    no_roles = {"X-Roles": ""}
    for action, params in [("flavor_create", {"flavor_name": prefix + "g", "pool_list": pools[1:2]}),
                           ("flavor_update", {"flavor_name": prefix + "f", "pool_list": pools[1:2]}),
                           ("flavor_delete", {"flavor_name": prefix + "f"})]:
        assert_error(client.call(action, headers=no_roles, **params), 403,
                     "You are not authorized to complete this action.", "Not authorized", client.transport)
    got = client.call("flavor_get", flavor_name=prefix + "f", headers=no_roles)
    assert got.body["pool_list"] == pools[:1]
    assert [f["name"] for f in client.call("flavor_list", headers=no_roles).body["flavors"]] == [prefix + "f"]


POOL_ADMIN = [f"{resource}_{verb}" for resource in ("pool", "flavor")
              for verb in ("list", "create", "get", "update", "delete")]


def test_without_pooling_nothing_is_routed_and_actions_are_not_available(tmp_path):
    store = storage.load_data_driver("sqlite", f"sqlite:///{tmp_path / 'plain.sqlite'}")
    try:
        plain = Api(Context(store=store, features=Features(admin_mode=True)))
        assert not set(POOL_ADMIN) & plain.actions
        http = falcon.testing.TestClient(wsgi.build_app(plain))
        headers = {"Client-ID": "3381af92-2b9e-11e3-b191-71861300734c", "X-Project-ID": "p",
                   "X-Roles": "admin"}
        for path in ("/v2/pools", "/v2/pools/p", "/v2/flavors", "/v2/flavors/f"):
            result = http.simulate_get(path, headers=headers)
            assert (result.status_code, result.json) == (404, {"title": "404 Not Found"})
        for action in POOL_ADMIN:
            body = {"pool_name": "p"} if action.startswith("pool") else {"flavor_name": "f",
                                                                          "pool_list": ["p"]}
            reply = protocol.handle_document(plain, {"action": action, "headers": headers, "body": body})
            assert reply["headers"] == {"status": 404}
            assert reply["body"] == {"exception": f"{action} is not available on this server.", "error": None}
    finally:
        store.close()
