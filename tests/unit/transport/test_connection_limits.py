"""Connection limits: whom a connection counts against, and the defaults the configuration gives."""

from __future__ import annotations

import resource

import pytest

from zaqar import bootstrap, conf
from zaqar.transport.reactor import address_key


@pytest.mark.parametrize("host, key", [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4 through a dual-stack listener: the same client
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
    ("2001:db8:1:2::1", "2001:db8:1:2::"),  # one host holds its whole /64
    ("2001:db8:1:3::1", "2001:db8:1:3::"),
    ("fe80::1%eth0", "fe80::"),
])
def test_connections_count_per_ipv4_address_and_per_ipv6_64(host, key):
    assert address_key(host) == key


def _conf(tmp_path, text: str = "") -> conf.cfg.ConfigOpts:
    path = tmp_path / "zaqar.conf"
    path.write_text(text)
    return conf.load([], config_files=[str(path)])


def test_defaults_limit_the_total_and_not_per_address(tmp_path):
    c = _conf(tmp_path)
    limits = bootstrap.limits_from(c)
    http, ws = bootstrap.http_settings(c, limits), bootstrap.websocket_settings(c, limits)
    assert (http.max_connections, http.max_connections_per_address) == (4096, 0)
    assert (ws.max_connections, ws.max_connections_per_address) == (4096, 0)


def test_each_listener_has_its_own_options(tmp_path):
    c = _conf(tmp_path, "[drivers:transport:wsgi]\nmax_connections = 100\n"
                        "max_connections_per_address = 10\n[drivers:transport:websocket]\n"
                        "max_connections = 0\nmax_connections_per_address = 3\n")
    limits = bootstrap.limits_from(c)
    http, ws = bootstrap.http_settings(c, limits), bootstrap.websocket_settings(c, limits)
    assert (http.max_connections, http.max_connections_per_address) == (100, 10)
    assert (ws.max_connections, ws.max_connections_per_address) == (0, 3)


def test_a_total_beyond_the_open_files_limit_is_lowered_to_fit_it(tmp_path):
    c = _conf(tmp_path, "[drivers:transport:wsgi]\nmax_connections = 1000000000\n")
    lowered = bootstrap.max_connections(c, "wsgi")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 0 < lowered < soft
    websocket_share = bootstrap.max_connections(c, "websocket")
    assert lowered + websocket_share + bootstrap.FILES_RESERVE <= soft
