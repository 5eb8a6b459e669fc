"""The RFC 6455 opening handshake, as pure functions over bytes.

Done here rather than through a WSGI server so the websocket listener needs
nothing but a socket, and so a bad handshake is answered without a thread
per connection lingering in a framework.

Origin (RFC 6455 §10.2): a browser says which page opens the connection, and
a page of any web site may point a websocket at any address, loopback ones
included. So a handshake with an ``Origin`` is refused (403) unless that
origin is allowed (``check_origin``): the websocket's own (what non-browser
clients such as websocket-client send), the HTTP transport's own on the same
host (the console's page), or one the operator listed. Handshakes without an
``Origin`` come from programs, which no page can drive, and are not checked.

"The same host" is judged from the ``Host`` header, which a page can steer by
DNS rebinding (its own name, re-pointed at 127.0.0.1, so that ``Origin`` and
``Host`` agree). So it only counts when ``Host`` names this machine in a way
no foreign page's origin can: an IP address, a loopback name, or one of the
server's own names (``own_hosts``: its hostname). A public name behind a
proxy is an origin to list.

Extensions: permessage-deflate (RFC 7692) is accepted when offered, since every
browser offers it and replies, which echo their request (websocket.md §4),
compress well. The first offer we can honour wins (``negotiate_deflate``); an
offer we cannot honour or cannot parse is declined, never answered with an error,
so such a client still connects, uncompressed.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from zaqar.transport.websocket.frames import DeflateParams

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
    headers = _fields(lines[1:])
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


def _fields(lines: list[str]) -> dict[str, str]:
    """Header fields by lower-cased name; a repeated extensions field is joined (RFC 7230 §3.2.2)."""
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError("malformed header line")
        name, value = name.strip().lower(), value.strip()
        if name == _EXTENSIONS and name in headers:
            value = f"{headers[name]}, {value}"
        headers[name] = value
    return headers


def accept(key: str, extensions: str | None = None) -> bytes:
    """The 101 answer; ``extensions``: the ``Sec-WebSocket-Extensions`` value agreed, if any."""
    digest = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())
    agreed = b"Sec-WebSocket-Extensions: " + extensions.encode() + b"\r\n" if extensions else b""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + digest + b"\r\n" + agreed + b"\r\n"
    )


def refuse(error: HandshakeError) -> bytes:
    body = str(error).encode()
    return (
        f"HTTP/1.1 {error.status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Sec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n"
    ).encode() + body


# -- Origin (RFC 6455 §4.2.2, §10.2) ----------------------------------------------------------------
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

Origin = tuple[str, str, int]  # scheme, host (lower case, IPv6 without brackets), port


@dataclasses.dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Which pages may open a websocket: see ``check_origin``.

    ``allowed``: listed origins, parsed, and ``listed`` as written (lower case),
    for those that are not scheme://host[:port] (``null``, extension pages);
    ``anyone``: ``*`` was listed; ``http_port``: the HTTP transport's port, None
    when unknown (any port of the websocket's host then passes); ``own_hosts``:
    names of this machine a ``Host`` header may use besides addresses and
    loopback names (lower case).
    """

    allowed: frozenset[Origin] = frozenset()
    listed: frozenset[str] = frozenset()
    anyone: bool = False
    http_port: int | None = None
    own_hosts: frozenset[str] = frozenset()


def _origin(text: str) -> Origin | None:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def origin_policy(allowed: Iterable[str], http_port: int | None = None,
                  own_hosts: Iterable[str] = ()) -> OriginPolicy:
    """The policy for ``allowed`` origins (``*``: any page), the HTTP transport's port and own names."""
    listed = {entry.strip().lower().rstrip("/") for entry in allowed if entry.strip()}
    parsed = {found for entry in listed if (found := _origin(entry)) is not None}
    own = frozenset(name.strip().lower() for name in own_hosts if name.strip())
    return OriginPolicy(frozenset(parsed), frozenset(listed), "*" in listed, http_port, own)


