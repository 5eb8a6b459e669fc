"""A small Keystone v3 identity endpoint on 127.0.0.1, for the auth tests.

Just what keystonemiddleware uses: version discovery (``/`` and ``/v3``), a
password login of the service user (``POST /v3/auth/tokens``, answered with a
catalog naming this endpoint) and token validation (``GET /v3/auth/tokens``
with ``X-Subject-Token``, authorised by a service token). Tests issue user
tokens by hand (``issue``): any project, any roles, any lifetime, also
unscoped or domain-scoped ones (``issue(None)``), and ``forget`` makes one
unknown. As the real service does, an expired or unknown token validates as
404, which the middleware turns into 401. ``delay`` slows every validation
down (a loaded Keystone); ``most_at_once`` is the most validations that were
in flight together.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import threading
import time
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SERVICE_USER, SERVICE_PASSWORD, SERVICE_PROJECT = "zaqar", "service-secret", "service"
_DOMAIN = {"id": "default", "name": "Default"}


@dataclasses.dataclass(frozen=True)
class Token:
    project: str | None  # None: unscoped, or scoped to ``domain``
    roles: tuple[str, ...]
    issued: float
    expires: float
    user: str
    domain: bool = False


def _stamp(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeKeystone:
    """Start with ``with FakeKeystone() as keystone``; ``options`` is the ``[keystone_authtoken]`` group."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()
        self.validations = 0  # GET /v3/auth/tokens answered, valid or not
        self.delay = 0.0  # seconds every validation takes
        self.in_flight = self.most_at_once = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.keystone = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-keystone", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def options(self) -> dict[str, str]:
        return {
            "www_authenticate_uri": self.url + "/v3",
            "auth_url": self.url + "/v3",
            "auth_type": "password",
            "username": SERVICE_USER,
            "password": SERVICE_PASSWORD,
            "project_name": SERVICE_PROJECT,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
            "http_connect_timeout": "5",
        }

    def __enter__(self) -> FakeKeystone:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what tests use ----------------------------------------------------------------------
    def issue(self, project: str | None, roles: Iterable[str] = ("member",), lifetime: float = 3600.0,
              user: str = "alice", domain: bool = False) -> str:
        """A new token id; a negative ``lifetime`` gives one that has already expired.

        ``project`` None: a token of no project, unscoped or (``domain``) scoped to the domain.
        """
        token_id = uuid.uuid4().hex
        now = time.time()
        with self._lock:
            self._tokens[token_id] = Token(project, tuple(roles), now, now + lifetime, user, domain)
        return token_id

    def forget(self, token_id: str) -> None:
        with self._lock:
            self._tokens.pop(token_id, None)

    # -- the handler's side --------------------------------------------------------------------
    def live(self, token_id: str | None) -> Token | None:
        with self._lock:
            token = self._tokens.get(token_id or "")
        return token if token is not None and token.expires > time.time() else None

    def body(self, token: Token, catalog: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "methods": ["password"],
            "audit_ids": [uuid.uuid4().hex[:22]],
            "issued_at": _stamp(token.issued),
            "expires_at": _stamp(token.expires),
            "is_domain": False,
            "user": {"id": f"id-{token.user}", "name": token.user, "domain": _DOMAIN,
                     "password_expires_at": None},
            "project": {"id": token.project, "name": f"name-{token.project}", "domain": _DOMAIN},
            "roles": [{"id": f"id-{role}", "name": role} for role in token.roles],
        }
        if token.project is None:  # as Keystone shapes them: no project; roles only with a scope
            del data["project"]
            if token.domain:
                data["domain"] = _DOMAIN
            else:
                del data["roles"]
        if catalog:
            data["catalog"] = [{
                "id": "identity", "type": "identity", "name": "keystone",
                "endpoints": [{"id": f"identity-{interface}", "interface": interface, "region": "RegionOne",
                               "region_id": "RegionOne", "url": self.url + "/v3"}
                              for interface in ("public", "internal", "admin")],
            }]
        return {"token": data}

    def version(self) -> dict[str, Any]:
        return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": self.url + "/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v3+json"}]}

    def login(self, document: Any) -> str | None:
        """The service user's password login; the new token id, None for bad credentials."""
        try:
            user = document["auth"]["identity"]["password"]["user"]
        except (KeyError, TypeError):
            return None
        if user.get("name") != SERVICE_USER or user.get("password") != SERVICE_PASSWORD:
            return None
        return self.issue(SERVICE_PROJECT, ("service", "admin"), user=SERVICE_USER)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def keystone(self) -> FakeKeystone:
        return self.server.keystone  # type: ignore[attr-defined]

    def _send(self, status: int, document: Any = None, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(document).encode() if document is not None else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, title: str) -> None:
        self._send(status, {"error": {"code": status, "title": title, "message": title}})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path, _, query = self.path.partition("?")
        if path == "/":
            self._send(300, {"versions": {"values": [self.keystone.version()]}})
        elif path.rstrip("/") == "/v3":
            self._send(200, {"version": self.keystone.version()})
        elif path == "/v3/auth/tokens":
            self._validate("nocatalog" not in query)
        else:
            self._error(404, "Not Found")

    def _validate(self, catalog: bool) -> None:
        keystone = self.keystone
        with keystone._lock:
            keystone.validations += 1
            keystone.in_flight += 1
            keystone.most_at_once = max(keystone.most_at_once, keystone.in_flight)
        try:
            time.sleep(keystone.delay)
            self._answer_validation(catalog)
        finally:
            with keystone._lock:
                keystone.in_flight -= 1

    def _answer_validation(self, catalog: bool) -> None:
        keystone = self.keystone
        service = keystone.live(self.headers.get("X-Auth-Token"))
        if service is None or service.user != SERVICE_USER:
            self._error(401, "Unauthorized")
            return
        subject = self.headers.get("X-Subject-Token")
        token = keystone.live(subject)
        if token is None:
            self._error(404, "Could not find token")
            return
        self._send(200, keystone.body(token, catalog), {"X-Subject-Token": subject or ""})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.partition("?")[0] != "/v3/auth/tokens":
            self._error(404, "Not Found")
            return
        try:
            document = json.loads(raw)
        except ValueError:
            self._error(400, "Bad Request")
            return
        token_id = self.keystone.login(document)
        if token_id is None:
            self._error(401, "Unauthorized")
            return
        token = self.keystone.live(token_id)
        assert token is not None
        self._send(201, self.keystone.body(token, True), {"X-Subject-Token": token_id})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass
