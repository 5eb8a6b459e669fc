"""Pooling on real zaqar-server processes over real Redis and PostgreSQL pools.

Pools are registered through the admin API; which pool holds a queue is read
from the server's management store and checked against what each pool's
store holds when opened directly, beside the server.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import websocket

from tests import backends
from tests.functional.test_backend_faults import _target, _via
from tests.proxy import ToggleProxy
from tests.server import ServerProcess, running_server
from zaqar import storage
from zaqar.storage import base

pytestmark = pytest.mark.slow

PROJECT = "pooling-servers"
H = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
ADMIN = {**H, "X-Roles": "admin"}
POOLED = {"DEFAULT": {"admin_mode": "true", "pooling": "true"}}
UNAVAILABLE = "Service temporarily unavailable"


def _call(server: ServerProcess, method: str, path: str, body: object = None, *, admin: bool = False,
          status: int | None = None) -> requests.Response:
    r = requests.request(method, server.url + path, headers=ADMIN if admin else H, json=body, timeout=30)
    if status is not None:
        assert r.status_code == status, (method, path, r.status_code, r.text)
    return r


def _add_pools(server: ServerProcess, pools: dict[str, tuple[str, int]]) -> None:
    for name, (uri, weight) in pools.items():
        _call(server, "PUT", f"/v2/pools/{name}", {"uri": uri, "weight": weight}, admin=True, status=201)


def _create_queues(server: ServerProcess, names: list[str], metadata: dict | None = None) -> None:
    for name in names:
        _call(server, "PUT", f"/v2/queues/{name}", metadata or {}, status=201)


def _post(server: ServerProcess, queue: str, body: object = 1) -> requests.Response:
    return _call(server, "POST", f"/v2/queues/{queue}/messages", {"messages": [{"body": body}]})


def _catalog(server: ServerProcess, queues: list[str]) -> dict[str, str]:
    """queue -> pool, as the server's management store records it."""
    uri = f"sqlite:///{server.state_dir / 'zaqar-management.sqlite'}"
    control = storage.load_control_driver("sqlite", uri)
    try:
        return {q: control.catalog.get(PROJECT, q) for q in queues}
    finally:
        control.close()


@contextlib.contextmanager
def _stores(pools: dict[str, tuple[str, int]]) -> Iterator[dict[str, base.DataDriver]]:
    """Each pool's message store, opened directly from its URI."""
    opened: dict[str, base.DataDriver] = {}
    try:
        for name, (uri, _) in pools.items():
            opened[name] = storage.load_data_driver(storage.driver_for_uri(uri), uri)
        yield opened
    finally:
        for driver in opened.values():
            driver.close()


def _holders(stores: dict[str, base.DataDriver]) -> dict[str, list[str]]:
    """queue -> the pools whose own store has a record of it."""
    held: dict[str, list[str]] = {}
    for pool, driver in stores.items():
        marker = None
        while page := driver.queues.list(PROJECT, marker=marker, limit=100):
            for info in page:
                held.setdefault(info.name, []).append(pool)
            marker = page[-1].name
    return held


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(n)]


def test_placement_follows_weights_and_messages_stay_in_their_pool(tmp_path: Path) -> None:
    with backends.redis_uri() as red_a, backends.redis_uri() as red_b, backends.sql_uri() as sql, \
            running_server(tmp_path, options=POOLED) as server:
        pools = {"red-a": (red_a, 100), "red-b": (red_b, 100), "pg": (sql, 200)}
        _add_pools(server, pools)
        queues = _names("q", 300)
        _create_queues(server, queues)
        placed = _catalog(server, queues)

        # (a) Each queue's pool is an independent weighted draw, so a pool of weight share p
        # gets Binomial(n, p) queues: mean n*p, sd sqrt(n*p*(1-p)). For n = 300 that is
        # 75 +- 7.5 for each Redis pool and 150 +- 8.7 for PostgreSQL. We allow 4 sd
        # (P(|Z| > 4) ~ 6e-5 per pool, so a correct server fails this < 2e-4 of the time),
        # i.e. PostgreSQL in [116, 184]; placement ignoring weights (100 +- 8.2 each) would
        # fall below 116 in ~97% of runs.
        total = sum(weight for _, weight in pools.values())
        for pool, (_, weight) in pools.items():
            share = weight / total
            expected, sd = len(queues) * share, math.sqrt(len(queues) * share * (1 - share))
            got = sum(1 for p in placed.values() if p == pool)
            assert abs(got - expected) <= 4 * sd, (pool, got, expected, 4 * sd)

        # (b) Each queue's record and its message exist in the pool the catalog names, nowhere else.
        for q in queues:
            assert _post(server, q, {"queue": q}).status_code == 201
        with _stores(pools) as stores:
            assert _holders(stores) == {q: [placed[q]] for q in queues}
            for q in queues:
                for pool, driver in stores.items():
                    bodies = [m.body for m in driver.messages.list(PROJECT, q, echo=True)]
                    assert bodies == ([{"queue": q}] if pool == placed[q] else []), (q, pool)

        # (c) HTTP paging by the next links walks every queue once, in name order, across pools.
        seen: list[str] = []
        path = "/v2/queues?limit=7"
        while True:
            page = _call(server, "GET", path, status=200).json()
            if not page["queues"]:
                assert page["links"] == []
                break
            assert len(page["queues"]) <= 7
            seen += [item["name"] for item in page["queues"]]
            (link,) = page["links"]
            assert link["rel"] == "next" and "limit=7" in link["href"], link
            path = link["href"]
        assert seen == sorted(queues)

        # (d) The same over the websocket, paging by marker (its replies carry no links).
        conn = websocket.create_connection(server.ws_url, timeout=30)
        try:
            seen, marker = [], None
            while True:
                body = {"limit": 9, **({"marker": marker} if marker else {})}
                conn.send(json.dumps({"action": "queue_list", "headers": H, "body": body}))
                reply = json.loads(conn.recv())
                assert reply["headers"]["status"] == 200, reply
                names = [item["name"] for item in reply["body"]["queues"]]
                if not names:
                    break
                assert len(names) <= 9
                seen, marker = seen + names, names[-1]
        finally:
            conn.close()
        assert seen == sorted(queues)


