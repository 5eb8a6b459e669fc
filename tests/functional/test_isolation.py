"""Tenant isolation: one project can neither see nor change another's data, whatever it names.

Project A seeds a queue with metadata, messages (two of them claimed) and a
subscription. Project B then runs every operation against A's queue name,
message ids, claim id and subscription id, first while B has no such queue
and again once B made its own queue of the same name. B must get what an
empty namespace gives (404, empty pages, silent 204 deletes) and A's data,
as A observes it, must be exactly what it was. Runs over every transport
of the ``client`` fixture (HTTP, websocket JSON and MessagePack; in process,
pooled, and against real servers on every store).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.clients import HttpActionClient, Result, WsActionClient
from tests.functional.conftest import ADMIN, IN_PROCESS

Client = HttpActionClient | WsActionClient
Q = "shared"
HOOK = "http://127.0.0.1:1/hook"


def as_project(client: Client, project: str) -> Client:
    """The same transport and connection, acting for ``project``."""
    client_id = client.headers["Client-ID"]
    if isinstance(client, HttpActionClient):
        return HttpActionClient(client.send, project=project, client_id=client_id)
    return WsActionClient(client.send, binary=client.binary, project=project, client_id=client_id)


def _ok(result: Result, status: int = 201) -> Any:
    assert result.status == status, result.body
    return result.body


def _without_age(value: Any) -> Any:
    """Ages grow while the test runs; everything else must stay exactly as it was."""
    if isinstance(value, dict):
        return {k: _without_age(v) for k, v in value.items() if k != "age"}
    if isinstance(value, list):
        return [_without_age(v) for v in value]
    return value


class Seed:
    """Project A's data, and every observation A can make of it."""

    def __init__(self, a: Client) -> None:
        self.a = a
        _ok(a.call("queue_create", queue_name=Q, metadata={"owner": "a"}))
        posted = _ok(a.call("message_post", queue_name=Q,
                            messages=[{"body": {"n": n}, "ttl": 3600} for n in range(4)]))
        self.message_ids = [href.rsplit("/", 1)[-1] for href in posted["resources"]]
        claimed = _ok(a.call("claim_create", queue_name=Q, ttl=300, grace=60, limit=2))
        self.claimed = [m["id"] for m in claimed["messages"]]
        self.free = [m for m in self.message_ids if m not in self.claimed]
        self.claim_id = claimed["messages"][0]["href"].rsplit("claim_id=", 1)[-1]
        self.subscription_id = _ok(a.call("subscription_create", queue_name=Q, subscriber=HOOK,
                                          ttl=3600))["subscription_id"]
        assert len(self.claimed) == 2 and len(self.free) == 2

    def snapshot(self) -> dict[str, Any]:
        a = self.a
        calls = {
            "queues": a.call("queue_list", detailed=True),
            "metadata": a.call("queue_get", queue_name=Q),
            "stats": a.call("queue_get_stats", queue_name=Q),
            "messages": a.call("message_list", queue_name=Q, echo=True, include_claimed=True, limit=20),
            "by-ids": a.call("message_get_many", queue_name=Q, message_ids=self.message_ids),
            "claim": a.call("claim_get", queue_name=Q, claim_id=self.claim_id),
            "subscriptions": a.call("subscription_list", queue_name=Q),
            "subscription": a.call("subscription_get", queue_name=Q, subscription_id=self.subscription_id),
        }
        state = {name: (r.status, _without_age(r.body)) for name, r in calls.items()}
        assert state["stats"][1]["messages"]["claimed"] == 2 and state["stats"][1]["messages"]["total"] == 4
        return state


def _id_operations(seed: Seed) -> list[tuple[str, dict[str, Any], int]]:
    """Operations naming A's ids, each with the status an empty namespace answers."""
    mid, claimed, cid, sid = seed.free[0], seed.claimed[0], seed.claim_id, seed.subscription_id
    return [
        ("message_get", {"message_id": mid}, 404),
        ("message_get", {"message_id": claimed}, 404),
        ("message_get_many", {"message_ids": seed.message_ids}, 404),
        ("message_delete", {"message_id": mid}, 204),
        ("message_delete", {"message_id": claimed}, 204),
        ("message_delete", {"message_id": claimed, "claim_id": cid}, 204),
        ("message_delete_many", {"message_ids": seed.message_ids}, 204),
        ("claim_get", {"claim_id": cid}, 404),
        ("claim_update", {"claim_id": cid, "ttl": 600, "grace": 60}, 404),
        ("claim_delete", {"claim_id": cid}, 204),
        ("subscription_get", {"subscription_id": sid}, 404),
        ("subscription_update", {"subscription_id": sid, "subscription": {"ttl": 7200}}, 404),
        ("subscription_confirm", {"subscription_id": sid, "confirmed": True}, 404),
        ("subscription_delete", {"subscription_id": sid}, 204),
    ]


