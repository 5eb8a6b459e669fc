"""Small helpers several handler modules share."""

from __future__ import annotations

import json
from typing import Any

from zaqar.api.context import Context
from zaqar.api.request import Request
from zaqar.storage import errors as storage_errors


def encoded_size(req: Request, value: Any) -> int:
    """The size a limit applies to: the raw HTTP body, else compact JSON of the value."""
    if req.content_length is not None:
        return req.content_length
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def queue_metadata(ctx: Context, req: Request, queue: str) -> dict[str, Any]:
    """Stored metadata of a queue, ``{}`` for a queue that was never created (lazy queues)."""
    try:
        return ctx.store.queues.get_metadata(req.project_id, queue)
    except storage_errors.QueueDoesNotExist:
        return {}
