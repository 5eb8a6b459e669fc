"""Access rules through oslo.policy, with upstream Zaqar's rule names and defaults.

An operator's ``[oslo_policy] policy_file`` overrides rules one by one, e.g.
``"health:get": ""`` opens /v2/health to callers without the admin role.
"""

from __future__ import annotations

import logging

from oslo_config import cfg
from oslo_policy import policy

from zaqar.api.context import DEFAULT_RULES, Authorizer

LOG = logging.getLogger(__name__)


def authorizer(conf: cfg.ConfigOpts) -> Authorizer:
    enforcer = policy.Enforcer(conf)
    enforcer.register_defaults([policy.RuleDefault("context_is_admin", "role:admin")])
    enforcer.register_defaults([policy.RuleDefault(name, check) for name, check in DEFAULT_RULES.items()])
    enforcer.load_rules()

    def allowed(rule: str, roles: frozenset[str]) -> bool:
        creds = {"roles": sorted(roles), "is_admin": "admin" in roles}
        return bool(enforcer.enforce(rule, {}, creds, do_raise=False))

    return allowed
