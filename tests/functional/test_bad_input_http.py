"""Bad input over HTTP: every documented rejection, its exact error, and no side effect.

The table lives in ``bad_inputs.py``. Each row runs against a freshly seeded
store; the observable state (queues, metadata, every message including
claimed and delayed ones, stats, the live claim) must be identical before
and after the rejected request, and no answer may be a 500.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
import xml.etree.ElementTree as ElementTree
from typing import Any

import falcon.testing
import pytest

from tests.functional import bad_inputs as bi
from zaqar.api import Api
from zaqar.transport import wsgi

SEEDER = str(uuid.uuid4())
OBSERVER = str(uuid.uuid4())
FULL_LISTING = "include_claimed=true&echo=true&include_delayed=true&limit=20"


@dataclasses.dataclass(frozen=True)
class Seed:
    claim_id: str
    claimed: list[str]
    free: list[str]

    def fill(self, text: str) -> str:
        return (text.replace("<claimed>", self.claimed[0]).replace("<free>", self.free[0])
                .replace("<cid>", self.claim_id))


def _headers(client_id: str = SEEDER, project: str = bi.PROJECT) -> dict[str, str]:
    return {"Client-ID": client_id, "X-Project-ID": project}


@pytest.fixture
def http(api: Api) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(wsgi.build_app(api))


def _post(http: falcon.testing.TestClient, queue: str, messages: list[dict[str, Any]]) -> list[str]:
    r = http.simulate_post(f"/v2/queues/{queue}/messages", headers=_headers(), json={"messages": messages})
    assert r.status_code == 201, r.text
    return [href.rsplit("/", 1)[-1] for href in r.json["resources"]]


@pytest.fixture
def seed(http: falcon.testing.TestClient) -> Seed:
    meta = {"color": "blue", "tags": ["a", "b"]}
    r = http.simulate_put(f"/v2/queues/{bi.Q}", headers=_headers(), json=meta)
    assert r.status_code == 201, r.text
    ids = _post(http, bi.Q, [{"body": {"n": i}, "ttl": 3600} for i in range(4)])
    r = http.simulate_post(f"/v2/queues/{bi.Q}/claims", query_string="limit=2", headers=_headers(),
                           json={"ttl": 300, "grace": 60})
    assert r.status_code == 201, r.text
    claim_id = r.headers["location"].rsplit("/", 1)[-1]
    for queue, meta in ((bi.CAPPED, {"_max_messages_post_size": bi.CAPPED_SIZE}),
                        (bi.SLOW, {"_default_message_delay": bi.SLOW_DELAY})):
        r = http.simulate_put(f"/v2/queues/{queue}", headers=_headers(), json=meta)
        assert r.status_code == 201, r.text
        _post(http, queue, [{"body": queue, "ttl": 600}])
    seed = Seed(claim_id, ids[:2], ids[2:])
    state = snapshot(http, seed)
    # The seed is what the table assumes, so "unchanged" below means something.
    assert state["queues"][1]["count"] == 3
    assert state[f"{bi.Q}/stats"][1]["messages"]["claimed"] == 2
    assert state[f"{bi.Q}/stats"][1]["messages"]["total"] == 4
    assert [m["id"] for m in state["claim"][1]["messages"]] == seed.claimed
    assert state[f"{bi.SLOW}/stats"][1]["messages"]["total"] == 1
    assert state[f"{bi.FRESH}/exists"] == 404
    return seed


def snapshot(http: falcon.testing.TestClient, seed: Seed) -> dict[str, Any]:
    """Everything a client can observe about the seeded data."""

    def get(path: str, query: str | None = None, project: str = bi.PROJECT) -> tuple[int, Any]:
        r = http.simulate_get(path, query_string=query, headers=_headers(OBSERVER, project))
        return r.status_code, (r.json if r.content else None)

    state: dict[str, Any] = {}
    for label, project in (("queues", bi.PROJECT), ("queues-other-project", bi.OTHER_PROJECT),
                           ("queues-long-project", bi.LONG_PROJECT)):
        state[label] = get("/v2/queues", "detailed=true&with_count=true&limit=20", project)
    for queue in (bi.Q, bi.CAPPED, bi.SLOW, bi.FRESH):
        base = f"/v2/queues/{queue}"
        state[f"{queue}/metadata"] = get(base)
        state[f"{queue}/exists"] = http.simulate_head(base, headers=_headers(OBSERVER)).status_code
        state[f"{queue}/messages"] = get(f"{base}/messages", FULL_LISTING)
        state[f"{queue}/stats"] = get(f"{base}/stats")
    state[f"{bi.Q}/messages/other-project"] = get(f"/v2/queues/{bi.Q}/messages", FULL_LISTING,
                                                  bi.OTHER_PROJECT)
    state["claim"] = get(f"/v2/queues/{bi.Q}/claims/{seed.claim_id}")
    return state


def send(http: falcon.testing.TestClient, case: bi.Case, seed: Seed) -> falcon.testing.Result:
    path, _, query = seed.fill(case.path).partition("?")
    headers: dict[str, str] = {"Client-ID": bi.CLIENT_ID, "X-Project-ID": bi.PROJECT}
    if case.body is not None:
        headers["Content-Type"] = "application/json"
    for name, value in case.headers.items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return http.simulate_request(case.method, path, query_string=query or None, headers=headers,
                                 body=case.body)


def error_body(result: falcon.testing.Result, case: bi.Case) -> dict[str, Any]:
    content_type = result.headers.get("content-type", "")
    if case.status == 406 and "xml" in content_type:
        # NOTE: falcon may serialise an error as XML for a client that only accepts XML (§0.4).
        return {child.tag: child.text for child in ElementTree.fromstring(result.text)}
    assert content_type.startswith("application/json"), content_type
    body = json.loads(result.text)
    assert isinstance(body, dict), body
    return body


def check_description(body: dict[str, Any], expected: bi.Description, seed: Seed) -> None:
    if expected is bi.ABSENT:
        assert "description" not in body, body
    elif expected is bi.ANY:
        assert isinstance(body.get("description"), str) and body["description"], body
    elif isinstance(expected, tuple):
        assert body.get("description") in expected, body
    else:
        assert isinstance(expected, str)
        assert body.get("description") == seed.fill(expected), body


@pytest.mark.parametrize("case", bi.CASES, ids=[c.id for c in bi.CASES])
def test_bad_input_is_rejected_and_changes_nothing(
    http: falcon.testing.TestClient, seed: Seed, case: bi.Case
) -> None:
    before = snapshot(http, seed)
    result = send(http, case, seed)
    assert result.status_code != 500, result.text
    assert result.status_code == case.status, result.text
    body = error_body(result, case)
    assert body.get("title") == case.title, body
    check_description(body, case.description, seed)
    if case.allow is not None:
        allowed = {m.strip() for m in result.headers.get("allow", "").split(",") if m.strip()}
        assert allowed - {"OPTIONS"} == case.allow, result.headers.get("allow")
    assert snapshot(http, seed) == before


def test_error_responses_vary_on_accept(http: falcon.testing.TestClient, seed: Seed) -> None:
    """limits-and-errors.md §5 / http-v2.md §0.4: error responses carry ``Vary: Accept``."""
    missing = []
    for case in bi.CASES:
        result = send(http, case, seed)
        if "accept" not in result.headers.get("vary", "").lower():
            missing.append(f"{case.id} ({result.status_code})")
    assert not missing, f"{len(missing)} of {len(bi.CASES)} error responses lack Vary: Accept: {missing}"


ACCEPTED = [
    pytest.param({"Client-ID": uuid.UUID(bi.CLIENT_ID).hex}, "GET", f"/v2/queues/{bi.Q}/messages",
                 id="client-id-32-hex-no-dashes"),
    pytest.param({"Client-ID": bi.CLIENT_ID.upper()}, "GET", "/v2/queues", id="client-id-upper-case"),
    pytest.param({"Client-ID": "{" + bi.CLIENT_ID + "}"}, "GET", "/v2/queues", id="client-id-braces"),
    pytest.param({"Client-ID": "urn:uuid:" + bi.CLIENT_ID}, "GET", "/v2/queues", id="client-id-urn"),
    pytest.param({"X-Project-ID": bi.LONG_PROJECT}, "GET", "/v2/queues", id="project-257-not-a-queue-route"),
    pytest.param({"X-Project-ID": "p" * 256}, "GET", f"/v2/queues/{bi.Q}", id="project-256-queue-route"),
    pytest.param({"X-Project-ID": None, "X-Tenant-ID": bi.PROJECT}, "GET", f"/v2/queues/{bi.Q}",
                 id="project-from-x-tenant-id"),
    pytest.param({}, "GET", f"/v2/queues/{'a' * 64}", id="queue-name-64"),
    pytest.param({}, "GET", "/v2/queues/a.b-c_D9", id="queue-name-all-classes"),
    pytest.param({}, "GET", f"/v2/queues/{bi.Q}/messages?limit=", id="blank-limit-is-absent"),
    pytest.param({}, "GET", "/v2/queues?limit=&detailed=", id="blank-queue-list-params"),
    pytest.param({}, "GET", f"/v2/queues/{bi.Q}/messages?echo=True&include_claimed=yes",
                 id="bool-spellings"),
    pytest.param({"Accept": "*/*"}, "GET", "/v2/queues", id="accept-any"),
    pytest.param({"Accept": "application/xml, application/json;q=0.5"}, "GET", "/v2/queues",
                 id="accept-json-among-others"),
]


@pytest.mark.parametrize(("headers", "method", "target"), ACCEPTED)
def test_near_misses_are_accepted(
    http: falcon.testing.TestClient, seed: Seed, headers: dict[str, str | None], method: str, target: str
) -> None:
    before = snapshot(http, seed)
    sent = {"Client-ID": bi.CLIENT_ID, "X-Project-ID": bi.PROJECT}
    for name, value in headers.items():
        if value is None:
            sent.pop(name, None)
        else:
            sent[name] = value
    path, _, query = target.partition("?")
    result = http.simulate_request(method, path, query_string=query or None, headers=sent)
    assert result.status_code == 200, result.text
    assert snapshot(http, seed) == before


def test_dashless_client_id_can_post(http: falcon.testing.TestClient, seed: Seed) -> None:
    """python-zaqarclient sends ``uuid4().hex``; it must work for writes too."""
    r = http.simulate_post(f"/v2/queues/{bi.Q}/messages", headers=_headers(uuid.uuid4().hex),
                           json={"messages": [{"body": "hex"}]})
    assert r.status_code == 201, r.text
