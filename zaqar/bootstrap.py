"""Wiring: configuration → settings → storage → one Api → every transport.

The only module besides ``zaqar.conf`` that reads oslo.config; components
get plain settings, and every transport gets the same ``Api``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
import urllib.parse
from typing import Any

from oslo_config import cfg

from zaqar import storage
from zaqar.api import Api, Context, Features, Limits
from zaqar.api.ratelimit import RateLimiter, RateLimitSettings
from zaqar.conf import policy
from zaqar.notification import Notifier
from zaqar.notification.confirmation import Signer
from zaqar.notification.mail import Mailer
from zaqar.storage import pooling
from zaqar.storage.base import DataDriver
from zaqar.storage.control import ControlDriver
from zaqar.transport import websocket, wsgi
from zaqar.transport.auth import MAX_PENDING, KeystoneAuth, MiddlewareFactory
from zaqar.transport.reactor import MAX_LINGERING_REFUSALS, raise_open_files_limit
from zaqar.transport.wsgi.app import request_id
from zaqar.transport.wsgi.console import ConsoleSettings, is_loopback, outside_auth
from zaqar.transport.wsgi.cors import CorsMiddleware, CorsSettings

LOG = logging.getLogger(__name__)

VIRTUAL_POOL = "default"


def limits_from(conf: cfg.ConfigOpts) -> Limits:
    values = {f.name: conf.transport[f.name] for f in dataclasses.fields(Limits)}
    values["subscriber_types"] = tuple(values["subscriber_types"])
    return Limits(**values)


def features_from(conf: cfg.ConfigOpts) -> Features:
    return Features(admin_mode=conf.admin_mode, pooling=conf.pooling, enable_checksum=conf.enable_checksum)


def _store_uri(conf: cfg.ConfigOpts, kind: str, sqlite_file: str) -> str:
    name = conf.drivers[kind]
    group = f"drivers:{kind}:{name}"
    uri = conf[group].uri if group in conf else None
    if uri:
        return str(uri)
    if name == "sqlite":
        return f"sqlite:///{os.path.abspath(os.path.join(conf.state_path, sqlite_file))}"
    raise storage.InvalidDriver(f"[{group}] uri is required for the {name} {kind.replace('_', ' ')}")


def message_store_uri(conf: cfg.ConfigOpts) -> str:
    return _store_uri(conf, "message_store", "zaqar.sqlite")


def management_store_uri(conf: cfg.ConfigOpts) -> str:
    return _store_uri(conf, "management_store", "zaqar-management.sqlite")


def build_store(conf: cfg.ConfigOpts) -> DataDriver:
    """The single message store, or with ``pooling`` the pooled store over the registered pools."""
    if not conf.pooling:
        return storage.load_data_driver(conf.drivers.message_store, message_store_uri(conf))
    control = storage.load_control_driver(conf.drivers.management_store, management_store_uri(conf))
    adopt_from = None
    if conf["pooling:catalog"].enable_virtual_pool:
        adopt_from = register_virtual_pool(control, message_store_uri(conf))
    return pooling.DataDriver(control, adopt_from=adopt_from)


def register_virtual_pool(control: ControlDriver, uri: str) -> str | None:
    """Make the configured message store a pool, so a pooled deployment starts with one command.

    Registered once (name ``default``, weight 100); a pool already holding the
    URI, or an operator's own pool named ``default``, is left as it is.
    Returns the name of the pool holding the message store, whose queues from
    before pooling are then adopted on first use; None when it is not a pool.
    """
    pools = control.pools.all()
    holder = next((p.name for p in pools if p.uri == uri), None)
    if holder is not None:
        return holder
    if any(p.name == VIRTUAL_POOL for p in pools):
        LOG.warning("pool %r exists with another URI; the message store is not registered as a pool",
                    VIRTUAL_POOL)
        return None
    control.pools.create(VIRTUAL_POOL, uri, 100)
    LOG.info("registered the message store as pool %r", VIRTUAL_POOL)
    return VIRTUAL_POOL


def build_notifier(conf: cfg.ConfigOpts, store: DataDriver) -> Notifier:
    group = conf.notification
    key = conf.signed_url.secret_key
    return Notifier(
        store,
        workers=group.max_notifier_workers,
        timeout=group.webhook_timeout,
        require_confirmation=group.require_confirmation,
        signer=Signer(key, conf.transport.default_subscription_ttl) if key else None,
        mailer=Mailer(group.smtp_host, group.smtp_port, group.sender),
    )


def build_api(conf: cfg.ConfigOpts, store: DataDriver | None = None) -> Api:
    store = store if store is not None else build_store(conf)
    pooled = store if isinstance(store, pooling.DataDriver) else None
    ctx = Context(
        store=store,
        notifier=build_notifier(conf, store),
        limits=limits_from(conf),
        features=features_from(conf),
        authorize=policy.authorizer(conf),
        control=pooled.control if pooled is not None else None,
        pool_store=pooled.pool_store if pooled is not None else None,
        signed_url_key=conf.signed_url.secret_key or None,
        rate_limiter=rate_limiter(conf),
    )
    return Api(ctx)


AUTH_STRATEGIES = ("", "keystone")
# id(conf) -> (conf, its authenticator); holding conf keeps its id from being reused. A process
# builds one configuration, so this holds one entry (a few in tests).
_AUTHENTICATORS: dict[int, tuple[cfg.ConfigOpts, KeystoneAuth]] = {}


def _keystone_middleware(conf: cfg.ConfigOpts) -> MiddlewareFactory:
    """keystonemiddleware's AuthProtocol, reading ``[keystone_authtoken]`` from ``conf`` itself."""
    try:
        from keystonemiddleware import auth_token
    except ImportError as exc:
        raise RuntimeError("auth_strategy = keystone needs keystonemiddleware: "
                           "pip install 'zaqar[keystone]'") from exc
    return lambda app: auth_token.AuthProtocol(app, {"oslo_config_config": conf})


