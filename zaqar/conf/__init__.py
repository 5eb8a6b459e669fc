"""oslo.config options, under upstream Zaqar's group and option names.

All registration lives here so an operator's ``zaqar.conf`` carries over and
``list_opts`` can document every option. Nothing outside ``zaqar.conf`` and
``zaqar.bootstrap`` touches oslo.config; the rest of the code receives plain
frozen settings.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

from oslo_config import cfg, types


class _AuthStrategy(types.String):
    """``[DEFAULT] auth_strategy``: ``none`` (upstream's word) is read as '' (no authentication)."""

    def __call__(self, value: str) -> str:
        value = super().__call__(value)
        return "" if value == "none" else value

_DEFAULT = [
    cfg.BoolOpt("debug", default=False, help="Log at DEBUG level, one line per HTTP request included."),
    cfg.BoolOpt("admin_mode", default=False, help="Serve admin resources (health, pools, flavors)."),
    cfg.BoolOpt("pooling", default=False, help="Spread queues over several pools of message stores."),
    cfg.BoolOpt("enable_checksum", default=False, help="Add an MD5 checksum of the body to messages."),
    cfg.BoolOpt("unreliable", default=False, help="Allow message stores that are not durable."),
    cfg.Opt("auth_strategy", type=_AuthStrategy(), default="",
            help="'' or 'none' (no authentication), or 'keystone'."),
    cfg.StrOpt(
        "state_path",
        default=os.path.join(
            os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "zaqar"
        ),
        help="Directory for the embedded store's files.",
    ),
    cfg.IntOpt("gc_interval", default=60, min=1, help="Seconds between sweeps of expired messages."),
]

_TRANSPORT = [
    cfg.IntOpt("default_message_ttl", default=3600),
    cfg.IntOpt("default_message_delay", default=0),
    cfg.IntOpt("default_claim_ttl", default=300),
    cfg.IntOpt("default_claim_grace", default=60),
    cfg.IntOpt("default_subscription_ttl", default=3600),
    cfg.IntOpt("max_queues_per_page", default=20, deprecated_name="queue_paging_uplimit"),
    cfg.IntOpt("max_messages_per_page", default=20, deprecated_name="message_paging_uplimit"),
    cfg.IntOpt("max_subscriptions_per_page", default=20),
    cfg.IntOpt("max_messages_per_claim_or_pop", default=20, deprecated_name="max_messages_per_claim"),
    cfg.IntOpt("max_queue_metadata", default=64 * 1024, deprecated_name="metadata_size_uplimit"),
    cfg.IntOpt("max_messages_post_size", default=256 * 1024, deprecated_name="message_size_uplimit"),
    cfg.IntOpt("max_message_ttl", default=1209600, deprecated_name="message_ttl_max"),
    cfg.IntOpt("max_message_delay", default=900),
    cfg.IntOpt("max_claim_ttl", default=43200, deprecated_name="claim_ttl_max"),
    cfg.IntOpt("max_claim_grace", default=43200, deprecated_name="claim_grace_max"),
    cfg.ListOpt("subscriber_types", default=["http", "https", "mailto", "trust+http", "trust+https"]),
    cfg.IntOpt("max_flavors_per_page", default=20),
    cfg.IntOpt("max_pools_per_page", default=20),
    cfg.StrOpt("client_id_uuid_safe", default="strict", choices=["strict", "off"]),
    cfg.IntOpt("min_length_client_id", default=10),
    cfg.IntOpt("max_length_client_id", default=36),
    cfg.BoolOpt("message_delete_with_claim_id", default=False),
]

_DRIVERS = [
    cfg.ListOpt(
        "transport",
        default=["wsgi", "websocket"],
        help="Transports to serve from one process: wsgi, websocket, or both (comma list).",
    ),
    cfg.StrOpt("message_store", default="sqlite", choices=["sqlite", "redis", "sqlalchemy"],
               help="Message store driver; its URI is [drivers:message_store:<driver>] uri."),
    cfg.StrOpt("management_store", default="sqlite", choices=["sqlite", "sqlalchemy"],
               help="Store of pools, flavors and the queue catalog (used with pooling)."),
]

def _connection_opts(refusal: str) -> list[cfg.Opt]:
    """Connection limits, the same for both listeners."""
    return [
        cfg.IntOpt("max_connections", default=4096, min=0,
                   help=f"Open connections beyond which new ones get {refusal} and are closed; 0: "
                   "unlimited. Lowered at start to fit the process's open-files limit."),
        cfg.IntOpt("max_connections_per_address", default=0, min=0,
                   help=f"The same per client address (IPv6: per /64); beyond it, {refusal}. 0: "
                   "unlimited (the default: behind a proxy or NAT every client has one address)."),
    ]


_WSGI = [
    cfg.HostAddressOpt("bind", default="127.0.0.1"),
    cfg.PortOpt("port", default=8888),
    cfg.IntOpt("threads", default=0, min=0,
               help="Worker threads of the built-in HTTP server. 0: chosen by the message store, 2 for "
               "sqlite, 4 for redis (2 more for each with keystone, whose validations wait on the "
               "network), 16 for sqlalchemy and with pooling (stores that wait on the network)."),
    cfg.FloatOpt("request_timeout", default=30.0, min=0.1,
                 help="Seconds a client has to send a whole request (head and body) once it started."),
    cfg.FloatOpt("keepalive_timeout", default=60.0, min=0.1,
                 help="Seconds an idle keep-alive connection stays open."),
    cfg.FloatOpt("send_timeout", default=30.0, min=0.1,
                 help="Drop a connection whose peer leaves responses unread this long (seconds)."),
    *_connection_opts("a 503 answer"),
]

_WEBSOCKET = [
    cfg.HostAddressOpt("bind", default="127.0.0.1"),
    cfg.PortOpt("port", default=9000),
    cfg.IntOpt("workers", default=0, min=0,
               help="Threads answering frames (all connections share them). 0: as [drivers:transport:wsgi] "
               "threads 0."),
    cfg.IntOpt(
        "max_frame_size",
        default=0,
        min=0,
        help="Largest inbound message in bytes; a larger one is skipped unread and answered 400, and "
        "one over 16 MiB (or 4 x this) closes the connection with 1009. "
        "0: [transport] max_messages_post_size + 64 KiB.",
    ),
    cfg.FloatOpt(
        "idle_timeout", default=0.0, min=0.0, help="Close connections silent this long (seconds); 0: never."
    ),
    cfg.FloatOpt(
        "send_timeout", default=30.0, min=0.1,
        help="Drop a connection whose peer leaves replies unread this long (seconds).",
    ),
    cfg.FloatOpt(
        "handshake_timeout", default=10.0, min=0.1, help="Seconds allowed for the whole opening handshake."
    ),
    cfg.BoolOpt(
        "permessage_deflate", default=True,
        help="Compress messages (RFC 7692) on connections whose client offers it, as browsers do.",
    ),
    cfg.HostAddressOpt(
        "notification-bind",
        help="Address of the endpoint that relays notifications to this process's connections, also "
        "written into their subscriber URLs; default: the websocket bind address (the host name when "
        "that is a wildcard). Must be reachable from every server process sharing the store.",
    ),
    cfg.PortOpt("notification-port", default=0, help="Port of that endpoint; 0: any free port."),
    cfg.ListOpt(
        "allowed_origins", default=[],
        help="Origins (scheme://host[:port]) of browser pages that may open a websocket, besides the "
        "HTTP transport's own (the console) and [cors] allowed_origin; * for any. A handshake from "
        "another page is refused with 403; clients that send no Origin (programs) are not checked.",
    ),
    *_connection_opts("a refused upgrade (503)"),
]

_RATE_LIMIT = [
    cfg.FloatOpt("project_rate", default=0.0, min=0.0,
                 help="Requests per second one project may make, over every transport together; more "
                 "are refused with 429 and Retry-After. 0: no limit."),
    cfg.IntOpt("project_burst", default=0, min=0,
               help="Requests a project may make at once before the rate applies; 0: one second's worth."),
    cfg.IntOpt("max_projects", default=10000, min=1,
               help="Projects whose request rate is tracked at once (memory bound); the least recently "
               "seen are forgotten first."),
]

_NOTIFICATION = [
    cfg.BoolOpt("require_confirmation", default=False,
                help="Webhook and mail subscribers get nothing until they confirm (needs [signed_url])."),
    cfg.IntOpt("max_notifier_workers", default=10, min=1, help="Concurrent webhook and mail deliveries."),
    cfg.FloatOpt("webhook_timeout", default=5.0, min=0.1, help="Seconds to wait for a webhook's answer."),
    cfg.HostAddressOpt("smtp_host", default="localhost", help="SMTP server for mailto: subscribers."),
    cfg.PortOpt("smtp_port", default=25),
    cfg.StrOpt("sender", default="zaqar@localhost", help="From address of notification mail."),
]

_POOLING_CATALOG = [
    cfg.BoolOpt(
        "enable_virtual_pool",
        default=False,
        help="With pooling: register the [drivers] message_store as pool 'default' (weight 100) at "
        "start, unless a pool already has its URI, so a pooled deployment starts with one command.",
    ),
]

_SIGNED_URL = [
    cfg.StrOpt("secret_key", secret=True, help="Key of pre-signed URLs (confirmations, share)."),
]

# oslo.middleware's CORS options, as upstream Zaqar reads them; the defaults add what a browser
# client needs (http-v2.md §0.9). No origin is allowed unless configured, which leaves CORS off.
# NOTE: the same lists as zaqar.transport.wsgi.cors (a test keeps them equal); conf imports no transport.
_CORS_ALLOW_HEADERS = [
    "X-Auth-Token", "X-Identity-Status", "X-Roles", "X-Service-Catalog", "X-User-Id", "X-Tenant-Id",
    "X-OpenStack-Request-ID", "X-Trace-Info", "X-Trace-HMAC", "Client-id",
    "X-Project-ID", "Content-Type", "URL-Signature", "URL-Expires", "URL-Methods", "URL-Paths",
]
_CORS_EXPOSE_HEADERS = [
    "X-Auth-Token", "X-Subject-Token", "X-Service-Token", "X-OpenStack-Request-ID", "Location",
]
_CORS_ALLOW_METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"]
_CORS = [
    cfg.ListOpt("allowed_origin", default=[],
                help="Origins (scheme://host[:port]) whose pages may call the HTTP API, or *. "
                "Empty: CORS off."),
    cfg.BoolOpt("allow_credentials", default=True, help="Let those pages send credentials."),
    cfg.ListOpt("expose_headers", default=_CORS_EXPOSE_HEADERS,
                help="Response headers those pages may read."),
    cfg.IntOpt("max_age", default=3600, min=0, help="Seconds a browser may cache a pre-flight answer."),
    cfg.ListOpt("allow_methods", default=_CORS_ALLOW_METHODS, help="Methods those pages may use."),
    cfg.ListOpt("allow_headers", default=_CORS_ALLOW_HEADERS, help="Request headers those pages may send."),
]

_CONSOLE = [
    cfg.BoolOpt("enabled", default=None,
                help="Serve the browser console and the JavaScript client. Unset: only when "
                "zaqar-server's HTTP server binds a loopback address ([drivers:transport:wsgi] bind; "
                "the console has no login); never under uwsgi, gunicorn or another WSGI server "
                "(zaqar.transport.wsgi.application), whose address zaqar.conf does not give."),
    cfg.StrOpt("path", default="/console", help="URL path of the console (outside /v2)."),
    cfg.StrOpt("websocket_url",
               help="Websocket URL the console connects to, e.g. wss://mq.example.com/ behind a proxy. "
               "Default: the websocket transport's address (the page's host when it binds a wildcard; "
               "none for a browser on another machine when it binds loopback: the page uses HTTP)."),
    cfg.FloatOpt("poll_interval", default=2.0, min=0.2,
                 help="Seconds between polls of a watched queue when the page has to use HTTP."),
]

_SQLITE = [
    cfg.StrOpt(
        "uri",
        help="sqlite:///<absolute path>[?synchronous=full|normal]; default: <state_path>/zaqar.sqlite",
    ),
]
_REDIS = [
    cfg.StrOpt(
        "uri",
        secret=True,
        help="redis://[:password@]host:port/db[?prefix=zaqar:&socket_timeout=seconds]",
    ),
]
_SQLALCHEMY = [
    cfg.StrOpt(
        "uri",
        secret=True,
        help="An SQLAlchemy URL: postgresql://user:password@host/db or mysql+pymysql://...",
    ),
]

GROUPS: dict[str | None, list[cfg.Opt]] = {
    None: _DEFAULT,
    "transport": _TRANSPORT,
    "drivers": _DRIVERS,
    "drivers:transport:wsgi": _WSGI,
    "drivers:transport:websocket": _WEBSOCKET,
    "notification": _NOTIFICATION,
    "rate_limit": _RATE_LIMIT,
    "signed_url": _SIGNED_URL,
    "pooling:catalog": _POOLING_CATALOG,
    "cors": _CORS,
    "console": _CONSOLE,
    "drivers:message_store:sqlite": _SQLITE,
    "drivers:message_store:redis": _REDIS,
    "drivers:message_store:sqlalchemy": _SQLALCHEMY,
    "drivers:management_store:sqlite": _SQLITE,
    "drivers:management_store:sqlalchemy": _SQLALCHEMY,
}


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """For oslo-config-generator: every option this service reads."""
    return list(GROUPS.items())


# keystonemiddleware's defaults leave a token validation unbounded in time (http_connect_timeout
# unset) and retry a refused connection 3 times (0.5 + 1 + 2 s of back-off): a worker thread waited
# 3.5 s per uncached token while Keystone was down. These bound it to about 5 s and 0.5 s.
KEYSTONE_DEFAULTS = {"http_connect_timeout": 5, "http_request_max_retries": 1}


def _keystone_defaults(conf: cfg.ConfigOpts) -> None:
    """Register keystonemiddleware's ``[keystone_authtoken]`` options with our defaults for timeouts."""
    try:
        with warnings.catch_warnings():
            # NOTE: webob (under keystonemiddleware) imports the cgi module, deprecated in Python 3.11.
            warnings.filterwarnings("ignore", "'cgi' is deprecated", DeprecationWarning)
            from keystonemiddleware.auth_token import list_opts
    except ImportError:  # bootstrap explains what to install
        return
    for group, opts in list_opts():
        conf.register_opts(opts, group=group)
    for name, value in KEYSTONE_DEFAULTS.items():
        conf.set_default(name, value, group="keystone_authtoken")


def load(args: Sequence[str] = (), config_files: Sequence[str] | None = None) -> cfg.ConfigOpts:
    """Parse the command line and config files into a fresh ConfigOpts."""
    conf = cfg.ConfigOpts()
    for group, opts in GROUPS.items():
        conf.register_opts(opts, group=group)
    conf(
        list(args),
        project="zaqar",
        prog="zaqar-server",
        default_config_files=list(config_files) if config_files is not None else None,
        default_config_dirs=[] if config_files is not None else None,
    )
    if conf.auth_strategy == "keystone":
        _keystone_defaults(conf)
    return conf