def _run(b: Client, operations: list[tuple[str, dict[str, Any], int]]) -> list[str]:
    wrong = []
    for action, params, status in operations:
        result = b.call(action, queue_name=Q, **params)
        if result.status != status:
            wrong.append(f"{action} {params}: {result.status} {result.body}")
    return wrong


def test_another_project_gets_nothing_and_changes_nothing(client: Client) -> None:
    seed = Seed(client)
    before = seed.snapshot()
    b = as_project(client, f"{client.headers['X-Project-ID']}-b")

    # B has no queue of that name: A's names and ids lead nowhere.
    assert _ok(b.call("queue_list", detailed=True), 200)["queues"] == []
    assert "owner" not in _ok(b.call("queue_get", queue_name=Q), 200)
    assert _ok(b.call("queue_get_stats", queue_name=Q), 200)["messages"]["total"] == 0
    assert _ok(b.call("message_list", queue_name=Q, echo=True, include_claimed=True), 200)["messages"] == []
    assert _ok(b.call("subscription_list", queue_name=Q), 200)["subscriptions"] == []
    assert b.call("claim_create", queue_name=Q, ttl=300, grace=60).status == 204  # nothing to claim
    assert _ok(b.call("message_delete_many", queue_name=Q, pop=4), 200)["messages"] == []
    assert _run(b, _id_operations(seed)) == []
    assert b.call("queue_purge", queue_name=Q).status == 204
    assert b.call("queue_delete", queue_name=Q).status == 204
    if client.transport == "http":  # operations only HTTP has (websocket.md §6.1)
        assert b.call("queue_exists", queue_name=Q).status == 404
        patch = [{"op": "add", "path": "/metadata/owner", "value": "b"}]
        assert b.call("queue_update", queue_name=Q, patch=patch).status == 404
    assert seed.snapshot() == before

    # B makes its own queue of that name: still none of A's data is reachable through it.
    assert b.call("queue_create", queue_name=Q, metadata={"owner": "b"}).status == 201
    mine = _ok(b.call("message_post", queue_name=Q, messages=[{"body": "b's", "ttl": 3600}]))
    mine_id = mine["resources"][0].rsplit("/", 1)[-1]
    own_sid = _ok(b.call("subscription_create", queue_name=Q, subscriber=HOOK, ttl=3600))["subscription_id"]
    assert own_sid != seed.subscription_id  # the same subscriber is no duplicate of A's
    listed = _ok(b.call("message_list", queue_name=Q, echo=True, include_claimed=True), 200)["messages"]
    assert [m["id"] for m in listed] == [mine_id]
    claimed = _ok(b.call("claim_create", queue_name=Q, ttl=300, grace=60, limit=20))["messages"]
    assert [m["id"] for m in claimed] == [mine_id]
    assert _run(b, _id_operations(seed)) == []
    if client.transport == "http":
        patch = [{"op": "replace", "path": "/metadata/owner", "value": "b2"}]
        assert _ok(b.call("queue_update", queue_name=Q, patch=patch), 200)["owner"] == "b2"
    stats = _ok(b.call("queue_get_stats", queue_name=Q), 200)["messages"]
    assert (stats["total"], stats["claimed"]) == (1, 1)
    queues = _ok(b.call("queue_list", detailed=True), 200)["queues"]
    assert [(q["name"], q["metadata"]["owner"]) for q in queues] == [(Q, "b2" if client.transport == "http"
                                                                       else "b")]
    assert b.call("claim_delete", queue_name=Q, claim_id=claimed[0]["href"].rsplit("=", 1)[-1]).status == 204
    assert [m["body"] for m in _ok(b.call("message_delete_many", queue_name=Q, pop=20), 200)["messages"]] \
        == ["b's"]
    assert b.call("queue_purge", queue_name=Q).status == 204
    assert b.call("queue_delete", queue_name=Q).status == 204
    assert seed.snapshot() == before


@pytest.fixture
def in_process_pooled(request: pytest.FixtureRequest) -> bool:
    name, _, store = str(request.node.callspec.params.get("client", "")).partition("@")
    return name in IN_PROCESS and store == "pooled"


def test_flavors_are_per_project(client: Client, in_process_pooled: bool) -> None:
    """Flavors are per project (pools are the operator's): B cannot see, use or remove A's."""
    if not in_process_pooled:
        pytest.skip("flavors need pooling; the shared pooled server must keep its placement rules")
    pools = [p["name"] for p in _ok(client.call("pool_list", headers=ADMIN), 200)["pools"]]
    assert client.call("flavor_create", headers=ADMIN, flavor_name="gold",
                       pool_list=pools[:1]).status == 201
    flavor_before = client.call("flavor_get", flavor_name="gold")
    b = as_project(client, f"{client.headers['X-Project-ID']}-b")
    assert b.call("flavor_get", flavor_name="gold").status == 404
    assert _ok(b.call("flavor_list"), 200)["flavors"] == []
    assert b.call("flavor_delete", headers=ADMIN, flavor_name="gold").status == 204
    assert b.call("flavor_update", headers=ADMIN, flavor_name="gold", pool_list=pools).status == 404
    refused = b.call("queue_create", queue_name="placed", metadata={"_flavor": "gold"})
    assert refused.status == 400  # A's flavor name means nothing in B's namespace
    after = client.call("flavor_get", flavor_name="gold")
    assert (after.status, after.body) == (flavor_before.status, flavor_before.body) and after.status == 200


