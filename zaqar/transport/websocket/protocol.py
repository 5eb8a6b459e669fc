"""The websocket protocol without sockets: frame bytes in, reply bytes out.

``handle_frame`` decodes a frame (JSON text or MessagePack binary), checks
the envelope, builds an ``api.Request``, calls the API layer and encodes the
reply in the request's encoding. The connection class only moves bytes,
so every protocol rule is testable without a connection.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import msgpack

from zaqar.api import Api, Request, signed_url, validation, views
from zaqar.api.errors import ApiError
from zaqar.transport.auth import AuthenticationFailed, Authenticator, Identity
from zaqar.transport.websocket import presenters, schemas

LOG = logging.getLogger("zaqar.transport.websocket")

_NO_REQUEST = {"action": None, "body": {}, "headers": {}, "api": "v2"}
_AUTH_ECHO = {"action": "authenticate", "body": {}, "headers": {}, "api": "v2"}
# The header a connection's notification endpoint wants on every push (endpoint.py); a
# connection-bound subscription carries it in its ``post_headers`` option (websocket.md §9.4),
# which the API's views never show.
PUSH_TOKEN_HEADER = views.PUSH_TOKEN_HEADER


def encode(document: Any, binary: bool) -> bytes:
    if binary:
        return msgpack.packb(document, use_bin_type=True)
    return json.dumps(document, ensure_ascii=False).encode()


def _reply(request: Mapping[str, Any], status: int, body: Any) -> dict[str, Any]:
    return {"request": request, "headers": {"status": status}, "body": body}


def oversize(binary: bool, limit: int) -> bytes:
    """The answer to a message over ``limit`` bytes, skipped unread: 400, echoing no request (§7)."""
    error = {"error": f"Frame is too large. Max size: {limit} bytes."}
    return encode(_reply(_NO_REQUEST, 400, error), binary)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode(data: bytes, binary: bool) -> Any:
    """Raises ValueError with the contract's text when the frame cannot be decoded.

    A JSON frame may spell an unpaired surrogate ("\ud800"), which no UTF-8
    text holds: stored, it would break every later reply that includes it, so
    it is refused as undecodable (MessagePack's strict UTF-8 never yields one).
    """
    try:
        if binary:
            return msgpack.unpackb(data, raw=False, strict_map_key=True)
        document = json.loads(data.decode("utf-8"), parse_constant=_no_constants)
        validation.utf8_encodable(data, document)
        return document
    except Exception as exc:  # msgpack raises several unrelated types
        kind = "binary (MessagePack)" if binary else "text (JSON)"
        raise ValueError(f"Can't decode {kind} request. {type(exc).__name__}: {exc}") from exc


_INT64 = (-(2**63), 2**63 - 1)


def _json_problem(document: Any) -> str | None:
    """Why the envelope has no JSON form, if it has none.

    MessagePack can carry ``bin`` (as values and as map keys), ext types and timestamps, and either
    encoding integers beyond 64 bits or non-finite floats; none of them can be
    stored and given back to every client, so they are refused up front (as
    HTTP refuses big integers). Iterative, so deep nesting cannot exhaust
    the stack.
    """
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if not all(isinstance(key, str) for key in value):
                return "Schema validation failed."  # a ``bin`` key (JSON keys are strings)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        elif isinstance(value, int):
            if not _INT64[0] <= value <= _INT64[1]:
                return "JSON contains integer that is too large."
        elif not isinstance(value, float) or not math.isfinite(value):
            return "Schema validation failed."
    return None


def _roles(headers: Mapping[str, Any]) -> frozenset[str]:
    raw = headers.get("X-Roles")
    if not isinstance(raw, str):
        return frozenset()
    return frozenset(r.strip() for r in raw.split(",") if r.strip())


@dataclasses.dataclass(slots=True)
class Session:
    """What one connection remembers between frames: its push address and bound subscriptions.

    ``subscriber`` is the URL notifications for this connection are sent to
    (websocket.md §9.1); ``bound`` the subscriptions created through it, which
    go when it closes; ``push_binary`` the encoding of the last of those
    creations, which pushed notifications use (§9.3). With auth on,
    ``identity`` is what the last successful ``authenticate`` bound (§8.1) and
    ``auth_deadline`` the ``time.monotonic()`` at which its token expires: the
    connection is closed then (4003) and refused as unauthenticated from then on.
    ``push_token`` is what the notification endpoint wants with a push to this
    connection; its connection-bound subscriptions carry it (``PUSH_TOKEN_HEADER``).
    """

    subscriber: str | None = None
    push_token: str | None = None
    push_binary: bool = False
    bound: set[tuple[str | None, str, str]] = dataclasses.field(default_factory=set)
    identity: Identity | None = None
    auth_deadline: float | None = None

    def bind(self, identity: Identity | None) -> None:
        """Act for ``identity`` from now on (None: unauthenticated), until its token expires."""
        self.identity = identity
        expires = identity.expires if identity is not None else None
        # NOTE: tokens expire on the wall clock; the sweeper compares monotonic times.
        self.auth_deadline = None if expires is None else time.monotonic() + (expires - time.time())

    def current_identity(self) -> Identity | None:
        """The bound identity, None once its token expired (the sweeper closes the connection soon)."""
        deadline = self.auth_deadline
        if deadline is not None and time.monotonic() >= deadline:
            return None
        return self.identity


def forget(api: Api, session: Session) -> None:
    """Delete the subscriptions a closed connection created (websocket.md §9.2)."""
    for project, queue, sid in list(session.bound):
        # NOTE: the server's own cleanup: a project over its rate limit must not keep them.
        api.handle(Request("subscription_delete", project_id=project,
                           params={"queue_name": queue, "subscription_id": sid}), limited=False)
    session.bound.clear()


# Actions a pre-signed envelope may run, and the HTTP method each stands for (websocket.md §10).
_SIGNED_METHODS = {"message_list": "GET", "message_get": "GET", "message_get_many": "GET",
                   "message_post": "POST", "message_delete": "DELETE", "message_delete_many": "DELETE"}
_NOT_AUTHENTIFIED = {"error": "Not authentified."}


def _authenticate(auth: Authenticator, headers: Mapping[str, Any], session: Session) -> dict[str, Any]:
    """Validate the envelope's token and bind the connection to it (websocket.md §8.1).

    The connection is unauthenticated while this runs and stays so if it fails.
    # NOTE: validation runs on the worker answering this connection, which waits for
    # Keystone on a token's first use (keystonemiddleware caches it afterwards); the
    # connection's later frames wait behind it anyway, as replies keep request order.
    """
    session.bind(None)
    try:
        identity = auth.authenticate(headers)
    except AuthenticationFailed as exc:
        return _reply(_AUTH_ECHO, exc.status, {"error": "Authentication failed."})
    if not identity.project:
        # NOTE: an unscoped or domain-scoped token names no project: acting for "None" would put
        # every such token in one shared namespace. HTTP answers its requests 400 (Project-Id Missing).
        return _reply(_AUTH_ECHO, 400, {"error": "Authentication failed."})
    session.bind(identity)
    return _reply(_AUTH_ECHO, 200, {"message": "Authentified."})


def _presigned(api: Api, action: str, headers: Mapping[str, Any], body: Any) -> Identity | None:
    """The identity a pre-signed envelope acts for, or None when its grant does not verify (§10).

    [N] The queue must be among the granted paths too (upstream does not check it).
    """
    method = _SIGNED_METHODS.get(action)
    if method is None or "URL-Signature" not in headers or not isinstance(body, dict):
        return None
    project = headers.get("X-Project-ID")
    if not isinstance(project, str) or not project:
        return None
    grant = signed_url.Grant(headers.get("URL-Signature"), headers.get("URL-Expires"),
                             headers.get("URL-Methods"), headers.get("URL-Paths"), project)
    path = f"/v2/queues/{body.get('queue_name')}/messages"
    if not signed_url.verify(api.ctx.signed_url_key, grant, method, path, api.ctx.clock()):
        return None
    return Identity(project)


def handle_document(
    api: Api, doc: Any, session: Session | None = None, binary: bool = False,
    auth: Authenticator | None = None,
) -> dict[str, Any]:
    """The reply envelope for one decoded frame (websocket.md §5 processing order).

    ``auth`` is the auth strategy when one is configured: ``authenticate`` then
    validates the token and every other action needs the identity it bound in
    ``session`` (or a pre-signed envelope).
    """
    if not isinstance(doc, dict):
        return _reply(_NO_REQUEST, 400, {"error": "Unexpected body type. Expected dict or dict like."})
    action = doc.get("action")
    headers = doc.get("headers") if isinstance(doc.get("headers"), dict) else {}
    body = doc.get("body", {})
    echo = {"action": action, "body": body, "headers": doc.get("headers", {}), "api": "v2"}
    if not isinstance(action, str) or action not in schemas.ACTIONS:
        return _reply(echo, 400, {"error": f"{action} is not a valid action"})
    problem = _json_problem(doc)
    if problem is not None:
        return _reply(_NO_REQUEST, 400, {"error": problem})
    if not schemas.valid(action, doc):
        return _reply(echo, 400, {"error": "Schema validation failed."})
    identity = None
    if auth is not None:
        session = session if session is not None else Session()
        if action == "authenticate":
            return _authenticate(auth, headers, session)
        identity = session.current_identity() or _presigned(api, action, headers, body)
        if identity is None:
            return _reply(echo, 403, _NOT_AUTHENTIFIED)
    elif action == "authenticate":
        # NOTE: no auth strategy configured: answer at once, or python-zaqarclient hangs.
        return _reply(_AUTH_ECHO, 200, {"message": "Authentified."})
    project = identity.project if identity is not None else headers.get("X-Project-ID")
    if project is not None:
        try:
            validation.project_id(project)
        except ApiError as exc:
            return _reply(echo, exc.status, presenters.error_body(exc))
    params = schemas.accepted(action, body if body is not None else {})
    # A subscription of the connection itself (websocket.md §9.1): it carries the push token.
    binds = session if action == "subscription_create" and "subscriber" not in params else None
    request = Request(action=action, project_id=project, client_id=headers.get("Client-ID"),
                      params=params if binds is None else _with_push_token(params, binds),
                      roles=identity.roles if identity is not None else _roles(headers),
                      connection=session.subscriber if session is not None else None)
    status, reply_body = presenters.present(action, api.handle(request), params)
    if binds is not None and status == 201:
        binds.push_binary = binary
        binds.bound.add((project, params["queue_name"], reply_body["subscription_id"]))
    return _reply(echo, status, reply_body)


def _with_push_token(params: Mapping[str, Any], session: Session) -> Mapping[str, Any]:
    """A connection-bound subscription's parameters, its options carrying the push token (§9.4).

    A server that posts a message then sends the token with the push, as it
    sends any webhook's ``post_headers``. Options that are not an object are
    left for the handler to refuse.
    """
    token = session.push_token
    options = params.get("options", {})
    if token is None or not isinstance(options, dict):
        return params
    given = options.get("post_headers")
    headers = {**given, PUSH_TOKEN_HEADER: token} if isinstance(given, dict) else {PUSH_TOKEN_HEADER: token}
    return {**params, "options": {**options, "post_headers": headers}}


_AS_SENT = frozenset({"action", "headers", "body"})
_FIXMAP, _MAP16 = 0x80, 0xDE


def _echo_as_sent(data: bytes, binary: bool) -> bytes | None:
    """The encoded echo of a request whose every key the echo repeats: the frame itself plus ``api``.

    # PERF: re-encoding the request (the posted messages included) cost more than
    # the rest of the reply; the frame already holds those bytes, as sent. None
    # when the frame's encoding cannot be extended in place.
    """
    if not binary:
        raw = data.lstrip()
        return b'{"api": "v2", ' + raw[1:]  # a JSON object with at least one key: '{' then its members
    head = data[0]
    if _FIXMAP <= head < _FIXMAP + 15:
        return bytes((head + 1,)) + data[1:] + _API_V2
    if head == _MAP16 and data[1:3] != b"\xff\xff":
        count = int.from_bytes(data[1:3], "big") + 1
        return b"\xde" + count.to_bytes(2, "big") + data[3:] + _API_V2
    return None


_API_V2 = msgpack.packb("api") + msgpack.packb("v2")


def _encode_reply(reply: dict[str, Any], echo: bytes, binary: bool) -> bytes:
    if binary:
        return (b"\x83\xa7request" + echo + b"\xa7headers" + msgpack.packb(reply["headers"])
                + b"\xa4body" + msgpack.packb(reply["body"], use_bin_type=True))
    return (b'{"request": ' + echo + b', "headers": ' + json.dumps(reply["headers"]).encode()
            + b', "body": ' + json.dumps(reply["body"], ensure_ascii=False).encode() + b"}")


def handle_frame(api: Api, data: bytes, binary: bool, session: Session | None = None,
                 auth: Authenticator | None = None) -> bytes:
    """Answer one frame; the reply uses the frame's own encoding. Never raises for bad input."""
    try:
        doc = decode(data, binary)
    except ValueError as exc:
        return encode(_reply(_NO_REQUEST, 400, {"error": str(exc)}), binary)
    reply = handle_document(api, doc, session, binary, auth)
    try:
        request = reply["request"]
        echoed = request is not _NO_REQUEST and request is not _AUTH_ECHO and doc.keys() == _AS_SENT
        echo = _echo_as_sent(data, binary) if echoed else None
        if echo is not None:
            return _encode_reply(reply, echo, binary)
        return encode(reply, binary)
    except (TypeError, ValueError, OverflowError) as exc:
        # NOTE: stored data the encoding cannot carry (e.g. written by an older version).
        LOG.exception("cannot encode the reply to %s", reply["request"].get("action"))
        failed = {"exception": f"{type(exc).__name__}: {exc}", "error": "Unexpected error."}
        return encode(_reply(_NO_REQUEST, 500, failed), binary)
