"""Clients that call an operation by action name over a given transport.

Tests written against ``ActionClient.call`` run unchanged over every
transport; the HTTP client derives method, URL, query and body from the
transport's own route table, so a wrong route entry fails the tests.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any
from urllib.parse import urlencode

import falcon.testing

from zaqar.transport.wsgi import routes

CLIENT_ID = str(uuid.uuid4())
PROJECT = "test-project"


@dataclasses.dataclass
class Result:
    status: int
    body: Any
    headers: dict[str, str]


def _route_of(action: str) -> tuple[str, str, str | None]:
    """(method, template, variant query name) serving ``action``."""
    base, variant_param = action, None
    for (orig, param), variant in routes.VARIANTS.items():
        if variant == action:
            base, variant_param = orig, param
    for template, methods in routes.ROUTES.items():
        for method, name in methods.items():
            if name == base:
                return method, template, variant_param
    raise KeyError(f"no HTTP route for {action}")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


class HttpActionClient:
    transport = "http"

    def __init__(self, app: falcon.App, project: str = PROJECT, client_id: str = CLIENT_ID) -> None:
        self.http = falcon.testing.TestClient(app)
        self.headers = {"Client-ID": client_id, "X-Project-ID": project}

    def call(self, action: str, *, headers: dict[str, str] | None = None, **params: Any) -> Result:
        method, template, _ = _route_of(action)
        spec = routes.SPECS.get(action, routes.DEFAULT_SPEC)
        path = template
        for name in list(params):
            if "{" + name + "}" in path:
                path = path.replace("{" + name + "}", str(params.pop(name)))
        by_target = {target: name for name, (_, target) in spec.query.items()}
        query = {by_target[k]: _query_value(v) for k, v in params.items() if k in by_target}
        body: Any = None
        if spec.body_param is not None and spec.body_param in params:
            body = params[spec.body_param]
        elif spec.body_fields:
            fields = {k: v for k, v in params.items() if k in spec.body_fields}
            body = fields if fields or spec.body_required else None
        if "filters" in params:
            query.update({k: str(v) for k, v in params["filters"].items()})
        sent = dict(self.headers, **(headers or {}))
        content = None
        if body is not None:
            content = json.dumps(body)
            sent.setdefault("Content-Type", spec.media_type or "application/json")
        result = self.http.simulate_request(
            method, path, query_string=urlencode(query) or None, headers=sent, body=content
        )
        parsed = result.json if result.content else None
        return Result(result.status_code, parsed, dict(result.headers))
