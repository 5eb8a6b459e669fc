"""What the server acknowledged must survive the server process dying.

Each test talks plain HTTP to a real zaqar-server, records what it answered
with 2xx, kills the process (SIGKILL: no shutdown code runs) or stops it
(SIGTERM), starts a new process on the same state directory and checks that
every acknowledged change is still there.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.slow

PROJECT = "durability"
QUEUE = "ledger"
N_MESSAGES = 200
BATCH_SIZES = [1, 7, 20, 50, 2, 40, 30, 50]  # several requests, N_MESSAGES in total
assert sum(BATCH_SIZES) == N_MESSAGES


class Api:
    """Minimal HTTP client for the v2 endpoints these tests need."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.session = requests.Session()
        self.session.headers.update({"Client-ID": str(uuid.uuid4()), "X-Project-Id": PROJECT})

    def _url(self, path: str) -> str:
        return f"{self.server.url}/v2/queues/{QUEUE}{path}"

    def post(self, bodies: list[Any], ttl: int = 3600) -> list[str]:
        response = self.session.post(
            self._url("/messages"), json={"messages": [{"body": b, "ttl": ttl} for b in bodies]}, timeout=10
        )
        assert response.status_code == 201, response.text
        return [href.rsplit("/", 1)[-1] for href in response.json()["resources"]]

    def get_by_ids(self, ids: list[str]) -> dict[str, Any]:
        """id -> body for every id the server still has, asking 20 ids at a time."""
        found: dict[str, Any] = {}
        for start in range(0, len(ids), 20):
            response = self.session.get(
                self._url("/messages"), params={"ids": ",".join(ids[start:start + 20])}, timeout=10
            )
            if response.status_code == 404:
                continue
            assert response.status_code == 200, response.text
            found.update({m["id"]: m["body"] for m in response.json()["messages"]})
        return found

    def list_all(self, **params: str) -> list[dict[str, Any]]:
        """Every listed message, following next links until an empty page."""
        query = {"echo": "true", "limit": "20", **params}
        response = self.session.get(self._url("/messages"), params=query, timeout=10)
        messages: list[dict[str, Any]] = []
        for _ in range(N_MESSAGES):
            assert response.status_code == 200, response.text
            page = response.json()
            if not page["messages"]:
                return messages
            messages += page["messages"]
            [next_link] = [link["href"] for link in page["links"] if link["rel"] == "next"]
            response = self.session.get(self.server.url + next_link, timeout=10)
        raise AssertionError("listing did not end")

    def claim(self, ttl: int = 600, limit: int = 5) -> tuple[str, list[str]]:
        response = self.session.post(
            self._url("/claims"), params={"limit": limit}, json={"ttl": ttl, "grace": 60}, timeout=10
        )
        assert response.status_code == 201, response.text
        messages = response.json()["messages"]
        return messages[0]["href"].split("claim_id=")[-1], [m["id"] for m in messages]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path) as running:
        yield running


@pytest.fixture
def api(server: ServerProcess) -> Api:
    return Api(server)


def _body(seq: int) -> dict[str, Any]:
    """A distinct, non-trivial body per message, so a mix-up or truncation shows."""
    return {"seq": seq, "text": f"message {seq} — ünïcödé ✓", "pad": "x" * (seq * 13 % 997),
            "nested": {"list": list(range(seq % 7)), "flag": seq % 2 == 0, "none": None}}


def _post_all(api: Api) -> dict[str, Any]:
    acknowledged: dict[str, Any] = {}
    seq = 0
    for size in BATCH_SIZES:
        bodies = [_body(seq + i) for i in range(size)]
        ids = api.post(bodies)
        assert len(ids) == size
        acknowledged.update(zip(ids, bodies, strict=True))
        seq += size
    assert len(acknowledged) == N_MESSAGES, "message ids must be unique"
    return acknowledged


def test_acknowledged_messages_survive_sigkill(server: ServerProcess, api: Api) -> None:
    acknowledged = _post_all(api)

    server.restart_after_kill()

    found = api.get_by_ids(list(acknowledged))
    missing = sorted(set(acknowledged) - set(found))
    assert not missing, f"{len(missing)} acknowledged messages lost after SIGKILL, e.g. {missing[:5]}"
    changed = [mid for mid, body in acknowledged.items() if found[mid] != body]
    assert not changed, f"bodies changed after SIGKILL: {changed[:5]}"

    listed = api.list_all()
    assert [m["id"] for m in listed] == list(acknowledged), "the listing lost messages or their post order"
    assert [m["body"] for m in listed] == list(acknowledged.values())


