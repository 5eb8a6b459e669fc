"""Policy rules: upstream defaults, and an operator's policy file overriding them."""

from __future__ import annotations

from zaqar import conf as zconf
from zaqar.conf import policy


def _conf(tmp_path, rules: str | None):
    lines = ["[DEFAULT]", f"state_path = {tmp_path}"]
    if rules is not None:
        (tmp_path / "policy.yaml").write_text(rules)
        lines += ["[oslo_policy]", f"policy_file = {tmp_path / 'policy.yaml'}"]
    path = tmp_path / "zaqar.conf"
    path.write_text("\n".join(lines) + "\n")
    return zconf.load(["--config-file", str(path)])


def test_health_needs_admin_by_default(tmp_path):
    allowed = policy.authorizer(_conf(tmp_path, None))
    assert not allowed("health:get", frozenset())
    assert allowed("health:get", frozenset({"admin"}))
    assert allowed("flavors:get_all", frozenset())


def test_policy_file_overrides_rule_by_rule(tmp_path):
    allowed = policy.authorizer(_conf(tmp_path, '"health:get": ""\n"flavors:get": "!"\n'))
    assert allowed("health:get", frozenset())
    assert not allowed("flavors:get", frozenset({"admin"}))
    assert not allowed("pools:create", frozenset())
