"""Pre-signed URLs (http-v2.md §8.2) and the confirmation documents that carry them (§6.8)."""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from zaqar.storage.base import Subscription


def signature(key: str, paths: Sequence[str], methods: Sequence[str], project: str | None,
              expires: str) -> str:
    """HMAC-SHA256 over sorted paths and methods, project and expiry.

    The separator is the two characters backslash and n, as upstream builds
    the string from a raw literal; tooling compatible with upstream depends on it.
    """
    message = "\\n".join([",".join(sorted(paths)), ",".join(sorted(methods)), str(project), expires])
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


class Signer:
    def __init__(self, key: str, lifetime: int = 3600, clock: Any = None) -> None:
        self._key, self._lifetime = key, lifetime
        self._clock = clock

    def _now(self) -> datetime.datetime:
        now = self._clock() if self._clock is not None else None
        if now is None:
            return datetime.datetime.now(datetime.UTC)
        return datetime.datetime.fromtimestamp(now, datetime.UTC)

    def confirmation(self, project: str | None, queue: str, sub: Subscription, kind: str) -> dict[str, Any]:
        paths = [f"/v2/queues/{queue}/subscriptions/{sub.id}/confirm"]
        expires = (self._now() + datetime.timedelta(seconds=self._lifetime)).strftime("%Y-%m-%dT%H:%M:%S")
        verb = "subscribe to" if kind == "SubscriptionConfirmation" else "unsubscribe from"
        return {
            "Message_Type": kind,
            "Message": f"You have chosen to {verb} the queue: {queue}",
            "URL-Signature": signature(self._key, paths, ["PUT"], project, expires),
            "URL-Methods": ["PUT"],
            "URL-Paths": paths,
            "X-Project-ID": project,
            "URL-Expires": expires,
            "SubscribeBody": {"confirmed": True},
            "UnsubscribeBody": {"confirmed": False},
            "Queue_Name": queue,
        }
