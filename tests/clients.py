"""Clients that call an operation by action name over one transport.

Tests written against ``call`` run unchanged over HTTP, websocket JSON and
websocket MessagePack, in process or over real sockets. The HTTP client
derives method, URL, query and body from the transport's own route table,
so a wrong route entry fails the tests. The websocket client maps the
representations the contract documents as different (websocket.md §12) back
to the HTTP ones, so one expected value serves every transport; a test that
is about such a difference asserts on ``client.transport`` explicitly.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import msgpack

from zaqar.transport.wsgi import routes

CLIENT_ID = str(uuid.uuid4())
PROJECT = "test-project"
RESERVED_DEFAULTS = {
    "_default_message_ttl": 3600,
    "_max_messages_post_size": 262144,
    "_default_message_delay": 0,
    "_dead_letter_queue": None,
    "_dead_letter_queue_messages_ttl": None,
    "_max_claim_count": None,
    "_enable_encrypt_messages": False,
}


@dataclasses.dataclass
class Result:
    status: int
    body: Any
    headers: dict[str, str]


# (method, path, query string, headers, body bytes) -> (status, headers, content)
HttpSend = Callable[[str, str, str, dict[str, str], bytes | None], tuple[int, dict[str, str], bytes]]
# (frame bytes, binary) -> reply bytes
FrameSend = Callable[[bytes, bool], bytes]


def _route_of(action: str) -> tuple[str, str]:
    base = next((orig for (orig, _), v in routes.VARIANTS.items() if v == action), action)
    for template, methods in routes.ROUTES.items():
        for method, name in methods.items():
            if name == base:
                return method, template
    raise KeyError(f"no HTTP route for {action}")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


class HttpActionClient:
    transport = "http"

    def __init__(self, send: HttpSend, project: str = PROJECT, client_id: str = CLIENT_ID) -> None:
        self.send = send
        self.headers = {"Client-ID": client_id, "X-Project-ID": project}

    def call(self, action: str, *, headers: dict[str, str] | None = None, **params: Any) -> Result:
        method, path = _route_of(action)
        spec = routes.SPECS.get(action, routes.DEFAULT_SPEC)
        for name in list(params):
            if "{" + name + "}" in path:
                path = path.replace("{" + name + "}", str(params.pop(name)))
        by_target = {target: name for name, (_, target) in spec.query.items()}
        query = {by_target[k]: _query_value(v) for k, v in params.items() if k in by_target}
        query.update({k: str(v) for k, v in params.get("filters", {}).items()})
        body: Any = None
        if spec.body_param is not None and spec.body_param in params:
            body = params[spec.body_param]
        elif spec.body_fields:
            fields = {k: v for k, v in params.items() if k in spec.body_fields}
            body = fields if fields or spec.body_required else None
        sent = dict(self.headers, **(headers or {}))
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            sent.setdefault("Content-Type", spec.media_type or "application/json")
        status, got_headers, raw = self.send(method, path, urlencode(query), sent, content)
        parsed = json.loads(raw) if raw else None
        return Result(status, parsed, {k.lower(): v for k, v in got_headers.items()})


def falcon_send(app: Any) -> HttpSend:
    import falcon.testing

    client = falcon.testing.TestClient(app)

    def send(method: str, path: str, query: str, headers: dict[str, str], body: bytes | None):
        r = client.simulate_request(method, path, query_string=query or None, headers=headers, body=body)
        return r.status_code, dict(r.headers), r.content

    return send


def requests_send(base_url: str) -> HttpSend:
    import requests

    session = requests.Session()  # keep-alive, like a real client

    def send(method: str, path: str, query: str, headers: dict[str, str], body: bytes | None):
        url = base_url + path + (f"?{query}" if query else "")
        r = session.request(method, url, headers=headers, data=body, timeout=30)
        return r.status_code, dict(r.headers), r.content

    return send


class WsActionClient:
    def __init__(self, send: FrameSend, binary: bool, project: str = PROJECT,
                 client_id: str = CLIENT_ID) -> None:
        self.send, self.binary = send, binary
        self.transport = "websocket-msgpack" if binary else "websocket-json"
        self.headers = {"Client-ID": client_id, "X-Project-ID": project}

    def raw(self, document: Any) -> dict[str, Any]:
        """Send one envelope as is and return the decoded reply."""
        if self.binary:
            return msgpack.unpackb(self.send(msgpack.packb(document, use_bin_type=True), True), raw=False)
        return json.loads(self.send(json.dumps(document).encode(), False))

    def call(self, action: str, *, headers: dict[str, str] | None = None, **params: Any) -> Result:
        body = dict(params)
        if action == "subscription_update":  # the wire carries the changed fields flat in the body
            body.update(body.pop("subscription", {}))
        reply = self.raw({"action": action, "headers": dict(self.headers, **(headers or {})), "body": body})
        assert reply["request"]["action"] == action
        status, body = _canonical(action, params, reply["headers"]["status"], reply["body"])
        return Result(status, body, {})


def _message(m: dict[str, Any], queue: str) -> dict[str, Any]:
    if "claim_count" in m:  # popped messages look the same on both transports
        return m
    href = f"/v2/queues/{queue}/messages/{m['id']}" + (f"?claim_id={m['claim_id']}" if m["claim_id"] else "")
    return {"id": m["id"], "href": href, "ttl": m["ttl"], "age": m["age"], "body": m["body"]}


def _queue_get(q: str, status: int, body: Any) -> tuple[int, Any]:
    return status, {**body, **{k: v for k, v in RESERVED_DEFAULTS.items() if not body.get(k)}}


def _queue_list(q: str, status: int, body: Any) -> tuple[int, Any]:
    return status, {"queues": [{"name": x["name"], "href": f"/v2/queues/{x['name']}", **x}
                               for x in body["queues"]]}


def _stats(q: str, status: int, body: Any) -> tuple[int, Any]:
    for key in ("oldest", "newest"):
        if key in body["messages"]:
            stamp = body["messages"][key]
            stamp["href"] = f"/v2/queues/{q}/messages/{stamp.pop('id')}"
    return 200, body


def _get_many(q: str, status: int, body: Any) -> tuple[int, Any]:
    if not body["messages"]:
        return 404, None
    return status, {"messages": [_message(m, q) for m in body["messages"]]}


# Per action, how a websocket body maps back to the HTTP one (websocket.md §12).
_CANONICAL: dict[str, Callable[[str, int, Any], tuple[int, Any]]] = {
    "queue_get": _queue_get,
    "queue_list": _queue_list,
    "queue_get_stats": _stats,
    "subscription_create": lambda q, status, body: (status, {"subscription_id": body["subscription_id"]}),
    "message_post": lambda q, status, body: (
        status, {"resources": [f"/v2/queues/{q}/messages/{i}" for i in body["message_ids"]]}),
    "message_get": lambda q, status, body: (status, _message(body["messages"], q)),
    "message_get_many": _get_many,
}


def _canonical(action: str, params: dict[str, Any], status: int, body: Any) -> tuple[int, Any]:
    """The HTTP form of a websocket reply, undoing only documented presentation differences."""
    q = params.get("queue_name", "")
    if isinstance(body, dict) and ("exception" in body or set(body) == {"error"}):
        return status, {"title": None, "description": body.get("exception", body.get("error"))}
    if isinstance(body, str) or (status == 204 and body in ({}, {"claim_id": None})):
        return status, None
    if action in _CANONICAL:
        return _CANONICAL[action](q, status, body)
    if isinstance(body, dict) and isinstance(body.get("messages"), list):
        body = {**body, "messages": [_message(m, q) for m in body["messages"]]}
        body.pop("claim_id", None)
    return status, body


def assert_error(result: Result, status: int, description: str | None = None, title: str | None = None,
                 transport: str = "http") -> None:
    """Status and description on every transport; the title only where the transport has one."""
    assert result.status == status, result.body
    if description is not None:
        assert result.body["description"] == description
    if title is not None and transport == "http":
        assert result.body["title"] == title
