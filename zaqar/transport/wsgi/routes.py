"""HTTP routes as data: URL template + method → action, and how each action reads HTTP.

This table and the operation table are the centre of the HTTP transport:
adding an operation means one entry here and nothing else in this package.
"""

from __future__ import annotations

import dataclasses

# Query parameter kinds; the HTTP decoder turns strings into these.
INT, BOOL, STR, LIST = "int", "bool", "str", "list"

PATCH_MEDIA_TYPE = "application/openstack-messaging-v2.0-json-patch"


@dataclasses.dataclass(frozen=True, slots=True)
class HttpSpec:
    """How one action is read from an HTTP request.

    ``query`` maps a query name to (kind, parameter name). ``body_fields``
    are copied from a JSON-object body into the parameters; ``body_param``
    instead puts the whole document under one parameter. ``sized`` actions
    check the body size themselves (their limits are part of the contract),
    so an oversized body reaches them unread. ``other_fields`` names the
    parameter that lists body keys outside ``body_fields``, for operations
    whose schema refuses them. ``unparsable`` replaces the text for a body that
    is not JSON where the contract words it differently (pools, flavors).
    """

    query: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    body_fields: tuple[str, ...] = ()
    body_param: str | None = None
    body_required: bool = False
    array_body_ok: bool = False
    absent_as_none: tuple[str, ...] = ()
    filters: bool = False
    sized: bool = False
    media_type: str | None = None
    other_fields: str | None = None
    unparsable: str | None = None


def _q(**kinds: str) -> dict[str, tuple[str, str]]:
    return {name: (kind, name) for name, kind in kinds.items()}


_POOL_FIELDS = ("uri", "weight", "flavor", "options")
_FLAVOR_FIELDS = ("pool_list", "capabilities")
_UNPARSABLE = "JSON could not be parsed."  # upstream's pool and flavor resources (wsgi_utils.load)

SPECS: dict[str, HttpSpec] = {
    "queue_list": HttpSpec(query=_q(marker=STR, limit=INT, detailed=BOOL, name=STR, with_count=BOOL),
                           filters=True),
    "queue_create": HttpSpec(body_param="metadata", sized=True),
    "queue_update": HttpSpec(body_param="patch", sized=True, media_type=PATCH_MEDIA_TYPE),
    "queue_purge": HttpSpec(body_fields=("resource_types",), absent_as_none=("resource_types",)),
    "message_post": HttpSpec(body_fields=("messages",), body_required=True, array_body_ok=True, sized=True),
    "message_list": HttpSpec(query=_q(marker=STR, limit=INT, echo=BOOL, include_claimed=BOOL,
                                      include_delayed=BOOL)),
    "message_get_many": HttpSpec(query={"ids": (LIST, "message_ids")}),
    "message_delete_many": HttpSpec(query={"ids": (LIST, "message_ids"), "claim_ids": (LIST, "claim_ids"),
                                           "pop": (INT, "pop")}),
    "message_delete": HttpSpec(query=_q(claim_id=STR)),
    "claim_create": HttpSpec(query=_q(limit=INT), body_fields=("ttl", "grace")),
    "claim_update": HttpSpec(body_fields=("ttl", "grace"), body_required=True),
    "subscription_list": HttpSpec(query=_q(marker=STR, limit=INT)),
    "subscription_create": HttpSpec(body_fields=("subscriber", "ttl", "options")),
    "subscription_update": HttpSpec(body_param="subscription"),
    "subscription_confirm": HttpSpec(body_fields=("confirmed",)),
    "queue_share": HttpSpec(body_fields=("paths", "methods", "expires"), body_required=True,
                            other_fields="unknown_keys"),
    "pool_list": HttpSpec(query=_q(marker=STR, limit=INT, detailed=BOOL)),
    "pool_create": HttpSpec(body_fields=_POOL_FIELDS, body_required=True, other_fields="unexpected_fields",
                            unparsable=_UNPARSABLE),
    "pool_get": HttpSpec(query=_q(detailed=BOOL)),
    "pool_update": HttpSpec(body_fields=_POOL_FIELDS, body_required=True, unparsable=_UNPARSABLE),
    "pool_delete": HttpSpec(query=_q(force=BOOL)),
    "flavor_list": HttpSpec(query=_q(marker=STR, limit=INT, detailed=BOOL)),
    "flavor_create": HttpSpec(body_fields=_FLAVOR_FIELDS, body_required=True, unparsable=_UNPARSABLE),
    "flavor_update": HttpSpec(body_fields=_FLAVOR_FIELDS, body_required=True, unparsable=_UNPARSABLE),
}
DEFAULT_SPEC = HttpSpec()

# template -> {method: action}. GET on messages with ``ids`` is get-many (see VARIANTS).
ROUTES: dict[str, dict[str, str]] = {
    "/": {"GET": "get_versions"},
    "/v2": {"GET": "get_home_doc"},
    "/v2/": {"GET": "get_home_doc"},
    "/v2/ping": {"GET": "ping_node", "HEAD": "ping_node"},
    "/v2/health": {"GET": "check_node_health"},
    "/v2/queues": {"GET": "queue_list"},
    "/v2/queues/{queue_name}": {"PUT": "queue_create", "GET": "queue_get", "HEAD": "queue_exists",
                                "PATCH": "queue_update", "DELETE": "queue_delete"},
    "/v2/queues/{queue_name}/stats": {"GET": "queue_get_stats"},
    "/v2/queues/{queue_name}/purge": {"POST": "queue_purge"},
    "/v2/queues/{queue_name}/share": {"POST": "queue_share"},
    "/v2/queues/{queue_name}/messages": {"POST": "message_post", "GET": "message_list",
                                         "DELETE": "message_delete_many"},
    "/v2/queues/{queue_name}/messages/{message_id}": {"GET": "message_get", "DELETE": "message_delete"},
    "/v2/queues/{queue_name}/claims": {"POST": "claim_create"},
    "/v2/queues/{queue_name}/claims/{claim_id}": {"GET": "claim_get", "PATCH": "claim_update",
                                                  "DELETE": "claim_delete"},
    "/v2/queues/{queue_name}/subscriptions": {"GET": "subscription_list", "POST": "subscription_create"},
    "/v2/queues/{queue_name}/subscriptions/{subscription_id}": {
        "GET": "subscription_get", "PATCH": "subscription_update", "DELETE": "subscription_delete"},
    "/v2/queues/{queue_name}/subscriptions/{subscription_id}/confirm": {"PUT": "subscription_confirm"},
    # Routed only with admin_mode and pooling (the actions' feature), http-v2.md §0.10.
    "/v2/pools": {"GET": "pool_list"},
    "/v2/pools/{pool_name}": {"PUT": "pool_create", "GET": "pool_get", "PATCH": "pool_update",
                              "DELETE": "pool_delete"},
    "/v2/flavors": {"GET": "flavor_list"},
    "/v2/flavors/{flavor_name}": {"PUT": "flavor_create", "GET": "flavor_get", "PATCH": "flavor_update",
                                  "DELETE": "flavor_delete"},
}

# (action, query parameter present) -> the action actually meant.
VARIANTS: dict[tuple[str, str], str] = {("message_list", "ids"): "message_get_many"}

# Routes served without Client-ID / project checks.
UNCHECKED = frozenset({"/"})