def test_a_flavored_queue_lands_only_on_the_flavor_pools(tmp_path: Path) -> None:
    with backends.redis_uri() as red_a, backends.redis_uri() as red_b, backends.sql_uri() as sql, \
            running_server(tmp_path, options=POOLED) as server:
        pools = {"red-a": (red_a, 100), "red-b": (red_b, 100), "pg": (sql, 100)}
        _add_pools(server, pools)
        _call(server, "PUT", "/v2/flavors/gold", {"pool_list": ["red-a"]}, admin=True, status=201)
        flavored, plain = _names("gold", 20), _names("plain", 20)
        _create_queues(server, flavored, {"_flavor": "gold"})
        _create_queues(server, plain)
        placed = _catalog(server, flavored + plain)
        assert {placed[q] for q in flavored} == {"red-a"}
        # Without a flavor a queue goes to the pools that belong to no flavor (registry.choose).
        assert "red-a" not in {placed[q] for q in plain}
        with _stores(pools) as stores:
            held = _holders(stores)
        assert {q: held.get(q) for q in flavored} == {q: ["red-a"] for q in flavored}


def _claim(server: ServerProcess, queue: str) -> requests.Response:
    return _call(server, "POST", f"/v2/queues/{queue}/claims?limit=1", {"ttl": 60, "grace": 60})


def _list(server: ServerProcess, queue: str) -> requests.Response:
    return _call(server, "GET", f"/v2/queues/{queue}/messages?echo=true&include_claimed=true")


# Per queue operation: the call, its success status, and its 503 description.
OPS = [(_post, 201, "Messages could not be enqueued."), (_list, 200, "Messages could not be listed."),
       (_claim, 201, "Claim could not be created.")]


def _assert_unavailable(r: requests.Response, what: str) -> None:
    assert r.status_code == 503, (r.request.method, r.url, r.text)
    assert r.json() == {"title": UNAVAILABLE, "description": f"{what} Please try again in a few seconds."}


def _until(deadline: float, send: Callable[[], requests.Response], status: int,
           what: str) -> requests.Response:
    """Call ``send`` until it answers ``status``; until then it may only answer the outage's 503."""
    while (r := send()).status_code != status:
        _assert_unavailable(r, what)
        assert time.monotonic() < deadline, f"still 503 after 20 s: {r.request.method} {r.url}"
        time.sleep(0.2)
    return r


@contextlib.contextmanager
def _proxy_to(uri: str) -> Iterator[ToggleProxy]:
    proxy = ToggleProxy(_target(uri))
    proxy.up()
    try:
        yield proxy
    finally:
        proxy.down()


def test_a_pool_outage_fails_only_its_queues_then_recovers(tmp_path: Path) -> None:
    with backends.redis_uri() as red_cut, backends.redis_uri() as red, backends.sql_uri() as sql, \
            _proxy_to(red_cut) as proxy, running_server(tmp_path, options=POOLED) as server:
        pools = {"cut": (_via(red_cut, proxy), 100), "red": (red, 100), "pg": (sql, 100)}
        _add_pools(server, pools)
        # Batches of 12 until every pool holds 3 or more (each takes 1/3 of the queues).
        queues: list[str] = []
        placed: dict[str, str] = {}
        while min(list(placed.values()).count(pool) for pool in pools) < 3:
            assert len(queues) < 120, placed
            batch = _names(f"o{len(queues)}", 12)
            _create_queues(server, batch)
            queues += batch
            placed.update(_catalog(server, batch))
        for q in queues:
            assert _post(server, q).status_code == 201
        cut = [q for q in queues if placed[q] == "cut"]
        others = [q for q in queues if placed[q] != "cut"]

        proxy.down()
        for q in cut:
            for send, _, what in OPS:
                _assert_unavailable(send(server, q), what)
        # The queue listing merges every pool's, so it cannot be answered without this one.
        _assert_unavailable(_call(server, "GET", "/v2/queues"), "Queues could not be listed.")
        for q in others:
            for send, status, _ in OPS:
                assert (r := send(server, q)).status_code == status, (q, r.text)

        # Recovered: every call for the cut pool's queues answers again within 20 s. A 503 may
        # still follow a success there: ToggleProxy.down() leaves idle pooled connections open
        # in the server's eyes (closing a socket another thread is blocked on resets nothing),
        # so each of them fails once, on its first use after the outage.
        proxy.up()
        deadline = time.monotonic() + 20
        for q in cut:
            for send, status, what in OPS:
                r = _until(deadline, lambda send=send, q=q: send(server, q), status, what)
                if send is _list:  # the message posted before the outage and the one after it
                    assert len(r.json()["messages"]) == 2, r.text
        _until(deadline, lambda: _call(server, "GET", "/v2/queues"), 200, "Queues could not be listed.")
