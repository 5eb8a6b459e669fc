"""The RFC 6455 opening handshake, as pure functions over bytes.

Done here rather than through a WSGI server so the websocket listener needs
nothing but a socket, and so a bad handshake is answered without a thread
per connection lingering in a framework.
"""

from __future__ import annotations

import base64
import hashlib

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 16 * 1024


class HandshakeError(ValueError):
    """The request is not a websocket upgrade we accept; ``status`` goes back to the peer."""

    def __init__(self, reason: str, status: str = "400 Bad Request") -> None:
        super().__init__(reason)
        self.status = status


def parse(head: bytes) -> dict[str, str]:
    """Headers (lower-cased names) of a valid upgrade request."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise HandshakeError("undecodable request") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HandshakeError("malformed request line")
    if parts[0] != "GET":
        raise HandshakeError("websocket upgrades use GET", "405 Method Not Allowed")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError("malformed header line")
        headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise HandshakeError("not a websocket upgrade (Upgrade: websocket expected)", "426 Upgrade Required")
    if "upgrade" not in headers.get("connection", "").lower():
        raise HandshakeError("Connection: Upgrade expected")
    if headers.get("sec-websocket-version") != "13":
        raise HandshakeError("only websocket version 13 is supported", "426 Upgrade Required")
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError(key)
    except ValueError as exc:
        raise HandshakeError("invalid Sec-WebSocket-Key") from exc
    return headers


def accept(key: str) -> bytes:
    digest = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + digest + b"\r\n\r\n"
    )


def refuse(error: HandshakeError) -> bytes:
    body = str(error).encode()
    return (
        f"HTTP/1.1 {error.status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Sec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n"
    ).encode() + body