def _address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_allowed(policy: OriginPolicy, origin: str | None, host: str | None) -> bool:
    """Whether a page of ``origin`` may connect through ``host`` (the handshake's ``Host``).

    Allowed: no ``Origin`` (not a browser); a listed one; otherwise a page on
    the host the client connected to (loopback names count as one host), from
    the websocket's own port or the HTTP transport's, when ``host`` is an
    address, a loopback name or one of ``policy.own_hosts``.
    """
    if origin is None or policy.anyone:
        return True
    text = origin.strip().lower()
    if text in policy.listed:
        return True
    page = _origin(text)
    if page is None:
        return False  # "null" (sandboxed or file: pages) and anything else not scheme://host
    if page in policy.allowed:
        return True
    try:
        server = urlsplit("//" + (host or ""))
        server_port = server.port
    except ValueError:
        return False
    server_host = server.hostname
    if not server_host:
        return False
    local = _loopback(server_host)
    if not (server_host == page[1] or (local and _loopback(page[1]))):
        return False
    if not (local or _address(server_host) or server_host in policy.own_hosts):
        return False  # a name a page could have re-pointed here (DNS rebinding): only if listed
    own = server_port if server_port is not None else _DEFAULT_PORTS[page[0]]
    return page[2] == own or policy.http_port is None or page[2] == policy.http_port


def check_origin(policy: OriginPolicy, headers: Mapping[str, str]) -> None:
    """Raise ``HandshakeError`` (403) for a browser page that may not connect."""
    if not origin_allowed(policy, headers.get("origin"), headers.get("host")):
        raise HandshakeError("pages of this origin may not open a websocket here "
                             "([drivers:transport:websocket] allowed_origins)", "403 Forbidden")


# -- permessage-deflate negotiation (RFC 7692 §5, §7.1) ---------------------------------------------
_EXTENSIONS = "sec-websocket-extensions"
DEFLATE = "permessage-deflate"
# PERF: 12 bits (4 KiB) keeps a whole claim reply (10 messages, ~2 KiB of MessagePack) in the window,
# so the next one compresses to ~190 bytes against ~410 with 11 bits; the compressor then holds
# ~21 KiB (frames.MEM_LEVEL) where zlib's defaults (15 bits, memLevel 8) hold ~95 KiB.
SERVER_WINDOW_BITS = 12
# Asked of clients that offer client_max_window_bits (browsers do): our inflater then needs 4 KiB of
# window, not 32 KiB (~13 KiB RSS in all instead of ~40). Requests are small; it costs them little.
CLIENT_WINDOW_BITS = 12
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_WINDOW_BITS = re.compile(r"[89]|1[0-5]")  # 8..15, no leading zero (§7.1.2.1)

_FLAGS = ("server_no_context_takeover", "client_no_context_takeover")
_OFFER_PARAMS = frozenset({*_FLAGS, "server_max_window_bits", "client_max_window_bits"})

Offer = list[tuple[str, str | None]]  # an offer's parameters, in order, values unquoted


def _split(text: str, separator: str) -> list[str] | None:
    """``text`` split at ``separator`` outside quoted strings; None when a quote is not closed."""
    parts, start, quoted, escaped = [], 0, False, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            escaped, quoted = char == "\\", char != '"'
        elif char == '"':
            quoted = True
        elif char == separator:
            parts.append(text[start:i])
            start = i + 1
    if quoted:
        return None
    parts.append(text[start:])
    return parts


def _param(text: str) -> tuple[str, str | None] | None:
    """``name`` or ``name=value`` (a token or a quoted string holding a token, RFC 6455 §9.1)."""
    name, sep, value = (part.strip() for part in text.partition("="))
    if not _TOKEN.fullmatch(name):
        return None
    if not sep:
        return name, None
    quoted = _QUOTED.fullmatch(value)
    if quoted:
        value = re.sub(r"\\(.)", r"\1", quoted[1])
    return (name, value) if _TOKEN.fullmatch(value) else None


