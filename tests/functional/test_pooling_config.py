"""Starting a pooled zaqar-server from zaqar.conf alone: with and without a first pool from config."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.server import running_server

pytestmark = pytest.mark.slow

H = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "pooled-config", "X-Roles": "admin"}
POOLED = {"admin_mode": "true", "pooling": "true"}


def _post(url: str, queue: str = "q") -> requests.Response:
    return requests.post(f"{url}/v2/queues/{queue}/messages", headers=H, json={"messages": [{"body": 1}]},
                         timeout=30)


def test_without_pools_queues_cannot_be_placed_and_the_answer_says_why(tmp_path):
    with running_server(tmp_path, options={"DEFAULT": POOLED}) as server:
        refused = _post(server.url)
        assert refused.status_code == 503
        assert refused.json() == {
            "title": "Service temporarily unavailable",
            "description": "No pools registered, so the queue cannot be placed; an operator must "
                           "register a pool first.",
        }
        listed = requests.get(f"{server.url}/v2/queues", headers=H, timeout=30)
        assert (listed.status_code, listed.json()) == (200, {"queues": [], "links": []})
        pool = {"uri": f"sqlite:///{tmp_path / 'first-pool.sqlite'}", "weight": 1}
        registered = requests.put(f"{server.url}/v2/pools/first", headers=H, json=pool, timeout=30)
        assert registered.status_code == 201
        assert _post(server.url).status_code == 201


def test_the_virtual_pool_makes_a_pooled_server_work_with_one_command(tmp_path):
    with running_server(tmp_path) as single:  # the same deployment before pooling was turned on
        assert _post(single.url, "before").status_code == 201
    options = {"DEFAULT": POOLED, "pooling:catalog": {"enable_virtual_pool": "true"}}
    with running_server(tmp_path, options=options) as server:
        kept = requests.get(f"{server.url}/v2/queues/before/messages?echo=true", headers=H, timeout=30)
        assert [m["body"] for m in kept.json()["messages"]] == [1]
        assert _post(server.url).status_code == 201
        pools = requests.get(f"{server.url}/v2/pools", headers=H, timeout=30).json()["pools"]
        store_file = tmp_path / "state" / "zaqar.sqlite"
        assert [(p["name"], p["uri"], p["weight"]) for p in pools] == [
            ("default", f"sqlite:///{store_file}", 100)]
        server.stop()
        server.start()  # registered once: a restart neither duplicates nor changes the pool
        again = requests.get(f"{server.url}/v2/pools", headers=H, timeout=30).json()["pools"]
        assert again == pools
        listed = requests.get(f"{server.url}/v2/queues/q/messages?echo=true", headers=H, timeout=30)
        assert [m["body"] for m in listed.json()["messages"]] == [1]
