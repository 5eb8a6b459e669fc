"""HTTP-only behaviour: headers, query decoding and response framing."""

from __future__ import annotations

import logging
import uuid

import falcon.testing
import pytest

from zaqar.transport import wsgi

H = {"Client-ID": uuid.uuid4().hex, "X-Project-ID": "p"}


@pytest.fixture
def http(api):
    return falcon.testing.TestClient(wsgi.build_app(api))


def test_dashless_client_id_and_tenant_header_are_accepted(http):
    headers = {"Client-ID": uuid.uuid4().hex, "X-Tenant-ID": "p"}
    assert http.simulate_put("/v2/queues/q", headers=headers).status_code == 201
    assert http.simulate_get("/v2/queues/q", headers={**headers, "X-Project-ID": "p"}).status_code == 200


def test_version_discovery_needs_no_headers(http):
    result = http.simulate_get("/")
    assert result.status_code == 300
    assert result.json["versions"][0]["links"] == [{"href": "/v2/", "rel": "self"}]


def test_home_document_is_json_home(http):
    result = http.simulate_get("/v2/", headers=H)
    assert result.headers["content-type"] == "application/json-home"
    assert result.headers["cache-control"] == "max-age=86400"
    assert result.json["resources"]["rel/queue"]["hints"]["allow"] == ["GET", "PUT", "DELETE", "PATCH"]


def test_created_queue_has_relative_location_and_json_type(http):
    result = http.simulate_put("/v2/queues/q", headers=H)
    assert result.status_code == 201
    assert result.headers["location"] == "/v2/queues/q"
    assert result.headers["content-type"] == "application/json"
    assert result.headers["x-openstack-request-id"].startswith("req-")


def test_no_content_responses_carry_no_type(http):
    http.simulate_put("/v2/queues/q", headers=H)
    result = http.simulate_put("/v2/queues/q", headers=H)
    assert result.status_code == 204
    assert "content-type" not in result.headers
    assert result.content == b""


def test_head_of_missing_queue_is_404_without_body(http):
    result = http.simulate_head("/v2/queues/nope", headers=H)
    assert result.status_code == 404
    assert result.content == b""


def test_repeated_and_comma_separated_ids_are_concatenated(http):
    http.simulate_post("/v2/queues/q/messages", headers=H,
                       json={"messages": [{"body": i} for i in range(3)]})
    ids = [m["id"] for m in http.simulate_get("/v2/queues/q/messages?echo=true", headers=H).json["messages"]]
    query = f"ids={ids[0]},{ids[1]}&ids={ids[2]}"
    found = http.simulate_get("/v2/queues/q/messages", query_string=query, headers=H).json["messages"]
    assert sorted(m["id"] for m in found) == sorted(ids)


def test_python_style_booleans_are_accepted(http):
    http.simulate_post("/v2/queues/q/messages", headers=H, json={"messages": [{"body": 1}]})
    result = http.simulate_get("/v2/queues/q/messages", query_string="echo=True&include_claimed=False",
                               headers=H)
    assert len(result.json["messages"]) == 1
    assert "echo=true" in result.json["links"][0]["href"]


def test_blank_limit_counts_as_absent(http):
    assert http.simulate_get("/v2/queues", query_string="limit=", headers=H).status_code == 200


def test_unknown_list_parameters_filter_on_metadata(http):
    http.simulate_put("/v2/queues/a", headers=H, json={"team": "x", "n": 1})
    http.simulate_put("/v2/queues/b", headers=H, json={"team": "y"})
    body = http.simulate_get("/v2/queues", query_string="team=x&n=1", headers=H).json
    assert [q["name"] for q in body["queues"]] == ["a"]
    assert "team" not in body["links"][0]["href"]


def test_options_lists_allowed_methods(http):
    result = http.simulate_options("/v2/queues/q/claims", headers=H)
    assert result.status_code == 200
    assert result.headers["allow"] == "POST, OPTIONS"


def test_ping_is_204(http):
    assert http.simulate_get("/v2/ping", headers=H).status_code == 204
    assert http.simulate_head("/v2/ping", headers=H).status_code == 204


def test_health_is_not_routed_without_admin_mode(api):
    from zaqar.api import Api, Context

    plain = falcon.testing.TestClient(wsgi.build_app(Api(Context(store=api.ctx.store))))
    result = plain.simulate_get("/v2/health", headers=H)
    assert (result.status_code, result.json) == (404, {"title": "404 Not Found"})


def test_nan_is_not_json(http):
    result = http.simulate_post("/v2/queues/q/messages", headers={**H, "Content-Type": "application/json"},
                                body='{"messages": [{"body": NaN}]}')
    assert (result.status_code, result.json["description"]) == (400, "Request body could not be parsed.")


def test_renew_with_unbounded_grace_is_400_not_500(http):
    http.simulate_post("/v2/queues/q/messages", headers=H, json={"messages": [{"body": 1}]})
    claim = http.simulate_post("/v2/queues/q/claims", headers=H, json={"ttl": 60, "grace": 60})
    cid = claim.headers["location"].rsplit("/", 1)[1]
    result = http.simulate_patch(f"/v2/queues/q/claims/{cid}", headers=H,
                                 json={"ttl": 60, "grace": 2**63 - 1})
    assert result.status_code == 400
    assert result.json["description"].startswith("The grace for a claim may not exceed 43200 seconds")


def test_every_response_carries_a_request_id(http):
    ids = {http.simulate_get("/v2/queues/q/stats", headers=H).headers["x-openstack-request-id"]
           for _ in range(3)}
    assert len(ids) == 3 and all(i.startswith("req-") for i in ids)


@pytest.mark.parametrize("level, logged", [(logging.DEBUG, True), (logging.INFO, False)])
def test_requests_are_logged_only_at_debug(api, caplog, level, logged):
    with caplog.at_level(level, logger="zaqar.transport.wsgi"):
        client = falcon.testing.TestClient(wsgi.build_app(api))
        assert client.simulate_put("/v2/queues/logged", headers=H).status_code == 201
    lines = [r.getMessage() for r in caplog.records if r.name == "zaqar.transport.wsgi"]
    assert any(line.startswith("PUT /v2/queues/logged 201") for line in lines) is logged


def test_request_ids_are_version_4_uuids():
    from zaqar.transport.wsgi.app import request_id

    ids = [request_id() for _ in range(200)]
    assert len(set(ids)) == 200
    for rid in ids:
        parsed = uuid.UUID(rid.removeprefix("req-"))
        assert (parsed.version, parsed.variant, f"req-{parsed}") == (4, uuid.RFC_4122, rid)
