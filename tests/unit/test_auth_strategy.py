"""``[DEFAULT] auth_strategy``: none by default, keystone on request, and never a silent typo."""

from __future__ import annotations

import pytest

from zaqar import bootstrap
from zaqar import conf as zconf


def _conf(tmp_path, text: str):
    path = tmp_path / "zaqar.conf"
    path.write_text(f"[DEFAULT]\nstate_path = {tmp_path}\n{text}\n")
    return zconf.load(["--config-file", str(path)])


def test_no_strategy_means_no_authentication(tmp_path):
    conf = _conf(tmp_path, "")
    assert bootstrap.authenticator(conf) is None
    assert bootstrap.websocket_settings(conf, bootstrap.limits_from(conf)).auth is None


@pytest.mark.parametrize("value", ["Keystone", "keystone2", "noauth"])
def test_an_unknown_strategy_stops_the_server_instead_of_leaving_it_open(tmp_path, value):
    conf = _conf(tmp_path, f"auth_strategy = {value}")
    with pytest.raises(ValueError, match="auth_strategy must be '' or 'keystone'"):
        bootstrap.authenticator(conf)


@pytest.mark.parametrize("value", ["none", ""])
def test_none_is_upstreams_word_for_no_authentication(tmp_path, value):
    conf = _conf(tmp_path, f"auth_strategy = {value}")
    assert conf.auth_strategy == ""
    assert bootstrap.authenticator(conf) is None
    assert bootstrap.websocket_settings(conf, bootstrap.limits_from(conf)).auth is None