def offers(header: str) -> list[tuple[str, Offer | None]]:
    """Each extension offered in a ``Sec-WebSocket-Extensions`` value: (name, its parameters).

    A malformed element comes out as ``("", None)`` (or with its name, when
    only its parameters are malformed) so a caller declines it and reads on.
    """
    elements = _split(header, ",")
    if elements is None:
        return []
    found: list[tuple[str, Offer | None]] = []
    for element in elements:
        if not element.strip():
            continue  # "a, , b": empty list elements are allowed (RFC 7230 §7)
        name, *params = (_split(element, ";") or [""])
        name = name.strip()
        parsed = [_param(param) for param in params]
        valid = _TOKEN.fullmatch(name) and all(p is not None for p in parsed)
        found.append((name, [p for p in parsed if p is not None] if valid else None))
    return found


def negotiate_deflate(header: str | None) -> tuple[DeflateParams, str] | None:
    """The first permessage-deflate offer in ``header`` we can honour, and our answer to it.

    Returns the parameters the connection then uses and the value of our
    ``Sec-WebSocket-Extensions`` header; None when nothing was offered or
    every offer was declined (RFC 7692 §5: the connection goes on uncompressed).
    """
    for name, params in offers(header or ""):
        if name == DEFLATE and params is not None:
            accepted = _accept(params)
            if accepted is not None:
                return accepted
    return None


def _accept(params: Offer) -> tuple[DeflateParams, str] | None:
    """Our answer to one offer, None to decline it (RFC 7692 §7.1)."""
    values = dict(params)
    if len(values) != len(params) or not set(values) <= _OFFER_PARAMS:
        return None  # §7: the same parameter twice, or one not defined for an offer
    if any(values.get(flag, None) is not None for flag in _FLAGS):
        return None  # the context takeover parameters have no value
    bits = _window_bits(values)
    if bits is None:
        return None
    server_bits, client_bits = bits
    agreed = DeflateParams(
        server_no_context_takeover="server_no_context_takeover" in values,
        client_no_context_takeover="client_no_context_takeover" in values,
        # NOTE: without server_max_window_bits in the offer we still use our small window, unannounced:
        # a smaller window is always safe for the peer, and some clients refuse unsolicited parameters.
        server_window_bits=server_bits or SERVER_WINDOW_BITS,
        client_window_bits=client_bits or 15,
    )
    answer = [DEFLATE]
    if agreed.server_no_context_takeover:
        answer.append("server_no_context_takeover")  # §7.1.1.1: MUST be echoed
    if agreed.client_no_context_takeover:
        answer.append("client_no_context_takeover")  # echoed: both sides then know we keep no window
    if server_bits is not None:
        answer.append(f"server_max_window_bits={server_bits}")  # §7.1.2.1: MUST be answered
    if client_bits is not None:
        answer.append(f"client_max_window_bits={client_bits}")  # §7.1.2.2: only when offered
    return agreed, "; ".join(answer)


def _window_bits(values: dict[str, str | None]) -> tuple[int | None, int | None] | None:
    """(server, client) window bits to answer, each None when not offered; None to decline."""
    server, client = values.get("server_max_window_bits"), values.get("client_max_window_bits")
    server_bits = client_bits = None
    if "server_max_window_bits" in values:
        if server is None or not _WINDOW_BITS.fullmatch(server):
            return None
        if int(server) < 9:
            return None  # NOTE: zlib cannot compress within 256 bytes (it widens 8 bits to 9): decline
        server_bits = min(SERVER_WINDOW_BITS, int(server))
    if "client_max_window_bits" in values:
        if client is not None and not _WINDOW_BITS.fullmatch(client):
            return None
        client_bits = min(CLIENT_WINDOW_BITS, int(client or 15))
    return server_bits, client_bits
