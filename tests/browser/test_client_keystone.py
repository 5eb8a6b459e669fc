"""The browser client against a real zaqar-server with Keystone auth: a refused token is an
authentication error the page can act on, setToken() recovers, and expiry (close 4003) is announced.

The page lives on another origin and loads a copy of the client, as the server's own copy sits
behind the Keystone gate. Marked slow.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.keystone import FakeKeystone
from tests.server import running_server

pytestmark = pytest.mark.slow

STATIC = Path(__file__).parents[2] / "zaqar" / "static"

SCRIPT = """async ({ zaqar, ws, bad, good, brief }) => {
  const { ZaqarClient } = await import('/client/zaqar.js');
  const z = new ZaqarClient({ websocketUrl: ws, httpUrl: zaqar, projectId: 'kp', token: bad,
                              requestTimeout: 4000 });
  const events = [];
  z.addEventListener('unauthorized', (e) => events.push(e.detail.reason));
  const out = {};
  const started = Date.now();
  try {
    await z.createQueue('kq');
    out.refused = 'not refused';
  } catch (e) {
    out.refused = { status: e.status, title: e.title, description: e.description, ms: Date.now() - started };
  }
  out.afterRefusal = z.transport;
  await z.setToken(good);
  out.created = await z.createQueue('kq');
  out.afterNewToken = z.transport;
  const expired = new Promise((resolve) => z.addEventListener('unauthorized', resolve, { once: true }));
  await z.setToken(brief);
  out.withBrief = await z.queueStats('kq');
  await expired;
  out.afterExpiry = z.transport;
  try {
    await z.listQueues();
  } catch (e) {
    out.later = e.status;
  }
  out.events = events;
  z.close();
  return out;
}"""


def test_a_refused_or_expired_token_is_an_auth_error_and_set_token_recovers(tmp_path, console, other_origin):
    origin, root = other_origin
    shutil.copytree(STATIC / "client", root / "client")
    (root / "index.html").write_text("<!doctype html><title>dashboard</title>")
    with FakeKeystone() as keystone:
        options = {
            "DEFAULT": {"auth_strategy": "keystone"},
            "keystone_authtoken": keystone.options,
            "cors": {"allowed_origin": origin},
        }
        with running_server(tmp_path / "server", options=options) as server:
            console.open(f"{origin}/index.html")
            result = console.page.evaluate(SCRIPT, {
                "zaqar": server.url, "ws": f"{server.ws_url}/", "bad": "not-a-token",
                "good": keystone.issue("kp"), "brief": keystone.issue("kp", lifetime=3),
            })
    refused = result.pop("refused")
    assert refused["ms"] < 3000, "refused at once, not after retrying until the timeout"
    assert refused == {"status": 401, "title": "Unauthorized", "description": "Authentication failed.",
                       "ms": refused["ms"]}
    assert result == {
        "afterRefusal": "unauthorized",  # not an HTTP fallback
        "created": True,
        "afterNewToken": "websocket",
        "withBrief": {"claimed": 0, "free": 0, "total": 0},
        "afterExpiry": "unauthorized",  # the server closed with 4003; no reconnecting with that token
        "later": 401,
        "events": ["rejected", "expired"],
    }
    assert console.api_calls == [], "everything went over the websocket: no fallback to HTTP"
