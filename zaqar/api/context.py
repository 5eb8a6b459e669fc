"""What a handler may use: the store, the settings, the clock and the policy check."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from zaqar.api.settings import Features, Limits
from zaqar.storage.base import Clock, DataDriver

# (rule name, caller's roles) -> allowed?
Authorizer = Callable[[str, frozenset[str]], bool]

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
    store: DataDriver
    limits: Limits = Limits()
    features: Features = Features()
    clock: Clock = time.time
    authorize: Authorizer = default_authorizer