def authenticator(conf: cfg.ConfigOpts) -> KeystoneAuth | None:
    """The auth strategy of ``[DEFAULT] auth_strategy``; None for none.

    One per configuration, so both transports of a process share one
    keystonemiddleware instance: one service session and one token cache.
    """
    strategy = conf.auth_strategy
    if strategy not in AUTH_STRATEGIES:
        raise ValueError(f"[DEFAULT] auth_strategy must be '' or 'keystone', not {strategy!r}")
    if not strategy:
        return None
    entry = _AUTHENTICATORS.get(id(conf))
    if entry is None:
        entry = _AUTHENTICATORS[id(conf)] = (conf, KeystoneAuth(_keystone_middleware(conf)))
    return entry[1]


def build_wsgi_app(conf: cfg.ConfigOpts, api: Api, *, own_server: bool = True) -> Any:
    """The WSGI app of the HTTP transport, configured for this deployment.

    Every HTTP server runs this same app: the built-in one and, for
    production, uwsgi or gunicorn through ``zaqar.transport.wsgi.application``
    (``own_server=False``: the server is not zaqar-server's, so its bind address
    is unknown here). Layers, outermost first: CORS, so that every answer
    carries its headers, keystonemiddleware's 401 too; token validation, which
    the console's static routes bypass; the falcon app.
    """
    keystone = authenticator(conf)
    console = console_settings(conf, own_server=own_server)
    app = falcon_app = wsgi.build_app(api, console=console, token_auth=keystone is not None)
    if keystone is not None:
        app = keystone.wrap(falcon_app)
        if console is not None:
            app = outside_auth(console, falcon_app, app)
    cors = cors_settings(conf)
    return CorsMiddleware(app, cors, request_id) if cors.enabled else app


def cors_settings(conf: cfg.ConfigOpts) -> CorsSettings:
    group = conf.cors
    return CorsSettings(
        allowed_origins=tuple(group.allowed_origin or ()),
        allow_credentials=group.allow_credentials,
        expose_headers=tuple(group.expose_headers or ()),
        max_age=group.max_age,
        allow_methods=tuple(group.allow_methods or ()),
        allow_headers=tuple(group.allow_headers or ()),
    )


