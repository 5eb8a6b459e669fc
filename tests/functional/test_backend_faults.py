"""A message store that goes away: clients get 503 with a title and description,
the server keeps running, and it recovers by itself when the store returns."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from tests import backends
from tests.proxy import ToggleProxy
from tests.server import running_server

pytestmark = pytest.mark.slow

H = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "faults", "Content-Type": "application/json"}


def _via(uri: str, proxy: ToggleProxy) -> str:
    parts = urlsplit(uri)
    auth = parts.netloc.rpartition("@")[0]
    netloc = (auth + "@" if auth else "") + f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _target(uri: str) -> tuple[str, int]:
    parts = urlsplit(uri)
    return parts.hostname or "127.0.0.1", parts.port or 0


def _post(url: str) -> requests.Response:
    return requests.post(f"{url}/v2/queues/q/messages", headers=H, json={"messages": [{"body": 1}]},
                         timeout=30)


STORES = {"redis": backends.redis_uri, "sqlalchemy": backends.sql_uri}


@pytest.mark.parametrize("driver", sorted(STORES))
def test_outage_is_503_then_recovers(tmp_path, driver):
    with STORES[driver]() as uri:
        proxy = ToggleProxy(_target(uri))
        proxy.up()
        options = {"drivers": {"message_store": driver},
                   f"drivers:message_store:{driver}": {"uri": _via(uri, proxy)}}
        with running_server(tmp_path, options=options) as server:
            assert _post(server.url).status_code == 201
            proxy.down()
            failed = _post(server.url)
            assert failed.status_code == 503
            assert failed.json() == {
                "title": "Service temporarily unavailable",
                "description": "Messages could not be enqueued. Please try again in a few seconds.",
            }
            assert requests.get(f"{server.url}/v2/ping", headers=H, timeout=30).status_code == 503
            proxy.up()
            deadline = time.monotonic() + 20
            while _post(server.url).status_code != 201:
                assert time.monotonic() < deadline, "the server did not recover after the store came back"
                time.sleep(0.2)
            listed = requests.get(f"{server.url}/v2/queues/q/messages?echo=true", headers=H, timeout=30)
            assert len(listed.json()["messages"]) >= 2
        proxy.down()


@pytest.mark.parametrize("driver, uri", [
    ("redis", "redis://127.0.0.1:1/0"),
    ("sqlalchemy", "postgresql://postgres@127.0.0.1:1/nowhere"),
])
def test_a_store_that_never_answers_gives_503s_not_500s(tmp_path, driver, uri):
    options = {"drivers": {"message_store": driver}, f"drivers:message_store:{driver}": {"uri": uri}}
    with running_server(tmp_path, options=options) as server:
        for method, path in (("POST", "/v2/queues/q/messages"), ("GET", "/v2/queues/q/messages"),
                             ("POST", "/v2/queues/q/claims"), ("GET", "/v2/queues"),
                             ("GET", "/v2/queues/q/stats")):
            body = {"messages": [{"body": 1}]} if path.endswith("messages") and method == "POST" else None
            r = requests.request(method, server.url + path, headers=H, json=body, timeout=30)
            assert r.status_code == 503, (method, path, r.text)
            assert set(r.json()) == {"title", "description"}
