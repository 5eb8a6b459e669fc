"""The opening handshake: what upgrades are accepted, and what refusals say."""

from __future__ import annotations

import pytest

from zaqar.transport.websocket import handshake

GOOD = (
    "GET / HTTP/1.1\r\nHost: localhost:9000\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def test_accept_key_follows_rfc_6455():
    headers = handshake.parse(GOOD.encode())
    reply = handshake.accept(headers["sec-websocket-key"])
    assert reply.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in reply  # RFC 6455 §1.3 example


def test_any_path_is_accepted():
    assert handshake.parse(GOOD.replace("GET / ", "GET /v2/anything ").encode())


@pytest.mark.parametrize("change, status", [
    (("GET / HTTP/1.1", "POST / HTTP/1.1"), "405 Method Not Allowed"),
    (("Upgrade: websocket", "Upgrade: h2c"), "426 Upgrade Required"),
    (("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"), "426 Upgrade Required"),
    (("dGhlIHNhbXBsZSBub25jZQ==", "short"), "400 Bad Request"),
    (("Connection: keep-alive, Upgrade", "Connection: close"), "400 Bad Request"),
    (("GET / HTTP/1.1", "garbage"), "400 Bad Request"),
])
def test_bad_upgrades_are_refused_with_a_status(change, status):
    with pytest.raises(handshake.HandshakeError) as raised:
        handshake.parse(GOOD.replace(*change).encode())
    assert raised.value.status == status
    refusal = handshake.refuse(raised.value)
    assert refusal.startswith(f"HTTP/1.1 {status}\r\n".encode())
    assert refusal.endswith(str(raised.value).encode())


# -- Origin: which browser pages may connect (review 7 #16) ---------------------------------------------

WS_HOST = "127.0.0.1:9000"


@pytest.mark.parametrize("origin, host, allowed", [
    (None, WS_HOST, True),  # no Origin: a program (python-zaqarclient), not a page
    ("http://127.0.0.1:9000", WS_HOST, True),  # the websocket's own origin (websocket-client sends it)
    ("http://127.0.0.1:8888", WS_HOST, True),  # the HTTP transport's: the console's page
    ("http://localhost:8888", WS_HOST, True),  # the same page by its loopback name
    ("http://[::1]:8888", "[::1]:9000", True),
    ("https://mq.example.com", "mq.example.com", True),  # behind a TLS proxy, by an own name
    ("HTTP://MQ.Example.COM:9000", "mq.example.com:9000", True),
    ("http://192.0.2.7:8888", "192.0.2.7:9000", True),  # by the machine's address
    # DNS rebinding: the page's own name re-pointed at this machine, so Origin and Host agree
    ("http://rebind.attacker.example:9000", "rebind.attacker.example:9000", False),
    ("http://rebind.attacker.example:8888", "rebind.attacker.example:9000", False),
    ("http://localhost:3000", WS_HOST, False),  # another web app on the same host (review 7 s18)
    ("https://evil.example", WS_HOST, False),  # any web site
    ("http://127.0.0.1.evil.example:8888", WS_HOST, False),
    ("http://mq.example.com:8888", "other.example.com:9000", False),
    ("null", WS_HOST, False),  # sandboxed frames and file: pages
    ("not an origin", WS_HOST, False),
    ("http://127.0.0.1:99999", WS_HOST, False),
    ("http://127.0.0.1:8888", None, False),
])
def test_only_pages_of_the_services_own_origins_may_connect(origin, host, allowed):
    policy = handshake.origin_policy((), http_port=8888, own_hosts=["MQ.example.com"])
    assert handshake.origin_allowed(policy, origin, host) is allowed


def test_listed_origins_and_the_wildcard_are_allowed():
    policy = handshake.origin_policy(["https://dash.example.com/", " http://LOCALHOST:3000 ", "null"], 8888)
    assert handshake.origin_allowed(policy, "https://dash.example.com", WS_HOST)
    assert handshake.origin_allowed(policy, "https://dash.example.com:443", WS_HOST)  # default port
    assert handshake.origin_allowed(policy, "http://localhost:3000", WS_HOST)
    assert handshake.origin_allowed(policy, "null", WS_HOST)
    assert not handshake.origin_allowed(policy, "https://dash.example.com:8443", WS_HOST)
    anyone = handshake.origin_policy(["*"], 8888)
    assert handshake.origin_allowed(anyone, "https://evil.example", WS_HOST)


def test_without_a_known_http_port_any_page_of_the_websockets_host_may_connect():
    policy = handshake.origin_policy(())
    assert handshake.origin_allowed(policy, "http://127.0.0.1:8080", WS_HOST)
    assert not handshake.origin_allowed(policy, "https://evil.example", WS_HOST)


def test_a_refused_origin_gets_403():
    headers = handshake.parse((GOOD + "Origin: https://evil.example\r\n").encode())
    with pytest.raises(handshake.HandshakeError) as raised:
        handshake.check_origin(handshake.origin_policy((), 8888), headers)
    assert raised.value.status == "403 Forbidden"
    handshake.check_origin(handshake.origin_policy((), 8888), handshake.parse(GOOD.encode()))


def test_zaqar_conf_gives_the_websocket_its_allowed_origins_and_the_http_port(tmp_path):
    from zaqar import bootstrap
    from zaqar import conf as zconf

    path = tmp_path / "zaqar.conf"
    path.write_text(f"[DEFAULT]\nstate_path = {tmp_path}\n[drivers:transport:wsgi]\nport = 8123\n"
                    "[drivers:transport:websocket]\nallowed_origins = https://a.example\n"
                    "[cors]\nallowed_origin = https://b.example\n")
    conf = zconf.load(["--config-file", str(path)])
    settings = bootstrap.websocket_settings(conf, bootstrap.limits_from(conf))
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.http_port == 8123
    policy = handshake.origin_policy(settings.allowed_origins, settings.http_port, settings.own_hosts)
    assert handshake.origin_allowed(policy, "http://127.0.0.1:8123", WS_HOST)
    assert not handshake.origin_allowed(policy, "http://localhost:3000", WS_HOST)  # review 7 s18
    assert handshake.origin_allowed(policy, "https://b.example", WS_HOST)


def test_the_machines_hostname_and_the_consoles_websocket_host_count_as_its_own(tmp_path):
    import socket

    from zaqar import bootstrap
    from zaqar import conf as zconf

    path = tmp_path / "zaqar.conf"
    path.write_text(f"[DEFAULT]\nstate_path = {tmp_path}\n[console]\nwebsocket_url = wss://MQ.example.com/ws\n")
    conf = zconf.load(["--config-file", str(path)])
    settings = bootstrap.websocket_settings(conf, bootstrap.limits_from(conf))
    policy = handshake.origin_policy(settings.allowed_origins, settings.http_port, settings.own_hosts)
    assert handshake.origin_allowed(policy, "https://mq.example.com", "mq.example.com")
    me = socket.gethostname()
    assert handshake.origin_allowed(policy, f"http://{me}:8888", f"{me}:9000")
    assert not handshake.origin_allowed(policy, "http://evil.example:9000", "evil.example:9000")
