"""The bad-input table for the HTTP transport: one row per rejected request.

Every row is a request that the contract (docs/api/limits-and-errors.md,
docs/api/http-v2.md §0.2–0.6, §3, §4, §5) says must be refused, with the
exact status, ``title`` and ``description`` it documents. The rows run
against a seeded state (see ``test_bad_input_http.py``):

* ``fizbit``: metadata ``{"color": "blue", "tags": ["a", "b"]}``, four
  messages, the first two under one live claim;
* ``capped``: ``_max_messages_post_size`` 200, one message;
* ``slow``: a delayed queue (``_default_message_delay`` 30), one message;
* ``fresh``: never created.

Paths and descriptions may carry placeholders filled in from the seed:
``<claimed>`` (a claimed message id), ``<free>`` (an unclaimed message id),
``<cid>`` (the live claim id).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

PROJECT = "test-project"
OTHER_PROJECT = "other-project"
LONG_PROJECT = "p" * 257
CLIENT_ID = "3b4c5d6e-7f80-4a1b-9c2d-3e4f5a6b7c8d"

Q, CAPPED, SLOW, FRESH = "fizbit", "capped", "slow", "fresh"
CAPPED_SIZE = 200
SLOW_DELAY = 30

PATCH_CT = "application/openstack-messaging-v2.0-json-patch"
FORM_CT = "application/x-www-form-urlencoded"

UNKNOWN_MID = "0123456789abcdef01234567"
UNKNOWN_CID = "0123456789abcdef0123456789abcdef"


class _Any:
    """Description placeholder: present, a string, text not fixed by the contract."""

    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()
ABSENT = None  # the error body must have no "description" key

Description = str | tuple[str, ...] | _Any | None


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str  # may include "?query"
    status: int
    title: str
    description: Description  # str: exact; tuple: one of; ANY; ABSENT (None)
    body: str | bytes | None = None
    headers: Mapping[str, str | None] = dataclasses.field(default_factory=dict)  # None drops a header
    allow: frozenset[str] | None = None  # 405: methods the Allow header must list (OPTIONS ignored)


CASES: list[Case] = []


def add(
    id: str,
    method: str,
    path: str,
    status: int,
    title: str,
    description: Description,
    *,
    body: Any = None,
    raw: str | bytes | None = None,
    headers: Mapping[str, str | None] | None = None,
    allow: set[str] | None = None,
) -> None:
    """Register one row; ``body`` is JSON-encoded, ``raw`` is sent as is."""
    assert not (body is not None and raw is not None)
    sent = json.dumps(body) if body is not None else raw
    CASES.append(
        Case(id, method, path, status, title, description, sent, dict(headers or {}),
             frozenset(allow) if allow is not None else None)
    )


def padded(prefix: str, suffix: str, total: int) -> str:
    """A body of exactly ``total`` bytes: prefix, filler, suffix."""
    body = prefix + "x" * (total - len(prefix) - len(suffix)) + suffix
    assert len(body.encode()) == total
    return body


# --- texts (verbatim from the contract) -------------------------------------------------------

INVALID_API = "Invalid API request"
INVALID_BODY = "Invalid request body"
BAD_QUEUE_TITLE = "Invalid queue identification"
BAD_QUEUE = "The format of the submitted queue name or project id is not valid."
MISSING_CLIENT_TITLE = "Missing header value"
MISSING_CLIENT = 'The "Client-Id" header is required.'
BAD_UUID_TITLE = "Wrong UUID value"
BAD_UUID = "Malformed hexadecimal UUID."
NO_PROJECT_TITLE = "Project-Id Missing"
NO_PROJECT = "The header X-PROJECT-ID was missing"
EMPTY_PROJECT_TITLE = "Empty project header not allowed"
EMPTY_PROJECT = "X-PROJECT-ID cannot be an empty string. Specify the right header X-PROJECT-ID and retry."
FORM_TITLE = "Invalid Content-Type"
FORM = (
    "Endpoint does not accept `application/x-www-form-urlencoded` content; currently supported media "
    'type is `application/json`; specify proper client-side media type with the "Content-Type" header.'
)
NOT_ACCEPTABLE_TITLE = "406 Not Acceptable"
NOT_ACCEPTABLE = (
    'Endpoint only serves `application/json`; specify client-side media type support with the "Accept" '
    "header."
)
NOT_ALLOWED_TITLE = "405 Method Not Allowed"
NO_ROUTE_TITLE = "404 Not Found"
UNSUPPORTED_TITLE = "415 Unsupported Media Type"
UNSUPPORTED = f"Accepted media type for PATCH: {{'Accept-Patch': '{PATCH_CT}'}}."
INVALID_PARAM_TITLE = "Invalid parameter"
NOT_FOUND_TITLE = "Not found"
CONFLICT_TITLE = "Resource conflict"
UNABLE_TO_DELETE = "Unable to delete"

PARSE = "Request body could not be parsed."
EMPTY_BODY = "Request body can not be empty"
DOCTYPE = "Document type not supported."
BIG_INT = "JSON contains integer that is too large."

MSG_TTL = "The TTL for a message may not exceed 1209600 seconds, and must be at least 60 seconds long."
MSG_DELAY = "The Delay TTL for a message may not exceed 900 seconds,and must be at least 0 seconds long."
CLAIM_TTL = "The TTL for a claim may not exceed 43200 seconds, and must be at least 60 seconds long."
CLAIM_GRACE = "The grace for a claim may not exceed 43200 seconds, and must be at least 60 seconds long."
LIMIT_MAY_NOT = "Limit must be at least 1 and may not be greater than 20."
LIMIT_NO_GREATER = "Limit must be at least 1 and no greater than 20."
POP = "Pop value must be at least 1 and may not be greater than 20."
IDS_COUNT = "ids parameter should have at least 1 and not greater than 20 values."
NEITHER = 'The request should have either "ids" or "pop" parameter in the request, to be able to delete.'
BOTH = "pop and id params cannot be present together in the delete request."
NO_MESSAGES = "No messages were found in the request body."
EMPTY_MESSAGES = "No messages to enqueu."
POST_SIZE = "Message collection size is too large. Max size 262144"
CAPPED_POST_SIZE = (
    f"Message collection size is too large. The max size for current queue is {CAPPED_SIZE}. It is "
    f"calculated by max size = min(max_messages_post_size_config: 262144, "
    f"max_messages_post_size_queue: {CAPPED_SIZE})."
)
META_SIZE = "Queue metadata is too large. Max size: 65536"
CLAIMED = "This message is claimed; it cannot be deleted without a valid claim ID."
CLAIM_GONE = "The specified claim does not exist or has expired."
NOT_CLAIMED = "A claim was specified, but the message is not currently claimed."
PURGE_KEY = 'Post body must contain key "resource_types".'
PURGE_TYPES = (
    "Resource types must be a sub set of {'messages', 'subscriptions'}.",
    "Resource types must be a sub set of {'subscriptions', 'messages'}.",
)

META_TTL_TYPE = "_default_message_ttl must be integer."
META_TTL = "_default_message_ttl can not exceed 1209600 seconds, and must be at least 60 seconds long."
META_SIZE_TYPE = "_max_messages_post_size must be integer."
META_SIZE_RANGE = "_max_messages_post_size can not exceed 262144,  and must be at least greater than 0."
META_CLAIM_COUNT_TYPE = "_max_claim_count must be integer."
META_DLQ_TTL_TYPE = "_dead_letter_queue_messages_ttl must be integer."
META_DLQ_NAME = "_dead_letter_queue may not contain NUL characters or unpaired surrogates."
META_DLQ_TTL = MSG_TTL
META_DELAY_TYPE = "_default_message_delay must be integer."
META_DELAY = "The TTL can not exceed 900 seconds, and must be at least 0 seconds long."
META_ENCRYPT_TYPE = "_enable_encrypt_messages must be boolean."

PATCH_EMPTY = "PATCH body could not be empty for update."
PATCH_NOT_OBJECT = "Operations must be JSON objects."
PATCH_NO_OP = (
    "Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace."
)
PATCH_NO_PATH = "Unable to find 'path' in JSON Schema change"
PATCH_ROOT = "The root of path must be metadata, e.g /metadata/key."


def int_field(name: str) -> str:
    return f'The value of the "{name}" field must be a int.'


def int_param(name: str) -> str:
    return f'The "{name}" parameter is invalid. The value must be an integer.'


def bool_param(name: str) -> str:
    return f'The "{name}" parameter is invalid. The value of the parameter must be "true" or "false".'


def bad_op(op: str) -> str:
    return f"Invalid operation: `{op}`. It must be one of the following: add, remove, replace."


def bad_pointer_segments(pointer: str) -> str:
    return f"Invalid JSON pointer for this resource: '{pointer}, e.g /metadata/key'"


def needs_value(op: str) -> str:
    return f'Operation "{op}" requires a member named "value".'


def msg(**fields: Any) -> dict[str, Any]:
    return {"messages": [fields]}


BIG = 2**63
QUEUE_ROUTE = f"/v2/queues/{Q}"
MESSAGES = f"/v2/queues/{Q}/messages"
CLAIMS = f"/v2/queues/{Q}/claims"
CLAIM = f"/v2/queues/{Q}/claims/<cid>"
GOOD_POST = msg(body="would be posted", ttl=300)
NO_CLIENT: dict[str, str | None] = {"Client-ID": None}
NO_HEADERS: dict[str, str | None] = {"Client-ID": None, "X-Project-ID": None}

# --- queue names and project ids (§0.2, §0.3 step 7) -----------------------------------------

_BAD_NAMES = {
    "too-long-65": "a" * 65,
    "bang": "bad!name",
    "dollar": "bad$name",
    "colon": "q:1",
    "at-sign": "q@x",
    "plus": "q+x",
    "space-pct": "bad%20name",
    "non-ascii-pct-cafe": "caf%C3%A9",
    "non-ascii-pct-snowman": "%E2%98%83",
    "tilde": "q~x",
}
for label, name in _BAD_NAMES.items():
    add(f"queue-name-{label}-get", "GET", f"/v2/queues/{name}", 400, BAD_QUEUE_TITLE, BAD_QUEUE)
add("queue-name-too-long-put", "PUT", f"/v2/queues/{'a' * 65}", 400, BAD_QUEUE_TITLE, BAD_QUEUE)
add("queue-name-non-ascii-put", "PUT", "/v2/queues/caf%C3%A9", 400, BAD_QUEUE_TITLE, BAD_QUEUE,
    body={"k": 1})
add("queue-name-too-long-post-messages", "POST", f"/v2/queues/{'a' * 65}/messages", 400,
    BAD_QUEUE_TITLE, BAD_QUEUE, body=GOOD_POST)
add("queue-name-bad-chars-post-messages", "POST", "/v2/queues/bad!name/messages", 400,
    BAD_QUEUE_TITLE, BAD_QUEUE, body=GOOD_POST)
add("queue-name-bad-chars-stats", "GET", "/v2/queues/bad!name/stats", 400, BAD_QUEUE_TITLE, BAD_QUEUE)
add("queue-name-bad-chars-claim", "POST", "/v2/queues/bad!name/claims", 400, BAD_QUEUE_TITLE, BAD_QUEUE)
add("queue-name-bad-chars-delete", "DELETE", "/v2/queues/bad!name", 400, BAD_QUEUE_TITLE, BAD_QUEUE)
add("queue-name-bad-chars-purge", "POST", "/v2/queues/bad!name/purge", 400, BAD_QUEUE_TITLE, BAD_QUEUE)
add("queue-name-bad-chars-message-get", "GET", "/v2/queues/bad!name/messages/<free>", 400,
    BAD_QUEUE_TITLE, BAD_QUEUE)

_LONG = {"X-Project-ID": LONG_PROJECT}
add("project-257-queue-get", "GET", QUEUE_ROUTE, 400, BAD_QUEUE_TITLE, BAD_QUEUE, headers=_LONG)
add("project-257-queue-put", "PUT", f"/v2/queues/{FRESH}", 400, BAD_QUEUE_TITLE, BAD_QUEUE, headers=_LONG)
add("project-257-message-post", "POST", MESSAGES, 400, BAD_QUEUE_TITLE, BAD_QUEUE, headers=_LONG,
    body=GOOD_POST)
add("project-257-claim-get", "GET", CLAIM, 400, BAD_QUEUE_TITLE, BAD_QUEUE, headers=_LONG)
add("project-257-queue-delete", "DELETE", QUEUE_ROUTE, 400, BAD_QUEUE_TITLE, BAD_QUEUE, headers=_LONG)
add("project-257-via-x-tenant-id", "GET", QUEUE_ROUTE, 400, BAD_QUEUE_TITLE, BAD_QUEUE,
    headers={"X-Project-ID": None, "X-Tenant-ID": LONG_PROJECT})

# --- Client-ID (§0.2) -----------------------------------------------------------------------------

for label, path in {"queues": "/v2/queues", "home": "/v2/", "ping": "/v2/ping", "queue": QUEUE_ROUTE,
                    "messages": MESSAGES, "claim": CLAIM, "stats": f"/v2/queues/{Q}/stats"}.items():
    add(f"client-id-missing-get-{label}", "GET", path, 400, MISSING_CLIENT_TITLE, MISSING_CLIENT,
        headers=NO_CLIENT)
add("client-id-missing-post-messages", "POST", MESSAGES, 400, MISSING_CLIENT_TITLE, MISSING_CLIENT,
    headers=NO_CLIENT, body=GOOD_POST)
add("client-id-missing-delete-queue", "DELETE", QUEUE_ROUTE, 400, MISSING_CLIENT_TITLE, MISSING_CLIENT,
    headers=NO_CLIENT)
add("client-id-missing-purge", "POST", f"/v2/queues/{Q}/purge", 400, MISSING_CLIENT_TITLE, MISSING_CLIENT,
    headers=NO_CLIENT)
add("client-id-missing-claim-create", "POST", CLAIMS, 400, MISSING_CLIENT_TITLE, MISSING_CLIENT,
    headers=NO_CLIENT)
add("client-id-missing-pop", "DELETE", f"{MESSAGES}?pop=1", 400, MISSING_CLIENT_TITLE, MISSING_CLIENT,
    headers=NO_CLIENT)
add("client-id-missing-before-project", "GET", "/v2/queues", 400, MISSING_CLIENT_TITLE, MISSING_CLIENT,
    headers=NO_HEADERS)
add("client-id-missing-before-queue-name", "GET", "/v2/queues/bad!name", 400, MISSING_CLIENT_TITLE,
    MISSING_CLIENT, headers=NO_CLIENT)

_BAD_CLIENT_IDS = {
    "word": "not-a-uuid",
    "digits": "12345",
    "31-hex": "0123456789abcdef0123456789abcde",
    "33-hex": "0123456789abcdef0123456789abcdef0",
    "non-hex": "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
    "uuid-short": "3b4c5d6e-7f80-4a1b-9c2d-3e4f5a6b7c8",
    "uuid-with-suffix": CLIENT_ID + "-x",
}
for label, value in _BAD_CLIENT_IDS.items():
    add(f"client-id-malformed-{label}", "GET", "/v2/queues", 400, BAD_UUID_TITLE, BAD_UUID,
        headers={"Client-ID": value})
add("client-id-malformed-post-messages", "POST", MESSAGES, 400, BAD_UUID_TITLE, BAD_UUID,
    headers={"Client-ID": "not-a-uuid"}, body=GOOD_POST)
add("client-id-malformed-delete-queue", "DELETE", QUEUE_ROUTE, 400, BAD_UUID_TITLE, BAD_UUID,
    headers={"Client-ID": "not-a-uuid"})
add("client-id-malformed-before-project", "GET", "/v2/queues", 400, BAD_UUID_TITLE, BAD_UUID,
    headers={"Client-ID": "not-a-uuid", "X-Project-ID": None})

# --- project header (§0.2) ------------------------------------------------------------------------

_NO_PROJECT = {"X-Project-ID": None}
_EMPTY_PROJECT = {"X-Project-ID": ""}
add("project-missing-queues", "GET", "/v2/queues", 400, NO_PROJECT_TITLE, NO_PROJECT, headers=_NO_PROJECT)
add("project-missing-ping", "GET", "/v2/ping", 400, NO_PROJECT_TITLE, NO_PROJECT, headers=_NO_PROJECT)
add("project-missing-queue-delete", "DELETE", QUEUE_ROUTE, 400, NO_PROJECT_TITLE, NO_PROJECT,
    headers=_NO_PROJECT)
add("project-missing-message-post", "POST", MESSAGES, 400, NO_PROJECT_TITLE, NO_PROJECT,
    headers=_NO_PROJECT, body=GOOD_POST)
add("project-missing-before-queue-name", "GET", f"/v2/queues/{'a' * 65}", 400, NO_PROJECT_TITLE,
    NO_PROJECT, headers=_NO_PROJECT)
add("project-empty-queues", "GET", "/v2/queues", 400, EMPTY_PROJECT_TITLE, EMPTY_PROJECT,
    headers=_EMPTY_PROJECT)
add("project-empty-message-post", "POST", MESSAGES, 400, EMPTY_PROJECT_TITLE, EMPTY_PROJECT,
    headers=_EMPTY_PROJECT, body=GOOD_POST)
add("project-empty-queue-delete", "DELETE", QUEUE_ROUTE, 400, EMPTY_PROJECT_TITLE, EMPTY_PROJECT,
    headers=_EMPTY_PROJECT)
add("project-empty-x-tenant-id", "GET", "/v2/queues", 400, EMPTY_PROJECT_TITLE, EMPTY_PROJECT,
    headers={"X-Project-ID": None, "X-Tenant-ID": ""})
add("project-empty-x-tenant", "GET", "/v2/queues", 400, EMPTY_PROJECT_TITLE, EMPTY_PROJECT,
    headers={"X-Project-ID": None, "X-Tenant": ""})

# --- text no store can hold (review 8 #5; [N]) -------------------------------------------------------
# NUL, which PostgreSQL's text refuses: the same 400 from the API's validation on every store, never
# a 503. (A real HTTP server refuses a NUL in a header before the app; falcon's test client does not.)


def unstorable_param(name: str) -> str:
    return f'The "{name}" parameter is invalid. The value may not contain NUL characters or unpaired ' \
           "surrogates."


_NUL_PROJECT = {"X-Project-ID": "a\x00"}
add("nul-project-queue-list", "GET", "/v2/queues", 400, BAD_QUEUE_TITLE, BAD_QUEUE, headers=_NUL_PROJECT)
add("nul-project-queue-put", "PUT", f"/v2/queues/{FRESH}", 400, BAD_QUEUE_TITLE, BAD_QUEUE,
    headers=_NUL_PROJECT)
add("nul-project-message-post", "POST", MESSAGES, 400, BAD_QUEUE_TITLE, BAD_QUEUE, headers=_NUL_PROJECT,
    body=GOOD_POST)
add("nul-project-via-x-tenant-id", "GET", "/v2/queues", 400, BAD_QUEUE_TITLE, BAD_QUEUE,
    headers={"X-Project-ID": None, "X-Tenant-ID": "\x00"})
add("nul-marker-queue-list", "GET", "/v2/queues?marker=%00", 400, INVALID_API, unstorable_param("marker"))
add("nul-name-queue-list", "GET", "/v2/queues?name=a%00", 400, INVALID_API, unstorable_param("name"))
add("nul-marker-message-list", "GET", f"{MESSAGES}?marker=a%00b", 400, INVALID_API,
    unstorable_param("marker"))
add("nul-marker-subscription-list", "GET", f"/v2/queues/{Q}/subscriptions?marker=%00", 400, INVALID_API,
    unstorable_param("marker"))
# ids are no free text: an impossible one is an unknown one (§0.8), a NUL one too
add("nul-message-id-get", "GET", f"{MESSAGES}/a%00", 404, NOT_FOUND_TITLE,
    f"Message a\x00 does not exist in queue {Q} for project {PROJECT}")
add("nul-claim-id-message-delete", "DELETE", f"{MESSAGES}/<free>?claim_id=%00", 400, UNABLE_TO_DELETE,
    CLAIM_GONE)

# --- form bodies and Accept (§0.2, §0.3 steps 3-4) ----------------------------------------------

_FORM = {"Content-Type": FORM_CT}
add("form-body-message-post", "POST", MESSAGES, 400, FORM_TITLE, FORM, raw="messages=x", headers=_FORM)
add("form-body-queue-put", "PUT", f"/v2/queues/{FRESH}", 400, FORM_TITLE, FORM, raw="a=b", headers=_FORM)
add("form-body-claim-create", "POST", CLAIMS, 400, FORM_TITLE, FORM, raw="ttl=100", headers=_FORM)
add("form-body-claim-update", "PATCH", CLAIM, 400, FORM_TITLE, FORM, raw="ttl=100", headers=_FORM)
add("form-body-purge", "POST", f"/v2/queues/{Q}/purge", 400, FORM_TITLE, FORM,
    raw="resource_types=messages", headers=_FORM)
add("form-body-before-accept-and-client-id", "POST", MESSAGES, 400, FORM_TITLE, FORM, raw="a=b",
    headers={**_FORM, **NO_HEADERS, "Accept": "application/xml"})
add("form-body-before-queue-name", "POST", "/v2/queues/bad!name/messages", 400, FORM_TITLE, FORM,
    raw="a=b", headers=_FORM)

_XML = {"Accept": "application/xml"}
add("accept-xml-queues", "GET", "/v2/queues", 406, NOT_ACCEPTABLE_TITLE, NOT_ACCEPTABLE, headers=_XML)
add("accept-xml-messages", "GET", MESSAGES, 406, NOT_ACCEPTABLE_TITLE, NOT_ACCEPTABLE, headers=_XML)
add("accept-xml-queue-delete", "DELETE", QUEUE_ROUTE, 406, NOT_ACCEPTABLE_TITLE, NOT_ACCEPTABLE,
    headers=_XML)
add("accept-text-html-message-post", "POST", MESSAGES, 406, NOT_ACCEPTABLE_TITLE, NOT_ACCEPTABLE,
    headers={"Accept": "text/html"}, body=GOOD_POST)
add("accept-text-plain-purge", "POST", f"/v2/queues/{Q}/purge", 406, NOT_ACCEPTABLE_TITLE, NOT_ACCEPTABLE,
    headers={"Accept": "text/plain"})
add("accept-xml-before-client-id", "GET", "/v2/queues", 406, NOT_ACCEPTABLE_TITLE, NOT_ACCEPTABLE,
    headers={**_XML, **NO_HEADERS})

# --- methods and routes (§0.1, §0.3 step 9) ------------------------------------------------------

add("method-post-queues-405", "POST", "/v2/queues", 405, NOT_ALLOWED_TITLE, ABSENT, allow={"GET"})
add("method-post-queues-no-client-id-400", "POST", "/v2/queues", 400, MISSING_CLIENT_TITLE, MISSING_CLIENT,
    headers=NO_CLIENT)
add("method-post-queues-no-project-400", "POST", "/v2/queues", 400, NO_PROJECT_TITLE, NO_PROJECT,
    headers=_NO_PROJECT)
add("method-put-messages-405", "PUT", MESSAGES, 405, NOT_ALLOWED_TITLE, ABSENT, body=GOOD_POST,
    allow={"GET", "POST", "DELETE"})
add("method-post-stats-405", "POST", f"/v2/queues/{Q}/stats", 405, NOT_ALLOWED_TITLE, ABSENT, allow={"GET"})
add("method-get-purge-405", "GET", f"/v2/queues/{Q}/purge", 405, NOT_ALLOWED_TITLE, ABSENT, allow={"POST"})
add("method-delete-claims-405", "DELETE", CLAIMS, 405, NOT_ALLOWED_TITLE, ABSENT, allow={"POST"})
add("method-put-claim-405", "PUT", CLAIM, 405, NOT_ALLOWED_TITLE, ABSENT, body={"ttl": 100},
    allow={"GET", "PATCH", "DELETE"})
add("method-patch-message-405", "PATCH", f"{MESSAGES}/<free>", 405, NOT_ALLOWED_TITLE, ABSENT,
    body=[], allow={"GET", "DELETE"})
add("method-post-queue-405", "POST", QUEUE_ROUTE, 405, NOT_ALLOWED_TITLE, ABSENT,
    allow={"GET", "HEAD", "PUT", "PATCH", "DELETE"})
add("method-delete-ping-405", "DELETE", "/v2/ping", 405, NOT_ALLOWED_TITLE, ABSENT, allow={"GET", "HEAD"})
add("method-delete-stats-no-client-id-400", "DELETE", f"/v2/queues/{Q}/stats", 400, MISSING_CLIENT_TITLE,
    MISSING_CLIENT, headers=NO_CLIENT)
add("method-post-stats-bad-queue-name-400", "POST", "/v2/queues/bad!name/stats", 400, BAD_QUEUE_TITLE,
    BAD_QUEUE)

_NO_ROUTES = {
    "unknown": "/v2/nope",
    "queues-trailing-slash": "/v2/queues/",
    "v3": "/v3/queues",
    "v1": "/v1/queues",
    "message-extra-segment": f"{MESSAGES}/<free>/x",
    "claims-trailing-slash": f"{CLAIMS}/",
    "queue-unknown-child": f"{QUEUE_ROUTE}/nope",
}
for label, path in _NO_ROUTES.items():
    add(f"route-{label}-404", "GET", path, 404, NO_ROUTE_TITLE, ABSENT, headers=NO_HEADERS)
add("route-unknown-delete-404", "DELETE", f"{QUEUE_ROUTE}/", 404, NO_ROUTE_TITLE, ABSENT, headers=NO_HEADERS)
add("route-unknown-with-bad-client-id-404", "GET", "/v2/nope", 404, NO_ROUTE_TITLE, ABSENT,
    headers={"Client-ID": "junk"})

# --- query parameters (§0.5) --------------------------------------------------------------------

for value in ("0", "21", "-1", "1000"):
    add(f"queue-list-limit-{value}", "GET", f"/v2/queues?limit={value}", 400, INVALID_API,
        LIMIT_NO_GREATER)
    add(f"message-list-limit-{value}", "GET", f"{MESSAGES}?limit={value}", 400, INVALID_API,
        LIMIT_MAY_NOT)
for value in ("1.5", "abc", "0x10", "1e3", "+"):
    add(f"queue-list-limit-not-int-{value}", "GET", f"/v2/queues?limit={value}", 400, INVALID_PARAM_TITLE,
        int_param("limit"))
    add(f"message-list-limit-not-int-{value}", "GET", f"{MESSAGES}?limit={value}", 400,
        INVALID_PARAM_TITLE, int_param("limit"))
for param, value in (("echo", "junk"), ("echo", "TRUE"), ("echo", "2"), ("include_claimed", "yesplease"),
                     ("include_delayed", "False!")):
    add(f"message-list-{param}-{value}", "GET", f"{MESSAGES}?{param}={value}", 400, INVALID_PARAM_TITLE,
        bool_param(param))
for param, value in (("detailed", "junk"), ("with_count", "TRUE")):
    add(f"queue-list-{param}-{value}", "GET", f"/v2/queues?{param}={value}", 400, INVALID_PARAM_TITLE,
        bool_param(param))

# --- get-by-ids (§4.4) --------------------------------------------------------------------------

_IDS_21 = [f"{i:024x}" for i in range(21)]
add("get-by-ids-21-comma", "GET", f"{MESSAGES}?ids={','.join(_IDS_21)}", 400, INVALID_API, LIMIT_MAY_NOT)
add("get-by-ids-21-repeated", "GET", f"{MESSAGES}?" + "&".join(f"ids={i}" for i in _IDS_21), 400,
    INVALID_API, LIMIT_MAY_NOT)
add("get-by-ids-21-mixed-with-real", "GET", f"{MESSAGES}?ids=<free>,{','.join(_IDS_21[:20])}", 400,
    INVALID_API, LIMIT_MAY_NOT)
add("get-by-ids-none-found", "GET", f"{MESSAGES}?ids=aaa,bbb", 404, NOT_FOUND_TITLE,
    f"No messages with IDs: ['aaa', 'bbb'] found in the queue {Q} for project {PROJECT}.")
add("get-by-ids-other-queue", "GET", f"/v2/queues/{CAPPED}/messages?ids=<free>", 404, NOT_FOUND_TITLE,
    f"No messages with IDs: ['<free>'] found in the queue {CAPPED} for project {PROJECT}.")

# --- bulk delete and pop (§4.5, §4.6) ------------------------------------------------------------

add("bulk-delete-neither-ids-nor-pop", "DELETE", MESSAGES, 400, INVALID_API, NEITHER)
add("bulk-delete-blank-ids", "DELETE", f"{MESSAGES}?ids=", 400, INVALID_API, NEITHER)
add("bulk-delete-blank-pop", "DELETE", f"{MESSAGES}?pop=", 400, INVALID_API, NEITHER)
add("bulk-delete-only-claim-ids", "DELETE", f"{MESSAGES}?claim_ids=<cid>", 400, INVALID_API, NEITHER)
add("bulk-delete-ids-and-pop", "DELETE", f"{MESSAGES}?ids=<free>&pop=1", 400, INVALID_API, BOTH)
add("bulk-delete-claimed-ids-and-pop", "DELETE", f"{MESSAGES}?ids=<claimed>&pop=5", 400, INVALID_API, BOTH)
add("bulk-delete-21-ids", "DELETE", f"{MESSAGES}?ids=<free>,<claimed>,{','.join(_IDS_21[:19])}", 400,
    INVALID_API, IDS_COUNT)
add("bulk-delete-21-ids-repeated", "DELETE", f"{MESSAGES}?ids=<free>&" + "&".join(
    f"ids={i}" for i in _IDS_21[:20]), 400, INVALID_API, IDS_COUNT)
for value in ("0", "-1", "21", "1000000"):
    add(f"pop-{value}", "DELETE", f"{MESSAGES}?pop={value}", 400, INVALID_API, POP)
for value in ("abc", "1.5"):
    add(f"pop-not-int-{value}", "DELETE", f"{MESSAGES}?pop={value}", 400, INVALID_PARAM_TITLE,
        int_param("pop"))

# --- message post (§4.2, §0.6) ------------------------------------------------------------------

for label, raw in {"open-brace": "{", "dot": ".", "whitespace": "  ", "trailing-comma": '{"messages": [],}',
                   "string": '"fail"', "number": "123", "null": "null", "true": "true",
                   "single-quotes": "{'messages': []}"}.items():
    add(f"message-post-body-{label}", "POST", MESSAGES, 400, INVALID_BODY, PARSE, raw=raw)
add("message-post-body-invalid-utf8", "POST", MESSAGES, 400, INVALID_BODY, PARSE,
    raw=b'{"messages": [{"body": "\xff\xfe"}]}')
for label, raw in {"lone-high-surrogate": '{"messages": [{"body": "\\ud800", "ttl": 300}]}',
                   "lone-low-surrogate-key": '{"messages": [{"body": {"\\udc00": 1}, "ttl": 300}]}'}.items():
    # stored, it could never be encoded again: every later listing of the queue would fail
    add(f"message-post-body-{label}", "POST", MESSAGES, 400, INVALID_BODY, PARSE, raw=raw)
add("message-post-body-deeply-nested", "POST", MESSAGES, 400, INVALID_BODY, PARSE,
    raw='{"messages": [{"body": ' + "[" * 100_000 + "]" * 100_000 + "}]}")
add("message-post-body-empty", "POST", MESSAGES, 400, INVALID_BODY, EMPTY_BODY, raw="")
add("message-post-no-body", "POST", MESSAGES, 400, INVALID_BODY, EMPTY_BODY)
add("message-post-ttl-2**63", "POST", MESSAGES, 400, INVALID_BODY, BIG_INT, body=msg(body=1, ttl=BIG))
add("message-post-ttl--2**63-1", "POST", MESSAGES, 400, INVALID_BODY, BIG_INT,
    body=msg(body=1, ttl=-BIG - 1))
add("message-post-body-big-int", "POST", MESSAGES, 400, INVALID_BODY, BIG_INT, body=msg(body=10**30))
add("message-post-ttl-2**63-1-range", "POST", MESSAGES, 400, INVALID_API, MSG_TTL,
    body=msg(body=1, ttl=BIG - 1))
add("message-post-top-level-array", "POST", MESSAGES, 400, INVALID_API, NO_MESSAGES, body=[{"body": 1}])
add("message-post-top-level-empty-array", "POST", MESSAGES, 400, INVALID_API, NO_MESSAGES, body=[])
add("message-post-no-messages-key", "POST", MESSAGES, 400, INVALID_API, NO_MESSAGES, body={})
add("message-post-misspelled-messages-key", "POST", MESSAGES, 400, INVALID_API, NO_MESSAGES,
    body={"message": [{"body": 1}]})
for label, value in {"object": {"body": 1}, "string": "x", "number": 5, "null": None, "true": True}.items():
    add(f"message-post-messages-not-list-{label}", "POST", MESSAGES, 400, INVALID_BODY, DOCTYPE,
        body={"messages": value} if value is not None else None,
        raw='{"messages": null}' if value is None else None)
add("message-post-messages-empty", "POST", MESSAGES, 400, INVALID_API, EMPTY_MESSAGES, body={"messages": []})
for label, value in {"number": 1, "string": "x", "null": None, "array": [], "bool": False}.items():
    add(f"message-post-element-not-object-{label}", "POST", MESSAGES, 400, INVALID_BODY, DOCTYPE,
        raw=json.dumps({"messages": [value]}))
add("message-post-element-not-object-after-good", "POST", MESSAGES, 400, INVALID_BODY, DOCTYPE,
    raw=json.dumps({"messages": [{"body": 1}, 7]}))
add("message-post-missing-body", "POST", MESSAGES, 400, INVALID_BODY, 'Missing "body" field.',
    body=msg(ttl=100))
add("message-post-empty-element", "POST", MESSAGES, 400, INVALID_BODY, 'Missing "body" field.',
    body={"messages": [{}]})
add("message-post-second-missing-body", "POST", MESSAGES, 400, INVALID_BODY, 'Missing "body" field.',
    body={"messages": [{"body": "ok", "ttl": 300}, {"ttl": 300}]})
for value in (0, 59, -1, 1209601, True, False):
    add(f"message-post-ttl-{json.dumps(value)}", "POST", MESSAGES, 400, INVALID_API, MSG_TTL,
        body=msg(body=1, ttl=value))
add("message-post-second-ttl-59", "POST", MESSAGES, 400, INVALID_API, MSG_TTL,
    body={"messages": [{"body": "ok", "ttl": 300}, {"body": "bad", "ttl": 59}]})
for label, value in {"string": "100", "null": None, "float": 100.5, "float-integral": 60.0,
                     "list": [100], "object": {"v": 100}}.items():
    add(f"message-post-ttl-not-int-{label}", "POST", MESSAGES, 400, INVALID_BODY, int_field("ttl"),
        raw=json.dumps(msg(body=1, ttl=value)))
_SLOW_MESSAGES = f"/v2/queues/{SLOW}/messages"
for value in (901, -1, 100000):
    add(f"message-post-delay-{value}-delayed-queue", "POST", _SLOW_MESSAGES, 400, INVALID_API, MSG_DELAY,
        body=msg(body=1, ttl=300, delay=value))
for label, value in {"string": "10", "null": None, "float": 1.5}.items():
    add(f"message-post-delay-not-int-{label}-delayed-queue", "POST", _SLOW_MESSAGES, 400, INVALID_BODY,
        int_field("delay"), raw=json.dumps(msg(body=1, ttl=300, delay=value)))
add("message-post-ttl-checked-before-delay", "POST", _SLOW_MESSAGES, 400, INVALID_API, MSG_TTL,
    body=msg(body=1, ttl=10, delay=901))

_BIG_POST = padded('{"messages": [{"body": "', '"}]}', 262_145)
add("message-post-262145-bytes", "POST", MESSAGES, 400, INVALID_API, POST_SIZE, raw=_BIG_POST)
add("message-post-oversized-garbage-size-first", "POST", MESSAGES, 400, INVALID_API, POST_SIZE,
    raw="{" + "x" * 262_144)
add("message-post-oversized-bad-client-id-first", "POST", MESSAGES, 400, BAD_UUID_TITLE, BAD_UUID,
    raw=_BIG_POST, headers={"Client-ID": "junk"})
_CAPPED_MESSAGES = f"/v2/queues/{CAPPED}/messages"
add("message-post-over-queue-cap", "POST", _CAPPED_MESSAGES, 400, INVALID_API, CAPPED_POST_SIZE,
    raw=padded('{"messages": [{"body": "', '"}]}', CAPPED_SIZE + 1))
add("message-post-over-queue-cap-garbage", "POST", _CAPPED_MESSAGES, 400, INVALID_API, CAPPED_POST_SIZE,
    raw="[" * (CAPPED_SIZE + 1))
add("message-post-over-global-cap-on-capped-queue", "POST", _CAPPED_MESSAGES, 400, INVALID_API,
    CAPPED_POST_SIZE, raw=_BIG_POST)

# --- single message get / delete (§4.7, §4.8) ---------------------------------------------------

add("message-get-unknown-id", "GET", f"{MESSAGES}/{UNKNOWN_MID}", 404, NOT_FOUND_TITLE,
    f"Message {UNKNOWN_MID} does not exist in queue {Q} for project {PROJECT}")
add("message-get-malformed-id", "GET", f"{MESSAGES}/not-an-id", 404, NOT_FOUND_TITLE,
    f"Message not-an-id does not exist in queue {Q} for project {PROJECT}")
add("message-get-other-queue", "GET", f"/v2/queues/{CAPPED}/messages/<free>", 404, NOT_FOUND_TITLE,
    f"Message <free> does not exist in queue {CAPPED} for project {PROJECT}")
add("message-get-other-project", "GET", f"{MESSAGES}/<free>", 404, NOT_FOUND_TITLE,
    f"Message <free> does not exist in queue {Q} for project {OTHER_PROJECT}",
    headers={"X-Project-ID": OTHER_PROJECT})
add("message-delete-claimed-without-claim-id", "DELETE", f"{MESSAGES}/<claimed>", 403, UNABLE_TO_DELETE,
    CLAIMED)
add("message-delete-claimed-malformed-claim-id", "DELETE", f"{MESSAGES}/<claimed>?claim_id=not-a-claim",
    400, UNABLE_TO_DELETE, CLAIM_GONE)
add("message-delete-free-malformed-claim-id", "DELETE", f"{MESSAGES}/<free>?claim_id=not-a-claim", 400,
    UNABLE_TO_DELETE, CLAIM_GONE)
add("message-delete-claimed-unknown-claim-id", "DELETE", f"{MESSAGES}/<claimed>?claim_id={UNKNOWN_CID}",
    400, UNABLE_TO_DELETE, CLAIM_GONE)
add("message-delete-free-with-live-claim-id", "DELETE", f"{MESSAGES}/<free>?claim_id=<cid>", 400,
    UNABLE_TO_DELETE, NOT_CLAIMED)
add("message-delete-free-unknown-claim-id", "DELETE", f"{MESSAGES}/<free>?claim_id={UNKNOWN_CID}", 400,
    UNABLE_TO_DELETE, NOT_CLAIMED)

# --- claims (§5.1–5.3) ----------------------------------------------------------------------------

for value in (0, 59, -1, 43201, True):
    add(f"claim-create-ttl-{json.dumps(value)}", "POST", CLAIMS, 400, INVALID_API, CLAIM_TTL,
        body={"ttl": value})
for value in (0, 59, 43201, False):
    add(f"claim-create-grace-{json.dumps(value)}", "POST", CLAIMS, 400, INVALID_API, CLAIM_GRACE,
        body={"ttl": 60, "grace": value})
for field in ("ttl", "grace"):
    for label, value in {"null": None, "string": "60", "float": 60.5, "list": [60]}.items():
        add(f"claim-create-{field}-not-int-{label}", "POST", CLAIMS, 400, INVALID_BODY, int_field(field),
            raw=json.dumps({field: value}))
for value in ("0", "21", "-1"):
    add(f"claim-create-limit-{value}", "POST", f"{CLAIMS}?limit={value}", 400, INVALID_API, LIMIT_MAY_NOT,
        body={"ttl": 60})
    add(f"claim-create-limit-{value}-no-body", "POST", f"{CLAIMS}?limit={value}", 400, INVALID_API,
        LIMIT_MAY_NOT)
for value in ("abc", "1.5"):
    add(f"claim-create-limit-not-int-{value}", "POST", f"{CLAIMS}?limit={value}", 400, INVALID_PARAM_TITLE,
        int_param("limit"))
add("claim-create-ttl-before-limit-and-grace", "POST", f"{CLAIMS}?limit=0", 400, INVALID_API, CLAIM_TTL,
    body={"ttl": 10, "grace": 10})
add("claim-create-limit-before-grace", "POST", f"{CLAIMS}?limit=0", 400, INVALID_API, LIMIT_MAY_NOT,
    body={"ttl": 60, "grace": 10})
for label, raw in {"open-bracket": "[", "dot": ".", "string": '"fail"', "open-brace": "{",
                   "number": "42"}.items():
    add(f"claim-create-body-{label}", "POST", CLAIMS, 400, INVALID_BODY, PARSE, raw=raw)
add("claim-create-body-array", "POST", CLAIMS, 400, INVALID_BODY, DOCTYPE, body=[])
add("claim-create-body-array-of-object", "POST", CLAIMS, 400, INVALID_BODY, DOCTYPE, body=[{"ttl": 60}])
add("claim-create-ttl-big-int", "POST", CLAIMS, 400, INVALID_BODY, BIG_INT, body={"ttl": BIG})

add("claim-get-unknown-id", "GET", f"{CLAIMS}/{UNKNOWN_CID}", 404, NOT_FOUND_TITLE,
    f"Claim {UNKNOWN_CID} does not exist in queue {Q} for project {PROJECT}")
add("claim-get-malformed-id", "GET", f"{CLAIMS}/not-a-claim", 404, NOT_FOUND_TITLE,
    f"Claim not-a-claim does not exist in queue {Q} for project {PROJECT}")
add("claim-get-other-queue", "GET", f"/v2/queues/{CAPPED}/claims/<cid>", 404, NOT_FOUND_TITLE,
    f"Claim <cid> does not exist in queue {CAPPED} for project {PROJECT}")
add("claim-get-other-project", "GET", CLAIM, 404, NOT_FOUND_TITLE,
    f"Claim <cid> does not exist in queue {Q} for project {OTHER_PROJECT}",
    headers={"X-Project-ID": OTHER_PROJECT})
add("claim-update-unknown-id", "PATCH", f"{CLAIMS}/{UNKNOWN_CID}", 404, NOT_FOUND_TITLE,
    f"Claim {UNKNOWN_CID} does not exist in queue {Q} for project {PROJECT}", body={"ttl": 100})
add("claim-update-malformed-id", "PATCH", f"{CLAIMS}/not-a-claim", 404, NOT_FOUND_TITLE,
    f"Claim not-a-claim does not exist in queue {Q} for project {PROJECT}", body={"ttl": 100})
add("claim-update-other-queue", "PATCH", f"/v2/queues/{CAPPED}/claims/<cid>", 404, NOT_FOUND_TITLE,
    f"Claim <cid> does not exist in queue {CAPPED} for project {PROJECT}", body={"ttl": 100})
add("claim-update-no-body", "PATCH", CLAIM, 400, INVALID_BODY, EMPTY_BODY)
add("claim-update-empty-body", "PATCH", CLAIM, 400, INVALID_BODY, EMPTY_BODY, raw="")
for value in (0, 59, 43201, True):
    add(f"claim-update-ttl-{json.dumps(value)}", "PATCH", CLAIM, 400, INVALID_API, CLAIM_TTL,
        body={"ttl": value})
for field in ("ttl", "grace"):
    for label, value in {"null": None, "string": "60"}.items():
        add(f"claim-update-{field}-not-int-{label}", "PATCH", CLAIM, 400, INVALID_BODY, int_field(field),
            raw=json.dumps({field: value}))
for label, raw in {"open-brace": "{", "string": '"fail"', "number": "123"}.items():
    add(f"claim-update-body-{label}", "PATCH", CLAIM, 400, INVALID_BODY, PARSE, raw=raw)
add("claim-update-body-array", "PATCH", CLAIM, 400, INVALID_BODY, DOCTYPE, body=[])
add("claim-update-ttl-big-int", "PATCH", CLAIM, 400, INVALID_BODY, BIG_INT, body={"ttl": -BIG - 1})

# --- queue PUT (§3.1, §3.3) ---------------------------------------------------------------------

_PUT_RESERVED = [
    ("default-ttl-string", {"_default_message_ttl": "3600"}, META_TTL_TYPE),
    ("default-ttl-float", {"_default_message_ttl": 3600.5}, META_TTL_TYPE),
    ("default-ttl-0", {"_default_message_ttl": 0}, META_TTL),
    ("default-ttl-59", {"_default_message_ttl": 59}, META_TTL),
    ("default-ttl-1209601", {"_default_message_ttl": 1209601}, META_TTL),
    ("default-ttl-negative", {"_default_message_ttl": -60}, META_TTL),
    ("post-size-string", {"_max_messages_post_size": "1024"}, META_SIZE_TYPE),
    ("post-size-0", {"_max_messages_post_size": 0}, META_SIZE_RANGE),
    ("post-size-262145", {"_max_messages_post_size": 262145}, META_SIZE_RANGE),
    ("post-size-negative", {"_max_messages_post_size": -1}, META_SIZE_RANGE),
    ("claim-count-string", {"_max_claim_count": "3"}, META_CLAIM_COUNT_TYPE),
    ("claim-count-list", {"_max_claim_count": [3]}, META_CLAIM_COUNT_TYPE),
    ("dlq-ttl-string", {"_dead_letter_queue_messages_ttl": "600"}, META_DLQ_TTL_TYPE),
    ("dlq-ttl-59", {"_dead_letter_queue_messages_ttl": 59}, META_DLQ_TTL),
    ("dlq-ttl-0", {"_dead_letter_queue_messages_ttl": 0}, META_DLQ_TTL),
    ("dlq-ttl-1209601", {"_dead_letter_queue_messages_ttl": 1209601}, META_DLQ_TTL),
    ("delay-string", {"_default_message_delay": "30"}, META_DELAY_TYPE),
    ("delay-901", {"_default_message_delay": 901}, META_DELAY),
    ("delay-negative", {"_default_message_delay": -1}, META_DELAY),
    ("encrypt-string", {"_enable_encrypt_messages": "yes"}, META_ENCRYPT_TYPE),
    ("encrypt-int", {"_enable_encrypt_messages": 1}, META_ENCRYPT_TYPE),
    # review: a dead-letter queue no store can name; PostgreSQL failed every claim once one was due
    ("dlq-nul", {"_dead_letter_queue": "d\x00", "_max_claim_count": 1}, META_DLQ_NAME),
]
for label, meta, text in _PUT_RESERVED:
    add(f"queue-put-{label}", "PUT", f"/v2/queues/{FRESH}", 400, INVALID_API, text, body=meta)
add("queue-put-existing-queue-invalid-reserved", "PUT", QUEUE_ROUTE, 400, INVALID_API, META_TTL,
    body={"color": "red", "_default_message_ttl": 10})
add("queue-put-valid-then-invalid-reserved", "PUT", f"/v2/queues/{FRESH}", 400, INVALID_API, META_DELAY,
    body={"_default_message_ttl": 600, "_default_message_delay": 1000})
for label, raw in {"open-brace": "{", "dot": ".", "whitespace": "  ", "string": '"fail"',
                   "number": "123", "null": "null"}.items():
    add(f"queue-put-body-{label}", "PUT", f"/v2/queues/{FRESH}", 400, INVALID_BODY, PARSE, raw=raw)
add("queue-put-body-array", "PUT", f"/v2/queues/{FRESH}", 400, INVALID_BODY, DOCTYPE, body=[])
add("queue-put-body-array-of-object", "PUT", f"/v2/queues/{FRESH}", 400, INVALID_BODY, DOCTYPE,
    body=[{"a": 1}])
add("queue-put-big-int", "PUT", f"/v2/queues/{FRESH}", 400, INVALID_BODY, BIG_INT, body={"n": BIG})
add("queue-put-65537-bytes", "PUT", f"/v2/queues/{FRESH}", 400, INVALID_API, META_SIZE,
    raw=padded('{"blob": "', '"}', 65_537))
add("queue-put-65537-bytes-garbage", "PUT", f"/v2/queues/{FRESH}", 400, INVALID_API, META_SIZE,
    raw="{" * 65_537)

# --- queue PATCH (§3.5) ---------------------------------------------------------------------------

_PCT = {"Content-Type": PATCH_CT}


def patch(id: str, status: int, title: str, description: Description, *, body: Any = None,
          raw: str | None = None, path: str = QUEUE_ROUTE,
          headers: Mapping[str, str | None] | None = None) -> None:
    add(f"queue-patch-{id}", "PATCH", path, status, title, description, body=body, raw=raw,
        headers={**_PCT, **(headers or {})})


_OK_OP = {"op": "add", "path": "/metadata/color", "value": "green"}
for label, content_type in {"json": "application/json", "charset-suffix": f"{PATCH_CT}; charset=utf-8",
                            "merge-patch": "application/merge-patch+json",
                            "upper-case": PATCH_CT.upper()}.items():
    patch(f"content-type-{label}", 415, UNSUPPORTED_TITLE, UNSUPPORTED, body=[_OK_OP],
          headers={"Content-Type": content_type})
patch("content-type-missing", 415, UNSUPPORTED_TITLE, UNSUPPORTED, body=[_OK_OP],
      headers={"Content-Type": None})
patch("empty-body", 400, INVALID_BODY, PATCH_EMPTY, raw="")
patch("no-body", 400, INVALID_BODY, PATCH_EMPTY)
for label, raw in {"open-bracket": "[", "dot": ".", "string": '"fail"', "number": "123"}.items():
    patch(f"body-{label}", 400, INVALID_BODY, PARSE, raw=raw)
patch("big-int-value", 400, INVALID_BODY, BIG_INT, body=[{**_OK_OP, "value": BIG}])
patch("not-array-object", 400, INVALID_BODY, DOCTYPE, body=_OK_OP)
patch("not-array-empty-object", 400, INVALID_BODY, DOCTYPE, body={})
for label, value in {"number": 1, "string": "add", "null": None, "array": [_OK_OP]}.items():
    patch(f"element-not-object-{label}", 400, INVALID_BODY, PATCH_NOT_OBJECT, raw=json.dumps([value]))
patch("element-not-object-after-good", 400, INVALID_BODY, PATCH_NOT_OBJECT, raw=json.dumps([_OK_OP, 1]))
patch("missing-op", 400, INVALID_BODY, PATCH_NO_OP, body=[{"path": "/metadata/color", "value": 1}])
for op in ("move", "copy", "test", "ADD", ""):
    patch(f"bad-op-{op or 'empty'}", 400, INVALID_BODY, bad_op(op),
          body=[{"op": op, "path": "/metadata/color", "value": 1}])
patch("missing-path", 400, INVALID_BODY, PATCH_NO_PATH, body=[{"op": "add", "value": 1}])
patch("pointer-no-leading-slash", 400, INVALID_BODY, 'Pointer `metadata/color` does not start with "/".',
      body=[{"op": "add", "path": "metadata/color", "value": 1}])
patch("pointer-empty", 400, INVALID_BODY, 'Pointer `` does not start with "/".',
      body=[{"op": "add", "path": "", "value": 1}])
for label, pointer in {"trailing-slash": "/metadata/color/", "adjacent-slashes": "/metadata//color",
                       "bad-tilde": "/metadata/co~2lor", "trailing-tilde": "/metadata/color~"}.items():
    patch(f"pointer-{label}", 400, INVALID_BODY, ANY, body=[{"op": "add", "path": pointer, "value": 1}])
patch("path-3-segments", 400, INVALID_BODY, bad_pointer_segments("/metadata/a/b"),
      body=[{"op": "add", "path": "/metadata/a/b", "value": 1}])
patch("path-1-segment", 400, INVALID_BODY, bad_pointer_segments("/metadata"),
      body=[{"op": "add", "path": "/metadata", "value": 1}])
patch("path-3-segments-remove", 400, INVALID_BODY, bad_pointer_segments("/metadata/color/x"),
      body=[{"op": "remove", "path": "/metadata/color/x"}])
patch("root-not-metadata-add", 400, INVALID_BODY, PATCH_ROOT,
      body=[{"op": "add", "path": "/meta/color", "value": 1}])
patch("root-not-metadata-replace", 400, INVALID_BODY, PATCH_ROOT,
      body=[{"op": "replace", "path": "/color/x", "value": 1}])
for op in ("add", "replace"):
    patch(f"missing-value-{op}", 400, INVALID_BODY, needs_value(op),
          body=[{"op": op, "path": "/metadata/color"}])
_PATCH_RESERVED = [
    ("default-ttl-10", "_default_message_ttl", 10, META_TTL),
    ("default-ttl-0", "_default_message_ttl", 0, META_TTL),
    ("default-ttl-string", "_default_message_ttl", "x", META_TTL_TYPE),
    ("post-size-0", "_max_messages_post_size", 0, META_SIZE_RANGE),
    ("post-size-262145", "_max_messages_post_size", 262145, META_SIZE_RANGE),
    ("post-size-string", "_max_messages_post_size", "big", META_SIZE_TYPE),
    ("claim-count-string", "_max_claim_count", "x", META_CLAIM_COUNT_TYPE),
    ("dlq-ttl-59", "_dead_letter_queue_messages_ttl", 59, META_DLQ_TTL),
    ("dlq-ttl-string", "_dead_letter_queue_messages_ttl", "x", META_DLQ_TTL_TYPE),
    ("delay-901", "_default_message_delay", 901, META_DELAY),
    ("delay-string", "_default_message_delay", "x", META_DELAY_TYPE),
    ("encrypt-string", "_enable_encrypt_messages", "true", META_ENCRYPT_TYPE),
]
for label, key, value, text in _PATCH_RESERVED:
    for op in ("add", "replace"):
        patch(f"reserved-{op}-{label}", 400, INVALID_BODY, text,
              body=[{"op": op, "path": f"/metadata/{key}", "value": value}])
patch("reserved-invalid-after-good-op", 400, INVALID_BODY, META_TTL,
      body=[_OK_OP, {"op": "add", "path": "/metadata/_default_message_ttl", "value": 10}])
patch("missing-value-after-good-op", 400, INVALID_BODY, needs_value("add"),
      body=[_OK_OP, {"op": "add", "path": "/metadata/x"}])
patch("replace-missing-key", 409, CONFLICT_TITLE, "Can't replace non-existent object nope.",
      body=[{"op": "replace", "path": "/metadata/nope", "value": 1}])
patch("remove-missing-key", 409, CONFLICT_TITLE, "Can't remove non-existent object nope.",
      body=[{"op": "remove", "path": "/metadata/nope"}])
patch("remove-missing-key-after-good-op", 409, CONFLICT_TITLE, "Can't remove non-existent object nope.",
      body=[_OK_OP, {"op": "remove", "path": "/metadata/nope"}])
patch("unknown-queue", 404, NOT_FOUND_TITLE, f"Queue {FRESH} does not exist for project {PROJECT}",
      body=[_OK_OP], path=f"/v2/queues/{FRESH}")
patch("65537-bytes", 400, INVALID_BODY, META_SIZE,
      raw=padded('[{"op": "add", "path": "/metadata/blob", "value": "', '"}]', 65_537))
patch("65537-bytes-garbage", 400, INVALID_BODY, META_SIZE, raw="[" * 65_537)
# The size row comes first in the §3.5 table (upstream checks Content-Length before the media type).
patch("65537-bytes-wrong-content-type", 400, INVALID_BODY, META_SIZE,
      raw=padded('[{"op": "add", "path": "/metadata/blob", "value": "', '"}]', 65_537),
      headers={"Content-Type": "application/json"})

# --- purge (§3.8) -------------------------------------------------------------------------------

_PURGE = f"/v2/queues/{Q}/purge"
add("purge-empty-object", "POST", _PURGE, 400, INVALID_API, PURGE_KEY, body={})
add("purge-misspelled-key", "POST", _PURGE, 400, INVALID_API, PURGE_KEY, body={"resource_type": ["messages"]})
add("purge-unknown-type", "POST", _PURGE, 400, INVALID_API, PURGE_TYPES, body={"resource_types": ["queues"]})
add("purge-known-and-unknown-type", "POST", _PURGE, 400, INVALID_API, PURGE_TYPES,
    body={"resource_types": ["messages", "claims"]})
add("purge-types-as-string", "POST", _PURGE, 400, INVALID_API, PURGE_TYPES,
    body={"resource_types": "messages"})
for label, raw in {"open-brace": "{", "string": '"fail"', "number": "123"}.items():
    add(f"purge-body-{label}", "POST", _PURGE, 400, INVALID_BODY, PARSE, raw=raw)


def _check_unique() -> None:
    seen: set[str] = set()
    for case in CASES:
        assert case.id not in seen, f"duplicate case id {case.id}"
        seen.add(case.id)


_check_unique()
