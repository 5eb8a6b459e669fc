"""The falcon app: one generic resource per route, serving actions from the route table."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import falcon

from zaqar import randomness
from zaqar.api import Api, ApiError, Response, signed_url, validation
from zaqar.api.api import error_response
from zaqar.transport import auth
from zaqar.transport.wsgi import decode, routes
from zaqar.transport.wsgi.console import ConsoleSettings
from zaqar.transport.wsgi.console import add_routes as add_console_routes
from zaqar.transport.wsgi.cors import CorsMiddleware, CorsSettings

LOG = logging.getLogger("zaqar.transport.wsgi")


_NOT_FOUND = "404 Not Found"
_UNAUTHORIZED = "The request you have made requires authentication."


class ActionResource:
    """Serves one URL template; the method picks the action from the route table.

    With ``token_auth`` (keystone), the project and roles of every checked route
    come from the token keystonemiddleware validated, never from client headers.
    """

    def __init__(self, api: Api, template: str, actions: Mapping[str, str], token_auth: bool = False) -> None:
        self._api = api
        self._token_auth = token_auth
        self._key = api.ctx.signed_url_key
        self._actions = {m: a for m, a in actions.items() if a in api.actions}
        self._checked = template not in routes.UNCHECKED
        self._has_queue = "{queue_name}" in template
        limits = api.ctx.limits
        self._hard_cap = limits.body_cap

    def _respond(self, req: falcon.Request, resp: falcon.Response, **path: str) -> None:
        if not all(path.values()):
            # NOTE: falcon matches an empty field ("/v2/queues/"); upstream has no such route.
            raise falcon.HTTPNotFound()
        try:
            result = self._dispatch(req, path)
        except ApiError as exc:
            result = error_response(exc)
        render(resp, result, head=req.method == "HEAD")

    def _identity(self, req: falcon.Request) -> auth.Identity | None:
        """Who the request acts for where client headers may not say it (http-v2.md §0.3 steps 1-2).

        A pre-signed request (``URL-Signature``) acts for the project it was
        signed for, with no roles, and answers 404 unless its grant verifies
        (§8.3); with keystone, any other checked request acts for its token.
        """
        signature = req.env.get("HTTP_URL_SIGNATURE")
        if signature is not None:
            project = decode.project_header(req)
            grant = signed_url.Grant(signature, req.get_header("URL-EXPIRES"),
                                     (req.get_header("URL-METHODS") or "").split(","),
                                     (req.get_header("URL-PATHS") or "").split(","), project)
            if not signed_url.verify(self._key, grant, req.method, req.path, self._api.ctx.clock()):
                raise ApiError(title=_NOT_FOUND, status=404)
            return auth.Identity(project)
        if self._token_auth and self._checked:
            identity = auth.token_identity(req.env)
            if identity is None:  # e.g. a CORS pre-flight with CORS off: no token was checked
                raise ApiError(_UNAUTHORIZED, title="Unauthorized", status=401)
            return identity
        return None

    def _dispatch(self, req: falcon.Request, path: dict[str, str]) -> Response:
        # PERF: without auth, one dict lookup; the contract verifies grants even then (§0.3).
        identity = self._identity(req) if self._token_auth or "HTTP_URL_SIGNATURE" in req.env else None
        if req.content_length and (req.content_type or "").startswith(decode.FORM):
            raise ApiError(
                "Endpoint does not accept `application/x-www-form-urlencoded` content; currently "
                "supported media type is `application/json`; specify proper client-side media type "
                'with the "Content-Type" header.',
                title="Invalid Content-Type",
                status=400,
            )
        if not req.client_accepts_json:
            raise ApiError(
                'Endpoint only serves `application/json`; specify client-side media type support with '
                'the "Accept" header.',
                title="406 Not Acceptable",
                status=406,
            )
        if self._checked:
            limits = self._api.ctx.limits
            validation.client_id(req.get_header("CLIENT-ID"), limits)
            project = validation.project_id(identity.project if identity else decode.project_header(req))
            if self._has_queue:
                validation.queue_identification(path["queue_name"], project)
        if req.method == "OPTIONS":
            return Response(200, None, {"Allow": ", ".join(sorted(self._actions) + ["OPTIONS"])})
        action = self._actions.get(req.method)
        if action is None:
            raise ApiError(title="405 Method Not Allowed", status=405,
                           headers={"Allow": ", ".join(sorted(self._actions))})
        for (base, param), variant in routes.VARIANTS.items():
            if base == action and req.get_param(param):
                action = variant
        spec = routes.SPECS.get(action, routes.DEFAULT_SPEC)
        request = decode.build(req, action, spec, path, self._hard_cap)
        if identity is not None:
            request = dataclasses.replace(request, project_id=identity.project, roles=identity.roles)
        return self._api.handle(request)

    on_get = on_head = on_put = on_post = on_patch = on_delete = on_options = _respond


def render(resp: falcon.Response, result: Response, *, head: bool = False) -> None:
    resp.status = result.status
    for name, value in result.headers.items():
        resp.set_header(name, value)
    if result.status >= 400:
        resp.vary = ("Accept",)
    if result.status in (204, 304):
        return
    if resp.get_header("Content-Type") is None:
        resp.content_type = "application/json"
    if result.body is not None and not head:
        resp.data = json.dumps(result.body, ensure_ascii=False).encode()
    elif not head:
        resp.data = b""


def request_id() -> str:
    """``req-`` and a random UUID4.

    # PERF: uuid.uuid4() and its str() cost ~5 µs (UUID validates and converts, and
    # os.urandom is a system call); formatting pooled random bytes is ~1 µs.
    """
    h = randomness.uuid4_hex()
    return f"req-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class RequestId:
    """The request id header upstream's middleware adds to every response."""

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        resp.set_header("X-OpenStack-Request-ID", request_id())


