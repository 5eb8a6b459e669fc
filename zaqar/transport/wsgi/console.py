"""The browser console and the JavaScript client, served by the HTTP app itself.

Served from the falcon app (not by ``zaqar-server``) so that every WSGI
server running the app serves them too. Routes, under ``path`` (default
``/console``):

* ``{path}/``: the console page; ``{path}`` redirects there, so relative asset URLs resolve;
* ``{path}/config.json``: what the page cannot know by itself, above all the
  websocket URL. The HTTP app knows it from configuration: ``websocket_url``
  when set, else the websocket transport's address, with the host the browser
  used when that address is a wildcard. ``null`` when no websocket transport
  runs, or when it listens on loopback only and the browser is elsewhere (the
  page then uses HTTP rather than a URL it cannot open);
* ``{path}/{file}`` and ``{path}/client/{file}``: the page's assets and the
  client library (``zaqar/static/``), so pages elsewhere can import
  ``{path}/client/zaqar.js`` too.

Assets are read from the package on each request (they are a few KB, and an
editable install then serves edits at once), with an ETag so browsers
revalidate cheaply. Only files present in those two folders are served.

None of these routes needs a token, also with ``auth_strategy = keystone``
(``outside_auth``): they are static files and settings a page could read from
its own source, and neither a page load nor a module import can send one. The
page's calls to the API carry the token; every ``/v2`` route stays behind it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from importlib.resources.abc import Traversable
from typing import Any

import falcon

import zaqar

STATIC = importlib.resources.files("zaqar") / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
# The page loads only its own scripts and styles; it talks to the API and the websocket anywhere.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss: http: https:; frame-ancestors 'none'; base-uri 'none'")


@dataclasses.dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """What the console routes need from configuration (the ``[console]`` group and the transports).

    ``websocket_url``: given by the operator, used as is. Otherwise, when
    ``websocket_port`` is set (the websocket transport runs), the URL is built
    from ``websocket_host`` (its bind address; None for a wildcard bind,
    meaning the host the browser asked for). ``poll_interval`` (seconds) is
    how often the page polls a watched queue when it has to use HTTP.
    """

    path: str = "/console"
    websocket_url: str | None = None
    websocket_host: str | None = None
    websocket_port: int | None = None
    poll_interval: float = 2.0

    def __post_init__(self) -> None:
        path = self.path.rstrip("/")
        if not path.startswith("/") or path == "" or path == "/v2" or path.startswith("/v2/"):
            raise ValueError(f"[console] path must start with / and lie outside /v2, got {self.path!r}")


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def websocket_url(settings: ConsoleSettings, request_host: str) -> str | None:
    """The URL the page should open, as seen from the browser that asked; None when it cannot open one.

    A websocket transport bound to a loopback address is out of reach of a
    browser on another machine, which the page's host (``request_host``, the
    HTTP ``Host``) being no loopback name says (review 7 #2).
    """
    if settings.websocket_url:
        return settings.websocket_url
    if settings.websocket_port is None:
        return None
    bound = settings.websocket_host
    if bound is not None and is_loopback(bound) and not is_loopback(request_host):
        return None
    host = bound or request_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    return f"ws://{host}:{settings.websocket_port}/"


def _send_file(req: falcon.Request, resp: falcon.Response, file: Traversable) -> None:
    data = file.read_bytes()
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    resp.set_header("ETag", etag)
    resp.set_header("Cache-Control", "no-cache")
    resp.set_header("X-Content-Type-Options", "nosniff")
    if req.get_header("If-None-Match") == etag:
        resp.status = falcon.HTTP_304
        return
    resp.content_type = _TYPES.get("." + file.name.rpartition(".")[2], "application/octet-stream")
    resp.data = data


class _Folder:
    """GET/HEAD of the files directly inside one static folder."""

    def __init__(self, folder: Traversable) -> None:
        self._folder = folder

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        file = self._folder / name
        if not _NAME.match(name) or not file.is_file():
            raise falcon.HTTPNotFound()
        _send_file(req, resp, file)

    on_head = on_get


class _Page:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send_file(req, resp, STATIC / "console" / "index.html")
        resp.set_header("Content-Security-Policy", _CSP)
        resp.set_header("Referrer-Policy", "no-referrer")

    on_head = on_get


class _Redirect:
    def __init__(self, target: str) -> None:
        self._target = target

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # The page reads its settings from the query (?project=, ?ws=...): keep them (review 7 #12).
        query = req.query_string
        raise falcon.HTTPMovedPermanently(self._target + (f"?{query}" if query else ""))

    on_head = on_get


class _Config:
    def __init__(self, settings: ConsoleSettings) -> None:
        self._settings = settings

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "application/json"
        resp.set_header("Cache-Control", "no-store")
        resp.data = json.dumps({
            "websocket_url": websocket_url(self._settings, req.host),
            "poll_interval": self._settings.poll_interval,
            "version": zaqar.__version__,
        }).encode()


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_FILE = _NAME.pattern.strip("^$")


def outside_auth(settings: ConsoleSettings, app: WsgiApp, protected: WsgiApp) -> WsgiApp:
    """``protected`` (``app`` behind token validation), except that the console's routes go to ``app``.

    Only paths the console serves are let through, matched exactly: the page,
    its redirect, ``config.json`` and file names that cannot climb out of their
    folder (no ``..``); anything else, ``/v2`` first, meets the token check.
    """
    base = re.escape(settings.path.rstrip("/"))
    console = re.compile(rf"{base}(?:/|/config\.json|/(?:client/)?{_FILE})?")

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = app if console.fullmatch(environ.get("PATH_INFO") or "") else protected
        return target(environ, start_response)

    return route


def add_routes(app: falcon.App, settings: ConsoleSettings) -> None:
    """Serve the console and the client library under ``settings.path``."""
    base = settings.path.rstrip("/")
    app.add_route(base, _Redirect(base + "/"))
    app.add_route(base + "/", _Page())
    app.add_route(base + "/config.json", _Config(settings))
    app.add_route(base + "/{name}", _Folder(STATIC / "console"))
    app.add_route(base + "/client/{name}", _Folder(STATIC / "client"))
