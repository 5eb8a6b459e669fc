"""CORS for the HTTP API, so pages from other origins can use it (http-v2.md §0.9).

Follows oslo.middleware's CORS filter, which upstream Zaqar wraps its app
in, with the defaults widened so a browser client works without extra
configuration: ``X-Project-ID``, ``Content-Type`` and the pre-signed URL
headers are allowed, ``Location`` is exposed (claim ids come from it).

A WSGI middleware, the outermost layer of the HTTP app, so that it also
covers what answers before the API does: with ``auth_strategy = keystone``
keystonemiddleware's 401 reaches a page of another origin as a 401 it can
read, not as a network error. Off unless origins are configured. With it on:

* a pre-flight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
  is answered here, before the token, ``Client-ID`` and project checks, because
  browsers send no custom headers on pre-flights. It is 200 either way; the
  CORS headers are there only when the origin, the method and every requested
  header are allowed, so the browser refuses everything else;
* any other request from an allowed origin gets ``Access-Control-Allow-Origin``
  (the origin itself, never ``*``, so credentials stay possible) and the
  exposed headers, on errors too, so pages can read error bodies;
* a disallowed origin gets no CORS header at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

ALLOW_HEADERS = (
    # upstream's defaults
    "X-Auth-Token", "X-Identity-Status", "X-Roles", "X-Service-Catalog", "X-User-Id", "X-Tenant-Id",
    "X-OpenStack-Request-ID", "X-Trace-Info", "X-Trace-HMAC", "Client-id",
    # what a browser client needs besides (http-v2.md §0.9 [N])
    "X-Project-ID", "Content-Type", "URL-Signature", "URL-Expires", "URL-Methods", "URL-Paths",
)
EXPOSE_HEADERS = ("X-Auth-Token", "X-Subject-Token", "X-Service-Token", "X-OpenStack-Request-ID", "Location")
ALLOW_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD")

# Request headers a browser may send without asking (the Fetch standard's CORS-safelisted names).
_SAFELISTED = frozenset({"accept", "accept-language", "content-language"})


@dataclasses.dataclass(frozen=True, slots=True)
class CorsSettings:
    """The ``[cors]`` group, with oslo.middleware's option names.

    ``allowed_origins`` are full origins (``https://dash.example.com:8443``) or
    ``*`` for any; empty turns CORS off. ``max_age`` is how long (seconds) a
    browser may cache a pre-flight answer; None sends no ``Access-Control-Max-Age``.
    """

    allowed_origins: tuple[str, ...] = ()
    allow_credentials: bool = True
    expose_headers: tuple[str, ...] = EXPOSE_HEADERS
    max_age: int | None = 3600
    allow_methods: tuple[str, ...] = ALLOW_METHODS
    allow_headers: tuple[str, ...] = ALLOW_HEADERS

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_origins)


def _origin_key(origin: str) -> str:
    # Scheme and host are case-insensitive; a configured trailing slash is a common slip.
    return origin.strip().rstrip("/").lower()


def _with_vary_origin(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` with ``Origin`` added to ``Vary``: a cache must not hand one origin's answer to another."""
    for index, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            headers[index] = (name, f"{value}, Origin" if value.strip() else "Origin")
            return headers
    headers.append(("Vary", "Origin"))
    return headers


class CorsMiddleware:
    """``app`` with ``settings`` applied; wrap with it only when they are enabled.

    ``request_id`` makes the ``X-OpenStack-Request-ID`` of the pre-flight answers
    given here, which the app behind never sees (http-v2.md §0.4: every response has one).
    """

    def __init__(self, app: WsgiApp, settings: CorsSettings, request_id: Callable[[], str]) -> None:
        self._app, self._settings, self._request_id = app, settings, request_id
        self._any = "*" in settings.allowed_origins
        self._origins = frozenset(_origin_key(o) for o in settings.allowed_origins)
        self._methods = frozenset(m.upper() for m in settings.allow_methods)
        self._headers = frozenset(h.lower() for h in settings.allow_headers) | _SAFELISTED
        allowed = [] if not settings.allow_credentials else [("Access-Control-Allow-Credentials", "true")]
        self._credentials = allowed
        exposed = ", ".join(settings.expose_headers)
        self._exposed = [("Access-Control-Expose-Headers", exposed)] if exposed else []

    def _allowed(self, origin: str | None) -> bool:
        return origin is not None and (self._any or _origin_key(origin) in self._origins)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        origin = environ.get("HTTP_ORIGIN")
        method = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
        if environ.get("REQUEST_METHOD") == "OPTIONS" and origin is not None and method is not None:
            return self._preflight(environ, origin, method, start_response)
        extra = [("Access-Control-Allow-Origin", origin), *self._credentials, *self._exposed] \
            if self._allowed(origin) and origin is not None else []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, _with_vary_origin([*headers, *extra]), exc_info)

        return self._app(environ, start)

    def _preflight(self, environ: dict[str, Any], origin: str, method: str,
                   start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answer a pre-flight here, before routing and before any credential or header check."""
        headers = [("Content-Type", "application/json"), ("Content-Length", "0"),
                   ("X-OpenStack-Request-ID", self._request_id())]
        requested = [h.strip() for h in (environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS") or "").split(",")]
        requested = [h for h in requested if h]
        if (self._allowed(origin) and method.upper() in self._methods
                and all(h.lower() in self._headers for h in requested)):
            headers += [("Access-Control-Allow-Origin", origin), *self._credentials,
                        ("Access-Control-Allow-Methods", method.upper())]
            if requested:
                headers.append(("Access-Control-Allow-Headers", ", ".join(requested)))
            if self._settings.max_age is not None:
                headers.append(("Access-Control-Max-Age", str(self._settings.max_age)))
        start_response("200 OK", _with_vary_origin(headers))
        return [b""]
