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
from collections.abc import Mapping
from typing import Any

import msgpack

from zaqar.api import Api, Request, validation
from zaqar.api.errors import ApiError
from zaqar.transport.websocket import presenters, schemas

LOG = logging.getLogger("zaqar.transport.websocket")

_NO_REQUEST = {"action": None, "body": {}, "headers": {}, "api": "v2"}
_AUTH_ECHO = {"action": "authenticate", "body": {}, "headers": {}, "api": "v2"}


def encode(document: Any, binary: bool) -> bytes:
    if binary:
        return msgpack.packb(document, use_bin_type=True)
    return json.dumps(document, ensure_ascii=False).encode()


def _reply(request: Mapping[str, Any], status: int, body: Any) -> dict[str, Any]:
    return {"request": request, "headers": {"status": status}, "body": body}


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode(data: bytes, binary: bool) -> Any:
    """Raises ValueError with the contract's text when the frame cannot be decoded."""
    try:
        if binary:
            return msgpack.unpackb(data, raw=False, strict_map_key=True)
        return json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except Exception as exc:  # msgpack raises several unrelated types
        kind = "binary (MessagePack)" if binary else "text (JSON)"
        raise ValueError(f"Can't decode {kind} request. {type(exc).__name__}: {exc}") from exc


_INT64 = (-(2**63), 2**63 - 1)


def _json_problem(document: Any) -> str | None:
    """Why the envelope has no JSON form, if it has none.

    MessagePack can carry ``bin``, ext types and timestamps, and either
    encoding integers beyond 64 bits or non-finite floats; none of them can be
    stored and given back to every client, so they are refused up front (as
    HTTP refuses big integers). Iterative, so deep nesting cannot exhaust
    the stack.
    """
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
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
    creations, which pushed notifications use (§9.3).
    """

    subscriber: str | None = None
    push_binary: bool = False
    bound: set[tuple[str | None, str, str]] = dataclasses.field(default_factory=set)


def forget(api: Api, session: Session) -> None:
    """Delete the subscriptions a closed connection created (websocket.md §9.2)."""
    for project, queue, sid in list(session.bound):
        api.handle(Request("subscription_delete", project_id=project,
                           params={"queue_name": queue, "subscription_id": sid}))
    session.bound.clear()


def handle_document(
    api: Api, doc: Any, session: Session | None = None, binary: bool = False
) -> dict[str, Any]:
    """The reply envelope for one decoded frame (websocket.md §5 processing order)."""
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
    if action == "authenticate":
        # NOTE: no auth strategy configured: answer at once, or python-zaqarclient hangs.
        return _reply(_AUTH_ECHO, 200, {"message": "Authentified."})
    project = headers.get("X-Project-ID")
    if project is not None:
        try:
            validation.project_id(project)
        except ApiError as exc:
            return _reply(echo, exc.status, presenters.error_body(exc))
    params = schemas.accepted(action, body if body is not None else {})
    request = Request(action=action, project_id=project, client_id=headers.get("Client-ID"),
                      params=params, roles=_roles(headers),
                      connection=session.subscriber if session is not None else None)
    status, reply_body = presenters.present(action, api.handle(request), params)
    bound = action == "subscription_create" and status == 201 and "subscriber" not in params
    if session is not None and bound:
        session.push_binary = binary
        session.bound.add((project, params["queue_name"], reply_body["subscription_id"]))
    return _reply(echo, status, reply_body)


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


def handle_frame(api: Api, data: bytes, binary: bool, session: Session | None = None) -> bytes:
    """Answer one frame; the reply uses the frame's own encoding. Never raises for bad input."""
    try:
        doc = decode(data, binary)
    except ValueError as exc:
        return encode(_reply(_NO_REQUEST, 400, {"error": str(exc)}), binary)
    reply = handle_document(api, doc, session, binary)
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
