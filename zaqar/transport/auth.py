"""Who a request acts for, when ``[DEFAULT] auth_strategy = keystone``.

Both transports validate tokens through one keystonemiddleware ``AuthProtocol``
(so one service session and one token cache serve both):

* HTTP: ``KeystoneAuth.wrap`` puts it in front of the falcon app. Version
  discovery (``/``), requests carrying ``URL-Signature`` (verified by the app
  instead, http-v2.md §0.3) and CORS pre-flights (browsers send no token on
  them) go straight to the app. The app reads the caller's identity from what
  the middleware leaves in the WSGI environ (``token_identity``), never from
  client headers, which the middleware strips anyway.
* Websocket: ``KeystoneAuth.authenticate`` runs an ``authenticate`` envelope's
  headers through the same middleware as a WSGI environ (websocket.md §8.1) and
  returns the identity, which the connection keeps until the token expires.

The middleware itself is built by ``zaqar.bootstrap`` from ``[keystone_authtoken]``;
this module only needs it as a WSGI middleware factory.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

LOG = logging.getLogger("zaqar.transport.auth")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
MiddlewareFactory = Callable[[WsgiApp], WsgiApp]

_NEXT = "zaqar.auth.next"  # the app behind the middleware for this request; absent for a probe
_PROBE = "zaqar.auth.probe"  # where a websocket authentication collects the identity


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """The caller a request acts for: from a validated token, or from a verified pre-signed URL.

    ``expires`` is the token's expiry in epoch seconds; None when it does not expire
    (a pre-signed request is checked once, on its own).
    """

    project: str | None
    roles: frozenset[str] = frozenset()
    expires: float | None = None


class AuthenticationFailed(Exception):
    """The token was refused; ``status`` is the middleware's (401, or 503 when Keystone is down)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"authentication failed with status {status}")
        self.status = status


class Authenticator(Protocol):
    """What the websocket transport needs of an auth strategy."""

    def authenticate(self, headers: Mapping[str, Any]) -> Identity:
        """The identity of a token-bearing envelope; raises AuthenticationFailed."""
        ...


def token_identity(environ: Mapping[str, Any]) -> Identity | None:
    """The identity keystonemiddleware validated for this request, or None.

    ``X-Identity-Status`` is set by the middleware after it removed any client
    copy; with ``delay_auth_decision`` an invalid token also reaches the app, and
    that status is what says so (the token data may still be attached then).
    """
    if environ.get("HTTP_X_IDENTITY_STATUS") != "Confirmed":
        return None
    user = getattr(environ.get("keystone.token_auth"), "user", None)
    if user is None:
        return None
    expires = user.expires
    return Identity(user.project_id, frozenset(user.role_names),
                    expires.timestamp() if expires is not None else None)


def _is_preflight(environ: Mapping[str, Any]) -> bool:
    return (environ.get("REQUEST_METHOD") == "OPTIONS" and "HTTP_ORIGIN" in environ
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ)


def _probe_environ(headers: Mapping[str, Any]) -> dict[str, Any]:
    """A WSGI environ for a GET carrying the envelope's (string) headers, as upstream builds it."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
        "SERVER_NAME": "zaqar-websocket", "SERVER_PORT": "0", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        if isinstance(name, str) and isinstance(value, str):
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


class KeystoneAuth:
    """One keystonemiddleware instance serving both transports."""

    def __init__(self, middleware: MiddlewareFactory) -> None:
        self._protocol = middleware(self._downstream)

    def _downstream(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        app = environ.pop(_NEXT, None)
        if app is not None:
            return app(environ, start_response)
        probe = environ.get(_PROBE)
        if probe is not None:  # a websocket authentication: only the identity is wanted
            identity = token_identity(environ)
            if identity is not None:
                probe.append(identity)
        start_response("204 No Content", [])
        return []

    def wrap(self, app: WsgiApp) -> WsgiApp:
        """``app`` behind token validation, except for what must reach it without a token."""

        def gate(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if (environ.get("PATH_INFO") == "/" or "HTTP_URL_SIGNATURE" in environ
                    or _is_preflight(environ)):
                return app(environ, start_response)
            environ[_NEXT] = app
            return self._protocol(environ, start_response)

        return gate

    def authenticate(self, headers: Mapping[str, Any]) -> Identity:
        """Validate the ``X-Auth-Token`` among ``headers``; blocks while Keystone answers (cached)."""
        environ = _probe_environ(headers)
        found: list[Identity] = []
        environ[_PROBE] = found
        status: list[str] = []

        def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            status.append(line)

        try:
            body = self._protocol(environ, start_response)
            for _ in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        except Exception:
            LOG.exception("token validation failed unexpectedly")
            raise AuthenticationFailed(500) from None
        if found:
            return found[0]
        code = int(status[-1].split(" ", 1)[0]) if status else 500
        raise AuthenticationFailed(code if code >= 400 else 401)