def test_messages_posted_after_a_crash_get_fresh_ids_and_queue_behind(
    server: ServerProcess, api: Api
) -> None:
    before = api.post([_body(i) for i in range(5)])
    server.restart_after_kill()
    after = api.post([_body(i) for i in range(5, 10)])
    assert not set(before) & set(after), "ids handed out before the crash were reused"
    assert [m["id"] for m in api.list_all()] == before + after
    assert [m["id"] for m in api.list_all(marker=before[-1])] == after


def test_posts_acknowledged_while_the_server_is_killed_survive(server: ServerProcess, api: Api) -> None:
    """Kill the server while a client is still posting: every 201 it received must hold."""
    acknowledged: dict[str, Any] = {}
    enough = threading.Event()
    poster = Api(server)

    def post_until_the_server_dies() -> None:
        seq = 0
        while True:
            bodies = [_body(seq + i) for i in range(3)]
            try:
                ids = poster.post(bodies)
            except requests.RequestException:
                return
            acknowledged.update(zip(ids, bodies, strict=True))
            seq += 3
            if len(acknowledged) >= 120:
                enough.set()

    thread = threading.Thread(target=post_until_the_server_dies, daemon=True)
    thread.start()
    assert enough.wait(timeout=60), "the poster never got 120 messages acknowledged"
    server.kill()
    thread.join(timeout=30)
    assert not thread.is_alive()

    server.start()
    found = api.get_by_ids(list(acknowledged))
    missing = sorted(set(acknowledged) - set(found))
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"
    assert all(found[mid] == body for mid, body in acknowledged.items())


def test_deletes_claims_and_metadata_survive_sigkill(server: ServerProcess, api: Api) -> None:
    ids = api.post([_body(i) for i in range(10)])
    response = api.session.delete(api._url("/messages"), params={"ids": ",".join(ids[:3])}, timeout=10)
    assert response.status_code == 204
    claim_id, claimed = api.claim(ttl=600, limit=2)
    assert claimed == ids[3:5]
    response = api.session.patch(
        api._url(""),
        json=[{"op": "add", "path": "/metadata/owner", "value": "ops"}],
        headers={"Content-Type": "application/openstack-messaging-v2.0-json-patch"},
        timeout=10,
    )
    assert response.status_code == 200, response.text

    server.restart_after_kill()

    assert set(api.get_by_ids(ids)) == set(ids[3:]), "deleted messages came back or others vanished"
    assert [m["id"] for m in api.list_all()] == ids[5:], "claimed messages must stay hidden"
    got = api.session.get(api._url(f"/claims/{claim_id}"), timeout=10)
    assert got.status_code == 200, got.text
    assert sorted(m["id"] for m in got.json()["messages"]) == sorted(claimed)
    assert api.session.get(api._url(""), timeout=10).json()["owner"] == "ops"
    deleted = api.session.delete(api._url(f"/messages/{ids[3]}"), params={"claim_id": claim_id}, timeout=10)
    assert deleted.status_code == 204


def test_message_survives_a_clean_stop(server: ServerProcess, api: Api) -> None:
    [mid] = api.post([{"greeting": "still here"}])

    assert server.stop() == 0, server.log()
    server.start()

    assert api.get_by_ids([mid]) == {mid: {"greeting": "still here"}}
    message = api.session.get(api._url(f"/messages/{mid}"), timeout=10).json()
    assert message["body"] == {"greeting": "still here"}
    assert message["ttl"] == 3600


def test_server_restarts_repeatedly_on_the_same_state(server: ServerProcess, api: Api) -> None:
    posted: list[str] = []
    for round_ in range(3):
        posted += api.post([{"round": round_}])
        if round_ % 2:
            server.restart_after_stop()
        else:
            server.restart_after_kill()
    assert [m["id"] for m in api.list_all()] == posted
    assert [m["body"] for m in api.list_all()] == [{"round": r} for r in range(3)]
