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
