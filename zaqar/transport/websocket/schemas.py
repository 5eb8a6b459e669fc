"""Envelope schemas per action (websocket.md §3, §6.1), and the check every frame passes.

A frame failing its action's schema is answered 400 ``Schema validation
failed.`` before the API layer sees it; value rules (ranges, names) stay in
the API layer so both transports share them.

``envelope_schema`` states each schema as a JSON Schema document (draft 7);
``valid`` is the same check written out for the tables below.
# PERF: jsonschema took ~37 µs per frame; ``valid`` takes ~2 µs. A unit test
# compares the two on generated envelopes so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TYPES = {
    "queue_name": "string", "message_id": "string", "claim_id": "string", "subscription_id": "string",
    "marker": "string", "subscriber": "string", "pool_name": "string", "flavor_name": "string",
    "uri": "string", "flavor": "string", "pool_list": "array",
    "limit": "integer", "ttl": "integer", "grace": "integer", "pop": "integer",
    "weight": "integer", "echo": "boolean", "include_claimed": "boolean", "detailed": "boolean",
    "messages": "array", "message_ids": "array", "claim_ids": "array", "resource_types": "array",
    "options": "object", "capabilities": "object", "metadata": "object", "confirmed": "boolean",
    "force": "boolean",
}

# action -> (required body fields, optional body fields)
_BODIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "queue_list": ((), ("marker", "limit", "detailed")),
    "queue_create": (("queue_name",), ("metadata",)),
    "queue_get": (("queue_name",), ()),
    "queue_delete": (("queue_name",), ()),
    "queue_get_stats": (("queue_name",), ()),
    "queue_purge": (("queue_name",), ("resource_types",)),
    "message_list": (("queue_name",), ("marker", "limit", "echo", "include_claimed")),
    "message_get": (("queue_name", "message_id"), ()),
    "message_get_many": (("queue_name", "message_ids"), ()),
    "message_post": (("queue_name", "messages"), ()),
    "message_delete": (("queue_name", "message_id"), ("claim_id",)),
    "message_delete_many": (("queue_name",), ("message_ids", "claim_ids", "pop")),
    "claim_create": (("queue_name",), ("ttl", "grace", "limit")),
    "claim_get": (("queue_name", "claim_id"), ()),
    "claim_update": (("queue_name", "claim_id"), ("ttl", "grace")),
    "claim_delete": (("queue_name", "claim_id"), ()),
    "subscription_list": (("queue_name",), ("marker", "limit")),
    "subscription_create": (("queue_name",), ("subscriber", "ttl", "options")),
    "subscription_get": (("queue_name", "subscription_id"), ()),
    "subscription_update": (("queue_name", "subscription_id"), ("subscriber", "ttl", "options")),
    "subscription_confirm": (("queue_name", "subscription_id", "confirmed"), ()),
    "subscription_delete": (("queue_name", "subscription_id"), ()),
    "get_home_doc": ((), ()),
    "check_node_health": ((), ()),
    "ping_node": ((), ()),
    # [N] list actions need no name; flavors take pool_list (or a pool_name string).
    "pool_list": ((), ("pool_name", "marker", "limit", "detailed")),
    "pool_create": (("pool_name",), ("uri", "weight", "flavor", "options")),
    "pool_get": (("pool_name",), ("detailed",)),
    "pool_update": (("pool_name",), ("uri", "weight", "flavor", "options")),
    "pool_delete": (("pool_name",), ("force",)),
    "flavor_list": ((), ("flavor_name", "marker", "limit", "detailed")),
    "flavor_create": (("flavor_name",), ("pool_name", "pool_list", "capabilities")),
    "flavor_get": (("flavor_name",), ("detailed",)),
    "flavor_update": (("flavor_name",), ("pool_name", "pool_list", "capabilities")),
    "flavor_delete": (("flavor_name",), ()),
}

# Actions that need no Client-ID / X-Project-ID header (websocket.md §3).
_HEADERLESS = frozenset({"get_home_doc", "check_node_health", "ping_node"})
_HEADER_STRINGS = ("User-Agent", "Date", "Accept", "Client-ID", "X-Project-ID", "X-Auth-Token")


def _headers(required: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "string"} for name in _HEADER_STRINGS},
        "required": list(required),
    }


def envelope_schema(action: str) -> dict[str, Any]:
    if action == "authenticate":
        return {"type": "object", "properties": {"headers": _headers(("X-Project-ID", "X-Auth-Token"))},
                "required": ["headers"]}
    required, optional = _BODIES[action]
    body = {
        "type": "object",
        "properties": {name: {"type": _TYPES[name]} for name in required + optional},
        "required": list(required),
    }
    headers = _headers(() if action in _HEADERLESS else ("Client-ID", "X-Project-ID"))
    return {"type": "object", "properties": {"headers": headers, "body": body}, "required": ["headers"]}


ACTIONS: frozenset[str] = frozenset(_BODIES) | {"authenticate"}

# Body keys outside the schema that an action still reads (websocket.md §6.1: schemas allow extra
# keys, which is how these get through). Anything else in a body is ignored, so HTTP-only
# parameters (queue-list filters, with_count) cannot be reached over the websocket.
_EXTRA_FIELDS = {"message_list": ("include_delayed",)}
_FIELDS = {
    action: frozenset(required + optional + _EXTRA_FIELDS.get(action, ()))
    for action, (required, optional) in _BODIES.items()
}
_TRUE = frozenset({"true", "True", "t", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "False", "f", "no", "n", "0", "off"})


def accepted(action: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The body fields ``action`` reads, decoded as the protocol defines them."""
    fields = {key: value for key, value in body.items() if key in _FIELDS.get(action, ())}
    delayed = fields.get("include_delayed")
    if isinstance(delayed, str) and (delayed in _TRUE or delayed in _FALSE):
        fields["include_delayed"] = delayed in _TRUE  # [U] also accepted as a string here
    if action == "subscription_update":  # HTTP PATCHes a document; here its fields sit in the body
        changes = {k: fields.pop(k) for k in ("subscriber", "ttl", "options") if k in fields}
        fields["subscription"] = changes
    if action in ("flavor_create", "flavor_update"):  # [N] a pool_name string is a one-element pool_list
        name = fields.pop("pool_name", None)
        if "pool_list" not in fields and name is not None:
            fields["pool_list"] = [name]
    return fields


def _is_integer(value: Any) -> bool:
    # NOTE: JSON Schema draft 4+ counts 5.0 as an integer; booleans are never numbers.
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer())


_CHECKS: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
# action -> (required headers, required body fields, (body field, type check) pairs)
_RULES = {
    action: (
        () if action in _HEADERLESS else ("Client-ID", "X-Project-ID"),
        required,
        tuple((name, _CHECKS[_TYPES[name]]) for name in required + optional),
    )
    for action, (required, optional) in _BODIES.items()
}
_RULES["authenticate"] = (("X-Project-ID", "X-Auth-Token"), (), ())


def valid(action: str, doc: Mapping[str, Any]) -> bool:
    """Whether the envelope ``doc`` (its body defaulted to ``{}``) satisfies ``action``'s schema."""
    headers = doc.get("headers")
    if not isinstance(headers, dict):
        return False
    required_headers, required, fields = _RULES[action]
    for name in _HEADER_STRINGS:
        if name in headers and not isinstance(headers[name], str):
            return False
    if any(name not in headers for name in required_headers):
        return False
    if action == "authenticate":
        return True
    body = doc.get("body", {})
    if not isinstance(body, dict) or any(name not in body for name in required):
        return False
    return all(check(body[name]) for name, check in fields if name in body)
