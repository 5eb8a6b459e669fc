"""CORS for the HTTP API, so pages from other origins can use it (http-v2.md §0.9).

Follows oslo.middleware's CORS filter, which upstream Zaqar wraps its app
in, with the defaults widened so a browser client works without extra
configuration: ``X-Project-ID``, ``Content-Type`` and the pre-signed URL
headers are allowed, ``Location`` is exposed (claim ids come from it).

Off unless origins are configured. With it on:

* a pre-flight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
  is answered here, before the ``Client-ID`` and project checks, because
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
from typing import Any

import falcon

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


class CorsMiddleware:
    """Falcon middleware applying ``CorsSettings``; install it only when they are enabled."""

    def __init__(self, settings: CorsSettings) -> None:
        self._settings = settings
        self._any = "*" in settings.allowed_origins
        self._origins = frozenset(_origin_key(o) for o in settings.allowed_origins)
        self._methods = frozenset(m.upper() for m in settings.allow_methods)
        self._headers = frozenset(h.lower() for h in settings.allow_headers) | _SAFELISTED

    def _allowed(self, origin: str | None) -> bool:
        return origin is not None and (self._any or _origin_key(origin) in self._origins)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer pre-flights here, before routing and before any header check."""
        origin = req.get_header("Origin")
        method = req.get_header("Access-Control-Request-Method")
        if req.method != "OPTIONS" or origin is None or method is None:
            return
        req.context.cors_preflight = True
        resp.status = falcon.HTTP_200
        resp.data = b""
        resp.complete = True
        requested = [h.strip() for h in (req.get_header("Access-Control-Request-Headers") or "").split(",")]
        requested = [h for h in requested if h]
        if not self._allowed(origin) or method.upper() not in self._methods:
            return
        if any(h.lower() not in self._headers for h in requested):
            return
        self._allow(resp, origin)
        resp.set_header("Access-Control-Allow-Methods", method.upper())
        if requested:
            resp.set_header("Access-Control-Allow-Headers", ", ".join(requested))
        if self._settings.max_age is not None:
            resp.set_header("Access-Control-Max-Age", str(self._settings.max_age))

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        # NOTE: Vary on every response: a cache must not hand one origin's answer to another.
        resp.append_header("Vary", "Origin")
        if req.context.get("cors_preflight"):
            return
        origin = req.get_header("Origin")
        if not self._allowed(origin):
            return
        assert origin is not None
        self._allow(resp, origin)
        if self._settings.expose_headers:
            resp.set_header("Access-Control-Expose-Headers", ", ".join(self._settings.expose_headers))

    def _allow(self, resp: falcon.Response, origin: str) -> None:
        resp.set_header("Access-Control-Allow-Origin", origin)
        if self._settings.allow_credentials:
            resp.set_header("Access-Control-Allow-Credentials", "true")
