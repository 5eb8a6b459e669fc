"""The console page in headless Chromium against a real zaqar-server: live over the websocket,
and the same with the websocket unreachable, through the REST fallback.

Marked slow: each test starts a server process and a browser (a few seconds each).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.browser.helpers import HEADERS, PROJECT, Console, dead_port, post_over_http
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.slow


def _exercise(console: Console, server: ServerProcess, artifacts: Path, shot: str) -> None:
    """Create a queue, post from the page and from a second client, watch, claim, delete."""
    page = console.page
    console.create_queue("emails")
    post_over_http(server, "emails", "welcome", "reset-password")
    console.create_queue("orders")
    console.post('{"order": 1001, "item": "keyboard"}')
    console.bodies('{"order":1001,"item":"keyboard"}')
    post_over_http(server, "orders", {"order": 1002, "item": "mouse"}, {"order": 1003, "item": "monitor"})
    console.bodies('{"order":1001,"item":"keyboard"}', '{"order":1002,"item":"mouse"}',
                   '{"order":1003,"item":"monitor"}')
    console.counts("orders", free=3, claimed=0, total=3)
    console.counts("emails", free=2, claimed=0, total=2)

    page.fill("#claim-limit", "2")
    page.click("#claim")
    console.expect(page.locator(".claim")).to_contain_text("2 messages")
    console.expect(page.locator("#messages tbody .badge.claimed")).to_have_count(2)
    console.counts("orders", free=1, claimed=2, total=3)
    page.screenshot(path=str(artifacts / shot))

    page.click(".claim button.primary")  # delete the claimed messages
    console.bodies('{"order":1003,"item":"monitor"}')
    console.counts("orders", free=1, claimed=0, total=1)
    left = requests.get(f"{server.url}/v2/queues/orders/messages?echo=true&include_claimed=true",
                        headers=HEADERS, timeout=10).json()["messages"]
    assert [m["body"] for m in left] == [{"order": 1003, "item": "monitor"}]

    page.once("dialog", lambda dialog: dialog.accept())
    page.click('#queues tr[data-queue="emails"]')
    console.bodies('"welcome"', '"reset-password"')  # a small queue is shown whole
    page.click("#delete-queue")
    console.expect(page.locator('#queues tr[data-queue="emails"]')).to_have_count(0)
    assert requests.head(f"{server.url}/v2/queues/emails", headers=HEADERS, timeout=10).status_code == 404


def test_console_watches_a_queue_live_over_the_websocket(tmp_path, console, artifacts):
    with running_server(tmp_path / "server") as server:  # bound to 127.0.0.1: console on by default
        console.open(f"{server.url}/console/?project={PROJECT}")
        console.transport("websocket", "WebSocket")
        console.expect(console.page.locator("#transport-why")).to_have_text(f"{server.ws_url}/")
        _exercise(console, server, artifacts, "console-websocket.png")
        # NOTE: arrivals within expect's 10 s beat the 30 s safety pull: the pushes delivered them.
        console.transport("websocket", "WebSocket")
        assert console.api_calls == [], "everything went over the websocket"


def test_console_falls_back_to_rest_when_the_websocket_is_unreachable(tmp_path, console, artifacts):
    dead = f"ws://127.0.0.1:{dead_port()}/"
    options = {"console": {"websocket_url": dead, "poll_interval": "1"}}
    with running_server(tmp_path / "server", options=options) as server:
        console.open(f"{server.url}/console/?project={PROJECT}")
        console.transport("http", "HTTP fallback")
        console.expect(console.page.locator("#transport-why")).to_contain_text("websocket unreachable")
        console.expect(console.page.locator("#live")).to_have_text("● polling every 1 s")
        _exercise(console, server, artifacts, "console-fallback.png")
        console.transport("http", "HTTP fallback")
        polls = [c for c in console.api_calls if c.startswith("GET") and "/queues/orders/messages?" in c]
        assert any("marker=" in c and "echo=true" in c for c in polls), polls


PAGE = """<!doctype html><meta charset="utf-8"><title>elsewhere</title><pre id="out"></pre>
<script type="module">
  import { ZaqarClient } from '%(zaqar)s/console/client/zaqar.js';
  const out = document.getElementById('out');
  const zaqar = new ZaqarClient({ httpUrl: '%(zaqar)s', websocketUrl: '%(dead)s', projectId: '%(project)s',
                                  pollInterval: 500 });
  zaqar.addEventListener('transport', (e) => { document.body.dataset.transport = e.detail.transport; });
  const show = (m) => { out.textContent += JSON.stringify(m.body) + '\\n'; };
  await zaqar.watch('cors', show, { since: 'start' });
  const id = await zaqar.postMessage('cors', { from: 'page' });
  const { claimId, messages } = await zaqar.claimMessages('cors', { limit: 1 });
  document.body.dataset.claim = claimId && messages[0].id === id ? 'ok' : 'wrong';
</script>"""


def test_a_page_from_another_origin_uses_the_rest_fallback_through_cors(tmp_path, console, other_origin):
    origin, root = other_origin
    options = {"cors": {"allowed_origin": origin}}
    with running_server(tmp_path / "server", options=options) as server:
        (root / "index.html").write_text(PAGE % {"zaqar": server.url, "dead": f"ws://127.0.0.1:{dead_port()}/",
                                                 "project": PROJECT})
        console.open(f"{origin}/index.html")
        body = console.page.locator("body")
        console.expect(body).to_have_attribute("data-transport", "http")
        console.expect(body).to_have_attribute("data-claim", "ok")  # claim id read from the exposed Location
        post_over_http(server, "cors", "second client")
        console.expect(console.page.locator("#out")).to_have_text('{"from":"page"}\n"second client"\n')