def test_queue_placement_is_per_project(client: Client, pooled: bool) -> None:
    """With pooling, the same queue name in two projects is two queues, each with its own data."""
    if not pooled:
        pytest.skip("placement exists only with pooling")
    projects = [f"{client.headers['X-Project-ID']}-{uuid.uuid4().hex[:6]}" for _ in range(6)]
    clients: list[Client] = [as_project(client, p) for p in projects]
    for index, c in enumerate(clients):
        _ok(c.call("message_post", queue_name=Q, messages=[{"body": index, "ttl": 3600}]))
    bodies: list[Callable[[], Any]] = [
        lambda c=c: [m["body"] for m in _ok(c.call("message_list", queue_name=Q, echo=True), 200)["messages"]]
        for c in clients
    ]
    assert [read() for read in bodies] == [[index] for index in range(len(clients))]


# -- text no store can hold (review 8 #5) ----------------------------------------------------------
NO_NUL = "may not contain NUL characters or unpaired surrogates"


def _unstorable(client: Client, prefix: str = "a") -> list[str]:
    """NUL, which PostgreSQL refuses and SQLite and Redis would keep.

    NOTE: an unpaired surrogate (JSON "\\ud800") never gets this far: both transports refuse
    the document that spells one as undecodable (tests/functional/bad_inputs.py, test_fuzz.py).
    """
    return [f"{prefix}\x00", "\x00"]


def _refusal(client: Client, http: tuple[str, str], websocket: str) -> tuple[int, dict[str, Any]]:
    title, description = http
    if client.transport == "http":
        return 400, {"title": title, "description": description}
    return 400, {"title": None, "description": websocket}


def test_markers_no_store_can_hold_are_refused_alike_on_every_store(client: Client) -> None:
    """A 400 from the API's validation, the same on every store: never a 503 "try again" (PostgreSQL)."""
    seed = Seed(client)
    before = seed.snapshot()
    for value in _unstorable(client):
        cases = [("queue_list", {"marker": value}, "marker"),
                 ("message_list", {"queue_name": Q, "marker": value}, "marker"),
                 ("subscription_list", {"queue_name": Q, "marker": value}, "marker")]
        if client.transport == "http":  # the name filter is HTTP's only (websocket.md §6.1)
            cases.append(("queue_list", {"name": value}, "name"))
        for action, params, field in cases:
            text = f'The "{field}" parameter is invalid. The value {NO_NUL}.'
            result = client.call(action, **params)
            assert (result.status, result.body) == _refusal(client, ("Invalid API request", text), text), \
                (action, params)
    assert seed.snapshot() == before


def test_project_ids_no_store_can_hold_are_refused_alike_on_every_store(client: Client, request) -> None:
    """SQLite and Redis would keep ``a\\x00`` as a project of its own, PostgreSQL refuses it: all refuse."""
    if client.transport == "http" and "@" in str(request.node.callspec.params["client"]):
        pytest.skip("an HTTP server refuses a NUL in a header before the app (tests/unit/transport)")
    seed = Seed(client)
    before = seed.snapshot()
    http = ("Invalid queue identification",
            "The format of the submitted queue name or project id is not valid.")
    cut = f"{client.headers['X-Project-ID']}-cut"
    for project in _unstorable(client, cut):
        other = as_project(client, project)
        for action, params in (("queue_list", {}), ("queue_create", {"queue_name": Q}),
                               ("message_post", {"queue_name": Q, "messages": [{"body": 1, "ttl": 60}]}),
                               ("message_list", {"queue_name": Q}), ("queue_get_stats", {"queue_name": Q}),
                               ("subscription_create", {"queue_name": Q, "subscriber": HOOK, "ttl": 3600})):
            result = other.call(action, **params)
            assert (result.status, result.body) == _refusal(client, http, f"Project ids {NO_NUL}."), \
                (action, project)
    assert seed.snapshot() == before
    assert _ok(as_project(client, cut).call("queue_list"), 200)["queues"] == []  # nor under a cut name


def test_a_subscriber_no_store_can_hold_is_refused_alike_on_every_store(client: Client) -> None:
    result = client.call("subscription_create", queue_name=Q, subscriber="http://x.test/\x00", ttl=3600)
    assert result.status == 400, result.body
