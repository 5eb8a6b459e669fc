"""What a handler may use: the store, the settings, the clock and the policy check."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Protocol

from zaqar.api.ratelimit import RateLimiter
from zaqar.api.settings import Features, Limits
from zaqar.storage.base import Clock, DataDriver, Subscription
from zaqar.storage.control import ControlDriver

# (rule name, caller's roles) -> allowed?
Authorizer = Callable[[str, frozenset[str]], bool]


class Notifier(Protocol):
    """Delivers notifications off the request path; every method returns at once and never raises."""

    def messages_posted(self, project: str | None, queue: str, documents: list[dict[str, Any]]) -> None:
        """Notify the queue's subscribers of new messages (one document per message).

        Called after every post, so it may make one cheap store read (are there live
        subscriptions?) on the caller's thread, and must cost next to nothing when there
        are none; deliveries themselves never run on the caller's thread.
        """

    def subscription_created(self, project: str | None, queue: str, subscription: Subscription) -> None:
        """Send the confirmation request, when confirmations are required."""

    def subscription_confirmed(self, project: str | None, queue: str, subscription: Subscription) -> None:
        """Acknowledge a confirmation or unsubscription, when confirmations are required."""


class SilentNotifier:
    """For deployments and tests without notifications: drops everything."""

    def messages_posted(self, project: str | None, queue: str, documents: list[dict[str, Any]]) -> None:
        return None

    def subscription_created(self, project: str | None, queue: str, subscription: Subscription) -> None:
        return None

    def subscription_confirmed(self, project: str | None, queue: str, subscription: Subscription) -> None:
        return None

DEFAULT_RULES: dict[str, str] = {
    "health:get": "role:admin",
    "pools:get_all": "role:admin",
    "pools:get": "role:admin",
    "pools:create": "role:admin",
    "pools:update": "role:admin",
    "pools:delete": "role:admin",
    "flavors:get_all": "",
    "flavors:get": "",
    "flavors:create": "role:admin",
    "flavors:update": "role:admin",
    "flavors:delete": "role:admin",
}


def default_authorizer(rule: str, roles: frozenset[str]) -> bool:
    """Upstream's default rules, for deployments without a policy file."""
    check = DEFAULT_RULES.get(rule, "")
    if check in ("", "@"):
        return True
    if check.startswith("role:"):
        return check[5:] in roles
    return False


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """``control`` and ``pool_store`` are set only with pooling: the management store, and the
    message store of a registered pool by name (for per-pool health). ``signed_url_key`` is
    ``[signed_url] secret_key``: pre-signed URLs are created and verified with it, and refused
    without it."""

    store: DataDriver
    limits: Limits = Limits()
    features: Features = Features()
    clock: Clock = time.time
    authorize: Authorizer = default_authorizer
    notifier: Notifier = dataclasses.field(default_factory=SilentNotifier)
    control: ControlDriver | None = None
    pool_store: Callable[[str], DataDriver] | None = None
    signed_url_key: str | None = None
    rate_limiter: RateLimiter | None = None  # per-project request rate limit; None: off