def console_settings(conf: cfg.ConfigOpts, *, own_server: bool = True) -> ConsoleSettings | None:
    """The console's settings, or None when it is off.

    Unless ``[console] enabled`` says otherwise, it is on only when
    zaqar-server's own HTTP server binds a loopback address: the page has no
    login of its own. Under another WSGI server (``own_server=False``: uwsgi,
    gunicorn, waitress) the address is unknown here, so it is on only when
    enabled explicitly (review 7 #2).
    """
    group = conf.console
    enabled = group.enabled
    if enabled is None:
        enabled = own_server and is_loopback(conf["drivers:transport:wsgi"].bind)
    if not enabled:
        return None
    ws = conf["drivers:transport:websocket"]
    serving_ws = "websocket" in conf.drivers.transport
    return ConsoleSettings(
        path=group.path,
        websocket_url=group.websocket_url or None,
        websocket_host=None if ws.bind in ("0.0.0.0", "::", "") else ws.bind,
        websocket_port=ws.port if serving_ws else None,
        poll_interval=group.poll_interval,
    )


# Worker threads per transport when the configuration says 0, by how long a store call waits.
LOCAL_STORE_THREADS = 2  # SQLite: calls never leave the machine
QUICK_STORE_THREADS = 4  # Redis: one round trip, usually to another host in production
WAITING_STORE_THREADS = 16  # PostgreSQL, and pools (which may be anywhere): many round trips


def store_threads(message_store: str, *, pooling: bool = False, keystone: bool = False) -> int:
    """The workers a transport runs on ``message_store`` when its configuration says 0.

    # PERF: a process runs Python on one core at a time (the GIL), so a thread
    # more only pays while the others wait, and every runnable thread more
    # contends for the GIL. On SQLite, where nothing waits but for the write
    # lock (whose busy handler sleeps 1, 2, 5, 10 ms...), 4 threads instead of
    # 2 cost 2-35 % more CPU per request and raised the post p99 from 6-15 to
    # 20-35 ms, for less throughput; on Redis over loopback the two were within
    # noise, and a Redis on another host waits longer per call, so it keeps 4
    # (benchmarks/README.md, "Worker threads"). With keystone, up to
    # ``auth.MAX_PENDING`` workers may wait on Keystone; those come on top.
    """
    if pooling or message_store == "sqlalchemy":
        return WAITING_STORE_THREADS
    base = LOCAL_STORE_THREADS if message_store == "sqlite" else QUICK_STORE_THREADS
    return base + (MAX_PENDING if keystone else 0)


def worker_threads(conf: cfg.ConfigOpts, configured: int) -> int:
    """Threads of a transport's reactor: as configured, or chosen by the message store."""
    if configured:
        return configured
    return store_threads(conf.drivers.message_store, pooling=conf.pooling, keystone=bool(conf.auth_strategy))


def http_settings(conf: cfg.ConfigOpts, limits: Limits) -> wsgi.Settings:
    group = conf["drivers:transport:wsgi"]
    return wsgi.Settings(
        bind=group.bind,
        port=group.port,
        threads=worker_threads(conf, group.threads),
        max_body=limits.body_cap,
        request_timeout=group.request_timeout,
        keepalive_timeout=group.keepalive_timeout,
        send_timeout=group.send_timeout,
        max_connections=max_connections(conf, "wsgi"),
        max_connections_per_address=group.max_connections_per_address,
    )


