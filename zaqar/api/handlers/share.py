"""Pre-signed URL creation: ``POST /v2/queues/{queue_name}/share`` (http-v2.md §8.1).

HTTP only (websocket.md §12: the websocket protocol has no share action).
The reply lets its holder call the listed queue paths with the listed methods
until it expires, without credentials of their own.
"""

from __future__ import annotations

from typing import Any

from zaqar.api import errors, signed_url, validation
from zaqar.api.context import Context
from zaqar.api.operations import operation
from zaqar.api.request import Request, Response

_VALID_PATHS = frozenset({"messages", "subscriptions", "claims"})


def _set_text(items: Any) -> str:
    """A set as upstream prints it (``{'a', 'b'}``), in a stable order."""
    return "{" + ", ".join(sorted({repr(item) for item in items})) + "}"


def _paths(queue: str, value: Any) -> list[str]:
    # NOTE: upstream takes set(paths), so a string is a set of characters and fails here [U].
    items = list(value) if isinstance(value, str | list | dict) else [value]
    invalid = [item for item in items if not (isinstance(item, str) and item in _VALID_PATHS)]
    if invalid:
        raise errors.BadRequest(f"Invalid paths: {_set_text(invalid)}")
    return [f"/v2/queues/{queue}/{item}" for item in items]


@operation("queue_share", unavailable="The pre-signed URL could not be created.")
def queue_share(ctx: Context, req: Request) -> Response:
    p = req.params
    unknown = p.get("unknown_keys")
    if unknown:
        raise errors.BadRequest(f"Unknown keys: {_set_text(unknown)}")
    paths = _paths(req.params["queue_name"], p.get("paths") or ["messages"])
    if ctx.signed_url_key is None:
        raise errors.BadRequest("The `key` can't be None")
    methods = p.get("methods") or ["GET"]
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise errors.BadRequest("`methods` should be a list")
    validation.storable_strings(methods, "methods")  # NOTE: the signature's UTF-8 cannot hold a surrogate
    try:
        # NOTE: also for a date no datetime holds once moved to UTC (year 0 or 10000): 400, not 500.
        expires = signed_url.expiry(p.get("expires"), ctx.clock())
    except ValueError as exc:
        raise errors.BadRequest(str(exc)) from None
    body = signed_url.create(ctx.signed_url_key, paths, methods, req.project_id, expires)
    return Response(200, body, data=body)
