"""Browser pages of other origins cannot open a websocket (review 7 #16), over real sockets.

A page of any web site may point ``new WebSocket(...)`` at a loopback
zaqar; the browser then sends that page's ``Origin``. Programs send none,
or (websocket-client, under python-zaqarclient) the websocket's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from tests.functional.ws_helpers import serve, sqlite_api
from zaqar.api import Api
from zaqar.transport.websocket import WebSocketServer

HTTP_PORT = 8888  # where the console's page comes from


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with sqlite_api(tmp_path) as found:
        yield found


@pytest.fixture
def server(api: Api) -> Iterator[WebSocketServer]:
    server = serve(api, http_port=HTTP_PORT, allowed_origins=("https://dash.example.com",))
    yield server
    server.stop(grace=0.2)


def _served(server: WebSocketServer, **options: object) -> bool:
    conn = websocket.create_connection(f"ws://127.0.0.1:{server.address[1]}/", timeout=10, **options)
    try:
        conn.send(json.dumps({"action": "ping_node", "headers": {}, "body": {}}))
        return bool(json.loads(conn.recv())["headers"]["status"] == 204)
    finally:
        conn.close()


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost:3000", "null",
                                    f"http://attacker.example:{HTTP_PORT}"])
def test_a_page_of_another_origin_is_refused_with_403(server, origin):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _served(server, origin=origin)
    assert refused.value.status_code == 403
    assert _served(server)  # and everyone else is still served


@pytest.mark.parametrize("origin", [f"http://127.0.0.1:{HTTP_PORT}", f"http://localhost:{HTTP_PORT}",
                                    "https://dash.example.com"], ids=["console", "console-by-name", "listed"])
def test_the_consoles_page_and_listed_origins_are_served(server, origin):
    assert _served(server, origin=origin)


def test_programs_are_served_with_no_origin_or_the_websockets_own(server):
    assert _served(server, suppress_origin=True)
    assert _served(server)  # websocket-client sends http://127.0.0.1:<websocket port>


def test_a_wildcard_lets_any_page_in(api):
    server = serve(api, http_port=HTTP_PORT, allowed_origins=("*",))
    try:
        assert _served(server, origin="https://evil.example")
    finally:
        server.stop(grace=0.2)


def test_a_page_whose_name_was_rebound_to_this_machine_is_refused(server):
    """DNS rebinding: Origin and Host agree, both the attacker's name, now pointing at 127.0.0.1."""
    port = server.address[1]
    for origin in (f"http://rebind.attacker.example:{port}", f"http://rebind.attacker.example:{HTTP_PORT}"):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            _served(server, origin=origin, host=f"rebind.attacker.example:{port}")
        assert refused.value.status_code == 403
    assert _served(server, origin=f"http://localhost:{port}", host=f"localhost:{port}")  # loopback names pass
