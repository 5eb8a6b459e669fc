"""The canonical (HTTP v2) representations of stored objects.

One place decides which keys a client sees: python-zaqarclient builds
``Message(**fields)`` and fails on any unexpected key (client-compat.md).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from zaqar.storage.base import Message, MessageStamp, QueueStats, Subscription


def checksum(body: Any) -> str:
    return "MD5:" + hashlib.md5(json.dumps(body).encode(), usedforsecurity=False).hexdigest()


def message(m: Message, queue: str, *, with_checksum: bool = False) -> dict[str, Any]:
    href = f"/v2/queues/{queue}/messages/{m.id}"
    if m.claim_id is not None:
        href += f"?claim_id={m.claim_id}"
    view = {"id": m.id, "href": href, "ttl": m.ttl, "age": m.age, "body": m.body}
    if with_checksum:
        view["checksum"] = checksum(m.body)
    return view


def popped(m: Message, *, with_checksum: bool = False) -> dict[str, Any]:
    view = {
        "id": m.id,
        "age": m.age,
        "ttl": m.ttl,
        "claim_count": m.claim_count,
        "claim_id": m.claim_id,
        "body": m.body,
    }
    if with_checksum:
        view["checksum"] = checksum(m.body)
    return view


def stats(s: QueueStats, now: float, locate: Callable[[MessageStamp], dict[str, Any]]) -> dict[str, Any]:
    """Queue stats; ``locate`` says how the oldest and newest message are named (href or id)."""
    counts: dict[str, Any] = {"claimed": s.claimed, "free": s.free, "total": s.total}
    for key, stamp in (("oldest", s.oldest), ("newest", s.newest)):
        if s.total and stamp is not None:
            counts[key] = {
                **locate(stamp),
                "age": max(0, int(now - stamp.created)),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp.created)),
            }
    return {"messages": counts}


# The header a connection-bound subscription's pushes carry to the websocket transport's
# notification endpoint (its ``post_headers`` option): the transport's secret, never shown.
PUSH_TOKEN_HEADER = "X-Zaqar-Push-Token"


def subscription(s: Subscription) -> dict[str, Any]:
    """All seven keys, always: python-zaqarclient indexes them directly.

    A connection-bound subscription's options show as the client gave them
    (``{}`` by default, websocket.md §9.1), without the push token.
    """
    return {"id": s.id, "source": s.source, "subscriber": s.subscriber, "ttl": s.ttl, "age": s.age,
            "options": _shown_options(s.options), "confirmed": s.confirmed}


def _shown_options(options: dict[str, Any]) -> dict[str, Any]:
    headers = options.get("post_headers")
    if not isinstance(headers, dict) or PUSH_TOKEN_HEADER not in headers:
        return options
    kept = {name: value for name, value in headers.items() if name != PUSH_TOKEN_HEADER}
    shown = {key: value for key, value in options.items() if key != "post_headers"}
    return {**shown, "post_headers": kept} if kept else shown


def query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def next_link(path: str, params: dict[str, Any], marker: str) -> list[dict[str, str]]:
    """A ``next`` link repeating the given parameters with the new marker."""
    query = {k: query_value(v) for k, v in params.items() if v is not None and k != "marker"}
    query["marker"] = marker
    return [{"rel": "next", "href": f"{path}?{urlencode(query)}"}]
