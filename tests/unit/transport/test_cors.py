"""CORS on the HTTP API (http-v2.md §0.9): off by default, pre-flights answered before header checks."""

from __future__ import annotations

import uuid

import falcon.testing
import pytest

from tests.functional import auth_setup
from zaqar import bootstrap
from zaqar import conf as zconf
from zaqar.transport import wsgi
from zaqar.transport.wsgi import cors

keystone = auth_setup.keystone  # fixture: a local Keystone
IGNORE_WEBOB_CGI = auth_setup.IGNORE_WEBOB_CGI

H = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "p"}
PAGE = "https://dash.example.com"
PREFLIGHT = {"Origin": PAGE, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "client-id, x-project-id, content-type"}


@pytest.fixture
def http(api):
    settings = cors.CorsSettings(allowed_origins=(PAGE, "http://127.0.0.1:3000/"))
    return falcon.testing.TestClient(wsgi.build_app(api, cors=settings))


def test_preflight_is_answered_before_the_client_id_check(http):
    result = http.simulate_options("/v2/queues/q/messages", headers=PREFLIGHT)
    assert result.status_code == 200
    assert result.headers["access-control-allow-origin"] == PAGE
    assert result.headers["access-control-allow-methods"] == "POST"
    assert result.headers["access-control-allow-headers"] == "client-id, x-project-id, content-type"
    assert result.headers["access-control-allow-credentials"] == "true"
    assert result.headers["access-control-max-age"] == "3600"
    assert "Origin" in result.headers["vary"]


def test_allowed_origin_can_read_location_and_error_bodies(http):
    created = http.simulate_put("/v2/queues/q", headers={**H, "Origin": PAGE})
    assert created.status_code == 201
    assert created.headers["access-control-allow-origin"] == PAGE
    assert "Location" in created.headers["access-control-expose-headers"].split(", ")
    refused = http.simulate_get("/v2/queues/q", headers={"Origin": PAGE})  # no Client-ID
    assert refused.status_code == 400
    assert refused.headers["access-control-allow-origin"] == PAGE


def test_configured_origin_matches_whatever_its_trailing_slash_and_case(http):
    result = http.simulate_get("/v2/queues", headers={**H, "Origin": "HTTP://127.0.0.1:3000"})
    assert result.headers["access-control-allow-origin"] == "HTTP://127.0.0.1:3000"


@pytest.mark.parametrize("headers", [
    {**PREFLIGHT, "Origin": "https://evil.example.com"},
    {**PREFLIGHT, "Access-Control-Request-Method": "TRACE"},
    {**PREFLIGHT, "Access-Control-Request-Headers": "client-id, x-evil"},
], ids=["origin", "method", "header"])
def test_disallowed_preflights_get_no_cors_headers(http, headers):
    result = http.simulate_options("/v2/queues/q/messages", headers=headers)
    assert result.status_code == 200
    assert not [name for name in result.headers if name.lower().startswith("access-control-")]


def test_disallowed_origin_gets_the_answer_without_cors_headers(http):
    result = http.simulate_get("/v2/queues", headers={**H, "Origin": "https://evil.example.com"})
    assert result.status_code == 200
    assert not [name for name in result.headers if name.lower().startswith("access-control-")]


def test_wildcard_allows_any_origin_echoing_it(api):
    http = falcon.testing.TestClient(wsgi.build_app(api, cors=cors.CorsSettings(allowed_origins=("*",))))
    result = http.simulate_options("/v2/queues", headers={**PREFLIGHT, "Origin": "http://any.test"})
    assert result.headers["access-control-allow-origin"] == "http://any.test"


def test_off_by_default(api, tmp_path):
    conf = zconf.load([], config_files=[])
    http = falcon.testing.TestClient(bootstrap.build_wsgi_app(conf, api))
    result = http.simulate_options("/v2/queues/q/messages", headers=PREFLIGHT)
    assert result.status_code == 400  # the Client-ID check, as without CORS
    assert "access-control-allow-origin" not in result.headers
    got = http.simulate_get("/v2/queues", headers={**H, "Origin": PAGE})
    assert "access-control-allow-origin" not in got.headers


def test_configured_with_upstream_option_names(api, tmp_path):
    path = tmp_path / "zaqar.conf"
    path.write_text(f"[cors]\nallowed_origin = {PAGE}\nallow_credentials = false\nmax_age = 60\n")
    conf = zconf.load([], config_files=[str(path)])
    http = falcon.testing.TestClient(bootstrap.build_wsgi_app(conf, api))
    result = http.simulate_options("/v2/queues/q/messages", headers=PREFLIGHT)
    assert result.headers["access-control-allow-origin"] == PAGE
    assert result.headers["access-control-max-age"] == "60"
    assert "access-control-allow-credentials" not in result.headers


def test_config_defaults_are_the_cors_layers_defaults():
    conf = zconf.load([], config_files=[])
    assert bootstrap.cors_settings(conf) == cors.CorsSettings()


def test_preflights_answered_here_have_a_request_id_and_vary_on_origin(http):
    result = http.simulate_options("/v2/queues/q/messages", headers=PREFLIGHT)
    assert result.headers["x-openstack-request-id"].startswith("req-")
    refused = http.simulate_get("/v2/queues/q", headers={"Origin": PAGE})  # an error: falcon varies on Accept
    assert [v.strip() for v in refused.headers["vary"].split(",")] == ["Accept", "Origin"]


@IGNORE_WEBOB_CGI
def test_with_keystone_a_page_elsewhere_can_read_the_401(api, tmp_path, keystone):
    """keystonemiddleware answers before the app; CORS wraps it, so the page sees 401, not a network error."""
    options = "".join(f"{k} = {v}\n" for k, v in keystone.options.items())
    path = tmp_path / "zaqar.conf"
    path.write_text(f"[DEFAULT]\nauth_strategy = keystone\n[keystone_authtoken]\n{options}"
                    f"[cors]\nallowed_origin = {PAGE}\n")
    http = falcon.testing.TestClient(bootstrap.build_wsgi_app(zconf.load([], config_files=[str(path)]), api))
    for token in (None, "not-a-token"):
        headers = {**H, "Origin": PAGE, **({"X-Auth-Token": token} if token else {})}
        refused = http.simulate_get("/v2/queues", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == PAGE
        assert refused.headers["access-control-allow-credentials"] == "true"
        assert "Origin" in refused.headers["vary"]
    preflight = http.simulate_options("/v2/queues", headers={**PREFLIGHT, "Access-Control-Request-Headers":
                                                             "x-auth-token, client-id, x-project-id"})
    assert (preflight.status_code, preflight.headers["access-control-allow-origin"]) == (200, PAGE)
    token = keystone.issue("p")
    listed = http.simulate_get("/v2/queues", headers={**H, "Origin": PAGE, "X-Auth-Token": token})
    assert (listed.status_code, listed.headers["access-control-allow-origin"]) == (200, PAGE)
    elsewhere = http.simulate_get("/v2/queues", headers={**H, "Origin": "https://evil.example.com"})
    assert elsewhere.status_code == 401
    assert "access-control-allow-origin" not in elsewhere.headers