class RequestLog:
    """One DEBUG line per request, with its duration.

    # PERF: at INFO this line was ~12% of a request's CPU (record, format, write);
    # the app installs this middleware only when DEBUG is on (``[DEFAULT] debug``),
    # so with it off a request pays nothing for it.
    """

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        took = (time.perf_counter() - req.context.get("started", time.perf_counter())) * 1000
        LOG.debug("%s %s %s %.1fms", req.method, req.relative_uri, str(resp.status)[:3], took)


def _http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError, params: Any) -> None:
    """Falcon's own errors (unknown route) rendered in the same JSON shape as ours."""
    resp.status = exc.status
    resp.content_type = "application/json"
    resp.data = json.dumps(exc.to_dict()).encode()
    resp.set_header("Vary", "Accept")


def build_app(
    api: Api, *, cors: CorsSettings | None = None, console: ConsoleSettings | None = None,
    token_auth: bool = False,
) -> Any:
    """The HTTP API, a WSGI app; with ``cors`` enabled, CORS for other origins; with ``console``, the console.

    ``token_auth``: the app runs behind keystonemiddleware (``auth.KeystoneAuth.wrap``)
    and takes every caller's identity from the validated token. CORS is the
    outermost WSGI layer of what this returns; ``zaqar.bootstrap.build_wsgi_app``
    builds without it and puts it around the keystone middleware instead, so
    that the middleware's own answers (401) carry the CORS headers too.
    """
    middleware: list[Any] = [RequestId()]
    if LOG.isEnabledFor(logging.DEBUG):
        middleware.append(RequestLog())
    app = falcon.App(middleware=middleware)
    app.req_options.keep_blank_qs_values = True  # decode drops blanks itself, and so sees them
    app.req_options.auto_parse_qs_csv = False
    app.req_options.strip_url_path_trailing_slash = False
    app.resp_options.secure_cookies_by_default = False
    app.set_error_serializer(lambda req, resp, exc: _http_error(req, resp, exc, None))
    for template, actions in routes.ROUTES.items():
        if any(action in api.actions for action in actions.values()):  # e.g. /v2/health needs admin_mode
            app.add_route(template, ActionResource(api, template, actions, token_auth))
    if console is not None:
        add_console_routes(app, console)
    if cors is not None and cors.enabled:
        return CorsMiddleware(app, cors, request_id)
    return app
