"""Turn a falcon request into an ``api.Request``: headers, query strings and JSON body.

Only HTTP decoding lives here (string → int/bool, JSON parsing, header
presence); every rule about values belongs to the API layer.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import falcon

from zaqar.api import Request, errors, validation
from zaqar.transport.wsgi.routes import BOOL, INT, LIST, HttpSpec

_TRUE = frozenset({"true", "True", "t", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "False", "f", "no", "n", "0", "off"})
_INT = re.compile(r"^-?[0-9]+$")
_INT64 = (-(2**63), 2**63 - 1)
FORM = "application/x-www-form-urlencoded"


def _as_list(raw: str | list[str]) -> list[str]:
    values = raw if isinstance(raw, list) else [raw]
    return [item for value in values for item in value.split(",") if item]


def _last(raw: str | list[str]) -> str:
    return raw[-1] if isinstance(raw, list) else raw


def _convert(name: str, kind: str, raw: str | list[str]) -> Any:
    if kind == LIST:
        return _as_list(raw)
    value = _last(raw)
    if kind == INT:
        if not _INT.match(value):
            raise errors.BadRequest(
                f'The "{name}" parameter is invalid. The value must be an integer.', title="Invalid parameter"
            )
        return int(value)
    if kind == BOOL:
        if value in _TRUE or value in _FALSE:
            return value in _TRUE
        raise errors.BadRequest(
            f'The "{name}" parameter is invalid. The value of the parameter must be "true" or "false".',
            title="Invalid parameter",
        )
    return value


def query_params(req: falcon.Request, spec: HttpSpec) -> dict[str, Any]:
    params: dict[str, Any] = {}
    filters: dict[str, Any] = {}
    for name, raw in req.params.items():
        if raw == "" or raw == []:
            continue  # NOTE: blank values count as absent (upstream keep_blank_qs_values=False)
        if name in spec.query:
            kind, target = spec.query[name]
            params[target] = _convert(name, kind, raw)
        elif spec.filters:
            value = _last(raw)
            filters[name] = int(value) if _INT.match(value) else value
    if filters:
        params["filters"] = filters
    return params


def _reject_big_ints(value: str) -> int:
    number = int(value)
    if not _INT64[0] <= number <= _INT64[1]:
        raise errors.InvalidBody("JSON contains integer that is too large.")
    return number


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(value: str) -> float:
    # NOTE: 1e400 parses as inf, which would be stored and served back as "Infinity": not JSON.
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value} is beyond a double")
    return number


def parse_json(raw: bytes) -> Any:
    try:
        document = json.loads(raw.decode("utf-8"), parse_int=_reject_big_ints, parse_float=_finite_float,
                              parse_constant=_no_constants)
        validation.utf8_encodable(raw, document)
    except (UnicodeError, ValueError, RecursionError):
        raise errors.InvalidBody("Request body could not be parsed.") from None
    if not isinstance(document, dict | list):
        raise errors.InvalidBody("Request body could not be parsed.")
    return document


_NO_BODY = object()


def _document(req: falcon.Request, spec: HttpSpec, hard_cap: int) -> Any:
    """The decoded body, or _NO_BODY; raises the body's ApiError."""
    if spec.media_type is not None and req.content_type != spec.media_type:
        raise errors.ApiError(
            f"Accepted media type for PATCH: {{'Accept-Patch': '{spec.media_type}'}}.",
            title="415 Unsupported Media Type",
            status=415,
        )
    length = req.content_length or 0
    if length == 0:
        if spec.body_required:
            raise errors.InvalidBody("Request body can not be empty")
        return _NO_BODY
    if length > hard_cap:
        if spec.sized:
            return _NO_BODY  # the handler's own size check answers, with the contract's text
        raise errors.InvalidBody("Request body is too large.")
    try:
        return parse_json(req.bounded_stream.read())
    except errors.InvalidBody:
        if spec.unparsable is None:
            raise
        raise errors.InvalidBody(spec.unparsable) from None


def body_params(req: falcon.Request, spec: HttpSpec, hard_cap: int) -> dict[str, Any]:
    """Parameters carried by the body, per the action's spec.

    For ``sized`` actions a body error is returned under ``__body_error__``
    instead of raised: upstream checks the declared size first, and only the
    handler knows the limit (a queue may lower it).
    """
    if not spec.body_fields and spec.body_param is None:
        return {}
    try:
        document = _document(req, spec, hard_cap)
    except errors.ApiError as exc:
        if spec.sized:
            return {"__body_error__": exc}
        raise
    if document is _NO_BODY:
        return {}
    if spec.body_param is not None:
        return {spec.body_param: document}
    if not isinstance(document, dict):
        if spec.array_body_ok:
            return {}
        raise errors.InvalidBody("Document type not supported.")
    params = {k: document[k] for k in spec.body_fields if k in document}
    if spec.other_fields is not None:
        others = sorted(k for k in document if k not in spec.body_fields)
        if others:
            params[spec.other_fields] = others
    for key in spec.absent_as_none:
        params.setdefault(key, None)
    return params


def project_header(req: falcon.Request) -> str | None:
    for name in ("X-PROJECT-ID", "X-TENANT-ID", "X-TENANT"):
        value = req.get_header(name)
        if value is not None:
            return value
    return None


def roles(req: falcon.Request) -> frozenset[str]:
    raw = req.get_header("X-ROLES") or ""
    return frozenset(r.strip() for r in raw.split(",") if r.strip())


def build(
    req: falcon.Request, action: str, spec: HttpSpec, path: dict[str, str], hard_cap: int
) -> Request:
    params: dict[str, Any] = {**body_params(req, spec, hard_cap), **query_params(req, spec), **path}
    body_error = params.pop("__body_error__", None)
    return Request(
        body_error=body_error,
        action=action,
        project_id=project_header(req),
        client_id=req.get_header("CLIENT-ID"),
        params=params,
        roles=roles(req),
        content_length=req.content_length if spec.sized else None,
    )
