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

Both also keep unauthenticated clients from starving authenticated ones. A
token that does not look like one (anything but 1 to 8192 visible ASCII
characters) is dropped before the middleware sees it, so it is refused (401)
without a round trip to Keystone. A token not seen valid in the last few
minutes costs a Keystone round trip on the worker thread that carries it; at
most ``max_pending`` such validations run at once per transport
(``MAX_PENDING``; a transport on SQLite or Redis runs that many more workers), and
one more is refused at once with 503, so the other workers keep serving the
tokens that validated lately (answered from keystonemiddleware's cache).

HTTP errors of the middleware itself (401 for a bad token, 503 while Keystone
is unreachable, which webob renders as HTML) are answered in the contract's
shape instead: ``{"title", "description"}`` JSON (limits-and-errors.md §5),
with the middleware's other headers (``WWW-Authenticate``) kept.

The middleware itself is built by ``zaqar.bootstrap`` from ``[keystone_authtoken]``;
this module only needs it as a WSGI middleware factory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http
import io
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

LOG = logging.getLogger("zaqar.transport.auth")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
MiddlewareFactory = Callable[[WsgiApp], WsgiApp]

_NEXT = "zaqar.auth.next"  # the app behind the middleware for this request; absent for a probe
_PROBE = "zaqar.auth.probe"  # where a websocket authentication collects the identity
_SLOT = "zaqar.auth.slot"  # the pending-validation slot this request holds, until validation ends
_LEARN = "zaqar.auth.learn"  # the fingerprint of a token to remember once it validated
_REACHED = "zaqar.auth.reached"  # set once validation let the request through to the app

# Validations of tokens not seen valid lately running at once, per transport; more are refused with 503.
# NOTE: each holds a worker thread; bootstrap.worker_threads adds as many to its default.
MAX_PENDING = 2
# Tokens remembered as valid (fingerprints), and for how long: keystonemiddleware's default cache time.
KNOWN_TOKENS = 10_000
KNOWN_FOR = 300.0
# What a token can look like: Keystone's are hex (UUID), URL-safe base64 (Fernet) or JWS, all far shorter.
_TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")
_TOKEN_HEADERS = ("HTTP_X_AUTH_TOKEN", "HTTP_X_SERVICE_TOKEN")
# keystonemiddleware also reads X-Storage-Token as the user token when X-Auth-Token is absent: a
# Keystone round trip the rationing below would not see. Zaqar's clients send X-Auth-Token only.
_DROPPED_HEADERS = ("HTTP_X_STORAGE_TOKEN",)
_MIDDLEWARE_ERRORS = {
    401: ("Unauthorized", "The request you have made requires authentication."),
    503: ("Service temporarily unavailable",
          "The identity service could not check the token. Please try again in a few seconds."),
}
_BUSY = ("Service temporarily unavailable",
         "Too many tokens are being checked at once. Please try again in a few seconds.")


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


def _drop_odd_tokens(environ: dict[str, Any]) -> list[str]:
    """Remove token headers that cannot be tokens, and X-Storage-Token; the tokens left (user, service).

    # NOTE: a newline or a non-Latin-1 character in a token made the middleware's
    # request to Keystone raise (500 and a traceback, review 8 #4); without a
    # token the middleware answers 401 at once.
    """
    for name in _DROPPED_HEADERS:
        environ.pop(name, None)
    tokens = []
    for name in _TOKEN_HEADERS:
        value = environ.get(name)
        if value is None:
            continue
        value = value.strip(" \t") if isinstance(value, str) else ""  # as an HTTP server strips a value
        if _TOKEN.fullmatch(value):
            environ[name] = value
            tokens.append(value)
        else:
            del environ[name]
    return tokens


def _fingerprint(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


class _Slot:
    """One of the pending-validation slots, released once (whichever of two places gets there first)."""

    __slots__ = ("_semaphore",)

    def __init__(self, semaphore: threading.Semaphore) -> None:
        self._semaphore: threading.Semaphore | None = semaphore

    def release(self) -> None:
        semaphore, self._semaphore = self._semaphore, None
        if semaphore is not None:
            semaphore.release()


def _release_slot(environ: dict[str, Any]) -> None:
    """Give back the pending-validation slot the request holds, if any (at most once)."""
    slot = environ.pop(_SLOT, None)
    if slot is not None:
        slot.release()


def _json_error(start_response: Callable[..., Any], status: int, title: str, description: str,
                headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    body = json.dumps({"title": title, "description": description}).encode()
    kept = [(k, v) for k, v in headers if k.lower() not in ("content-type", "content-length")]
    if status == 503:
        kept.append(("Retry-After", "5"))
    start_response(f"{status} {http.HTTPStatus(status).phrase}",
                   [*kept, ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class KeystoneAuth:
    """One keystonemiddleware instance serving both transports.

    ``max_pending``: validations of tokens not seen valid lately that may run at
    once on each transport (HTTP requests through ``wrap``, websocket
    ``authenticate``), each holding one of its worker threads while Keystone
    answers; ``known``: how many tokens seen valid are remembered (fingerprints
    only), each for at most ``KNOWN_FOR`` seconds and never past its expiry.
    """

    def __init__(self, middleware: MiddlewareFactory, max_pending: int = MAX_PENDING,
                 known: int = KNOWN_TOKENS) -> None:
        self._protocol = middleware(self._downstream)
        self._max_pending = max_pending
        self._pending = threading.BoundedSemaphore(max_pending)  # websocket authentications
        self._known: dict[bytes, float] = {}  # fingerprint -> time.time() it is remembered until
        self._known_max = known
        self._known_lock = threading.Lock()

    # -- tokens seen valid lately ---------------------------------------------------------------
    def _is_known(self, key: bytes) -> bool:
        until = self._known.get(key)
        return until is not None and until > time.time()

    def _remember(self, key: bytes, expires: float | None) -> None:
        until = time.time() + KNOWN_FOR
        if expires is not None:
            until = min(until, expires)
        with self._known_lock:
            known = self._known
            known.pop(key, None)
            while len(known) >= self._known_max:  # the oldest first: it costs them one validation
                del known[next(iter(known))]
            known[key] = until

    def _admit(self, environ: dict[str, Any], pending: threading.Semaphore) -> bool:
        """Let a request validate its token now, holding a slot if it is not known; False: too many."""
        # NOTE: the service token counts too: keystonemiddleware validates it first, with its own
        # round trip. With no token left the middleware refuses at once, without asking Keystone.
        unknown = [key for key in map(_fingerprint, _drop_odd_tokens(environ)) if not self._is_known(key)]
        if not unknown:
            return True
        if not pending.acquire(blocking=False):
            return False
        environ[_SLOT], environ[_LEARN] = _Slot(pending), unknown
        return True

    # -- the middleware's downstream ------------------------------------------------------------
    def _downstream(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        _release_slot(environ)  # validation is over: the app's own work holds no slot
        environ[_REACHED] = True
        identity = None
        keys = environ.pop(_LEARN, None)
        probe = environ.get(_PROBE)
        if keys is not None or probe is not None:
            identity = token_identity(environ)
            # NOTE: reaching here, every token the request carried validated; the user token's
            # expiry bounds them all (knowing one only spares it the rationing, never the check).
            for key in keys if identity is not None and keys is not None else ():
                self._remember(key, identity.expires)
        app = environ.pop(_NEXT, None)
        if app is not None:
            return app(environ, start_response)
        if probe is not None and identity is not None:  # a websocket authentication: only the identity
            probe.append(identity)
        start_response("204 No Content", [])
        return []

    def wrap(self, app: WsgiApp) -> WsgiApp:
        """``app`` behind token validation, except for what must reach it without a token."""
        pending = threading.BoundedSemaphore(self._max_pending)  # this HTTP transport's

        def gate(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if (environ.get("PATH_INFO") == "/" or "HTTP_URL_SIGNATURE" in environ
                    or _is_preflight(environ)):
                return app(environ, start_response)
            if not self._admit(environ, pending):
                return _json_error(start_response, 503, *_BUSY)
            environ[_NEXT] = app
            try:
                return self._validated(environ, start_response)
            finally:
                _release_slot(environ)

        return gate

    def _validated(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The middleware's answer, its own errors in the contract's shape (limits-and-errors.md §5)."""
        refused: list[tuple[str, list[tuple[str, str]]]] = []

        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if environ.get(_REACHED) or status[:1] not in ("4", "5"):
                return start_response(status, headers, exc_info)
            refused.append((status, headers))  # the middleware's own: answered below, as JSON
            return lambda data: None

        body = self._protocol(environ, respond)
        if not refused:
            return body
        close = getattr(body, "close", None)
        if close is not None:
            close()
        status, headers = refused[-1]
        code = int(status[:3])
        title, description = _MIDDLEWARE_ERRORS.get(code, (http.HTTPStatus(code).phrase, status[4:]))
        return _json_error(start_response, code, title, description, headers)

    def authenticate(self, headers: Mapping[str, Any]) -> Identity:
        """Validate the ``X-Auth-Token`` among ``headers``; blocks while Keystone answers (cached)."""
        environ = _probe_environ(headers)
        if not self._admit(environ, self._pending):
            raise AuthenticationFailed(503)
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
        finally:
            _release_slot(environ)
        if found:
            return found[0]
        code = int(status[-1].split(" ", 1)[0]) if status else 500
        raise AuthenticationFailed(code if code >= 400 else 401)