def websocket_settings(conf: cfg.ConfigOpts, limits: Limits) -> websocket.Settings:
    group = conf["drivers:transport:websocket"]
    notify_bind = group.notification_bind or group.bind
    wildcard = notify_bind in ("0.0.0.0", "::", "")
    return websocket.Settings(
        notification_bind=notify_bind,
        notification_port=group.notification_port,
        notification_host=socket.gethostname() if wildcard else notify_bind,
        bind=group.bind,
        port=group.port,
        workers=worker_threads(conf, group.workers),
        max_frame_size=group.max_frame_size or limits.max_messages_post_size + 64 * 1024,
        idle_timeout=group.idle_timeout,
        send_timeout=group.send_timeout,
        handshake_timeout=group.handshake_timeout,
        permessage_deflate=group.permessage_deflate,
        auth=authenticator(conf),
        max_connections=max_connections(conf, "websocket"),
        max_connections_per_address=group.max_connections_per_address,
        # Browser pages that may connect: the listed ones, CORS's, and the console's (the HTTP port's).
        allowed_origins=tuple(group.allowed_origins or ()) + tuple(conf.cors.allowed_origin or ()),
        http_port=conf["drivers:transport:wsgi"].port,
        own_hosts=own_host_names(conf),
    )


def own_host_names(conf: cfg.ConfigOpts) -> tuple[str, ...]:
    """Names a websocket handshake's Host may give this machine by (see handshake.py on DNS rebinding).

    Its hostname, and the host of ``[console] websocket_url`` (a name the
    operator gave it); any other name a page uses must be in allowed_origins.
    """
    names = [socket.gethostname()]
    url = conf.console.websocket_url
    if url:
        with contextlib.suppress(ValueError):  # a malformed URL names nothing
            host = urllib.parse.urlsplit(url).hostname
            if host:
                names.append(host)
    return tuple(names)


_TRANSPORT_GROUPS = {"wsgi": "drivers:transport:wsgi", "websocket": "drivers:transport:websocket"}
FILES_RESERVE = 256  # files the process needs besides client connections: stores, logs, webhooks


def max_connections(conf: cfg.ConfigOpts, transport: str) -> int:
    """``transport``'s ``max_connections``, lowered to fit the process's open-files limit.

    Both listeners and the process's own files share that limit; past it a
    listener cannot accept at all and clients get no answer, where below it
    they get the documented 503. The soft limit is raised toward what the
    configured numbers need first.
    """
    mine = conf[_TRANSPORT_GROUPS[transport]].max_connections
    served = [t for t in _TRANSPORT_GROUPS if t in conf.drivers.transport or t == transport]
    wanted = [conf[_TRANSPORT_GROUPS[t]].max_connections for t in served]
    if not mine or not all(wanted):
        return mine  # an unlimited listener leaves nothing to budget
    reserve = FILES_RESERVE + MAX_LINGERING_REFUSALS * len(served)
    available = raise_open_files_limit(sum(wanted) + reserve) - reserve
    if sum(wanted) <= available:
        return mine
    share = max(1, available * mine // sum(wanted))
    LOG.warning("[%s] max_connections lowered from %d to %d to fit the open-files limit (ulimit -n)",
                _TRANSPORT_GROUPS[transport], mine, share)
    return share


def rate_limiter(conf: cfg.ConfigOpts) -> RateLimiter | None:
    """The per-project request rate limit of ``[rate_limit]``; None when it is off (the default)."""
    group = conf.rate_limit
    settings = RateLimitSettings(group.project_rate, group.project_burst, group.max_projects)
    return RateLimiter(settings) if settings.enabled else None


class Sweeper(threading.Thread):
    """Deletes expired messages off the request path, every ``interval`` seconds."""

    def __init__(self, store: DataDriver, interval: float) -> None:
        super().__init__(name="zaqar-gc", daemon=True)
        self._store, self._interval = store, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        log = logging.getLogger("zaqar.gc")
        while not self._stop_event.wait(self._interval):
            started = time.perf_counter()
            try:
                removed = self._store.gc()
            except Exception:
                log.exception("expired-message sweep failed; retrying in %ss", self._interval)
                continue
            if removed:
                took = (time.perf_counter() - started) * 1e3
                log.info("swept %d expired messages in %.1fms", removed, took)

    def stop(self) -> None:
        self._stop_event.set()
