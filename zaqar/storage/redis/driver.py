"""The Redis message store.

URI: ``redis://[[user]:password@]host[:port][/db][?options]``, ``rediss://``
for TLS, ``unix:///path/to/redis.sock[?db=N&...]``, or, for a master that
Redis Sentinel watches,
``redis+sentinel://[[user]:password@]host1[:port1][,host2[:port2]...]/service[/db][?options]``.
Options:

* ``prefix`` (default ``zaqar:``): every key the store writes starts with it,
  so several deployments (or test runs) can share one database.
* ``socket_timeout`` (default 10 s), ``socket_connect_timeout`` (default 5 s),
  ``socket_keepalive``, ``health_check_interval``, ``max_connections``,
  ``client_name``, ``db``; with ``rediss://`` also ``ssl_cert_reqs``,
  ``ssl_ca_certs``, ``ssl_ca_path``, ``ssl_certfile``, ``ssl_keyfile``,
  ``ssl_password``, ``ssl_check_hostname``.

Other options are ignored, so one URI can carry options for later versions.

With ``redis+sentinel://`` the hosts are the sentinels (port 26379 unless
given) and ``service`` is the master's name in their configuration. Each new
connection asks the sentinels where the master is (redis-py's
``Sentinel.master_for``), so the store follows a failover; a call that meets
the demoted master (READONLY) fails with BackendUnavailable and drops that
connection, like any other lost connection. The password is the master's;
``sentinel_password`` authenticates to the sentinels, which are reached with
the same ``socket_timeout``, ``socket_connect_timeout`` and
``socket_keepalive`` as the master. No sentinel answering, or none knowing a
healthy master of that name, is BackendUnavailable. TLS (to the sentinels or
the master) and Redis Cluster are not supported.

Commands are never retried by the client: a script whose reply was lost may
have run, and running a post or a claim twice would duplicate messages or
strand them under a claim nobody knows. A failed call raises
BackendUnavailable; the pool opens a fresh connection for the next call, so
the store recovers by itself once the server is back.

Redis here is a cache-grade store: whether an acknowledged write survives a
server crash depends on the server's AOF settings, which the driver cannot
see, so it does not claim DURABILITY.
"""

from __future__ import annotations

import dataclasses
import re
import time
import urllib.parse
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from zaqar.storage import base, errors
from zaqar.storage.cache import Cache
from zaqar.storage.redis.claims import ClaimController
from zaqar.storage.redis.common import Backend, num
from zaqar.storage.redis.messages import MessageController
from zaqar.storage.redis.queues import QueueController
from zaqar.storage.redis.subscriptions import SubscriptionController

DEFAULT_PREFIX = "zaqar:"

_SENTINEL_SCHEME = "redis+sentinel"
_SCHEMES = ("redis", "rediss", "unix", _SENTINEL_SCHEME)
_FORWARDED = frozenset(
    {
        "db",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "health_check_interval",
        "max_connections",
        "client_name",
    }
)
_FORWARDED_TLS = frozenset(
    {"ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_password"}
    | {"ssl_check_hostname"}
)
_DEFAULTS: dict[str, Any] = {"socket_timeout": 10.0, "socket_connect_timeout": 5.0}
# Master connection settings that also apply to the connections to the sentinels.
_SENTINEL_SHARED = ("socket_timeout", "socket_connect_timeout", "socket_keepalive")
_SENTINEL_PORT = 26379
_DIGITS = re.compile(r"[0-9]+")

# Expired messages (and claims) removed per gc script call, so gc never holds
# the server for long behind a large backlog.
_GC_BATCH = 500
_GC_SUFFIXES = (":exp", ":claims", ":stale")


@dataclasses.dataclass(frozen=True)
class SentinelSettings:
    """Where the sentinels are, which master to ask them for, and how to talk to them."""

    service_name: str
    addresses: tuple[tuple[str, int], ...]
    connection: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a store URI means: the key prefix, the ConnectionPool arguments and any sentinels."""

    prefix: str
    connection: dict[str, Any]
    sentinel: SentinelSettings | None = None


def _invalid(uri: str, why: str) -> errors.BackendUnavailable:
    # Never echo the URI itself: it may carry a password.
    scheme = uri.partition(":")[0]
    return errors.BackendUnavailable(reason=f"invalid {scheme} store URI: {why}")


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def parse_uri(uri: str) -> Settings:
    """Split a store URI into the key prefix and redis-py connection arguments."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError as exc:
        raise _invalid(uri, str(exc)) from None
    if parts.scheme not in _SCHEMES:
        raise _invalid(uri, f"scheme must be one of {', '.join(_SCHEMES)}")
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    options = dict(query)
    prefix = options.pop("prefix", DEFAULT_PREFIX)
    if not prefix:
        raise _invalid(uri, "prefix must not be empty")
    sentinel_password = options.pop("sentinel_password", None) if parts.scheme == _SENTINEL_SCHEME else None
    allowed = _FORWARDED | (_FORWARDED_TLS if parts.scheme == "rediss" else frozenset())
    kept = {name: value for name, value in options.items() if name in allowed}
    if parts.scheme == _SENTINEL_SCHEME:
        # redis-py cannot parse a host list: only the query goes through it (for its option types).
        stripped = "redis://?" + urllib.parse.urlencode(kept)
    else:
        if parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise _invalid(uri, "the path must be a database number")
        # Rebuilt by hand: urlunsplit turns ``unix:///path`` into ``unix:/path``.
        stripped = uri.partition("?")[0].partition("#")[0] + "?" + urllib.parse.urlencode(kept)
    try:
        connection: dict[str, Any] = redis.connection.parse_url(stripped)
    except ValueError as exc:
        raise _invalid(uri, str(exc)) from None
    for name, value in _DEFAULTS.items():
        connection.setdefault(name, value)
    sentinel = None
    if parts.scheme == _SENTINEL_SCHEME:
        sentinel = _sentinel_settings(uri, parts, connection, sentinel_password)
    connection.update(decode_responses=True, retry=_no_retry())
    return Settings(prefix=prefix, connection=connection, sentinel=sentinel)


def _sentinel_settings(
    uri: str, parts: urllib.parse.SplitResult, connection: dict[str, Any], sentinel_password: str | None
) -> SentinelSettings:
    """Read the sentinels, service name, db and master credentials; fill ``connection`` in."""
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if userinfo:
        username, _, password = (urllib.parse.unquote(p) for p in userinfo.partition(":"))
        connection.update({k: v for k, v in (("username", username), ("password", password)) if v})
    addresses = tuple(_sentinel_address(uri, item) for item in hosts.split(","))
    segments = parts.path.split("/")[1:]
    if not segments or not segments[0]:
        raise _invalid(uri, "the path must name the Sentinel service: /service_name[/db]")
    if len(segments) > 2 or (len(segments) == 2 and segments[1] and not _DIGITS.fullmatch(segments[1])):
        raise _invalid(uri, "the path must be /service_name[/db], db a database number")
    if len(segments) == 2 and segments[1]:
        connection.setdefault("db", int(segments[1]))  # ``?db=`` wins, as redis-py has it
    to_sentinels: dict[str, Any] = {k: connection[k] for k in _SENTINEL_SHARED if k in connection}
    to_sentinels["retry"] = _no_retry()
    if sentinel_password:
        to_sentinels["password"] = sentinel_password
    return SentinelSettings(urllib.parse.unquote(segments[0]), addresses, to_sentinels)


def _sentinel_address(uri: str, item: str) -> tuple[str, int]:
    """``host[:port]`` or ``[v6 address][:port]`` of one sentinel."""
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise _invalid(uri, f"bad sentinel address {item!r}")
        port = rest[1:]
    else:
        host, _, port = item.partition(":")
    if not host:
        raise _invalid(uri, "every sentinel needs a host: host1[:port1][,host2[:port2]...]")
    if not port:
        return host, _SENTINEL_PORT
    if not _DIGITS.fullmatch(port) or not 0 < int(port) < 65536:
        raise _invalid(uri, f"bad sentinel port {port!r}")
    return host, int(port)


def _glob_escape(text: str) -> str:
    """Quote SCAN MATCH metacharacters so a prefix matches only itself."""
    return "".join("\\" + ch if ch in "\\*?[]" else ch for ch in text)


class DataDriver(base.DataDriver):
    """Message store in one Redis database; safe to share between threads."""

    capabilities = frozenset(
        {
            base.Capability.FIFO,
            base.Capability.CLAIMS,
            base.Capability.AOD,
            base.Capability.HIGH_THROUGHPUT,
        }
    )

    def __init__(self, uri: str, *, clock: base.Clock = time.time) -> None:
        settings = parse_uri(uri)
        self._sentinel: Sentinel | None = None
        try:
            # No connection is made here: the service may start before Redis (or a sentinel) does.
            if settings.sentinel is None:
                pool = redis.ConnectionPool(**settings.connection)
            else:
                where = settings.sentinel
                self._sentinel = Sentinel(list(where.addresses), sentinel_kwargs=where.connection)
                # Kept: this client owns the pool (it would disconnect it when collected).
                self._master = self._sentinel.master_for(where.service_name, **settings.connection)
                pool = self._master.connection_pool
        except (TypeError, ValueError) as exc:
            raise _invalid(uri, str(exc)) from None
        self._backend = Backend(pool, settings.prefix)
        self._clock = clock
        self._queues = QueueController(self._backend, clock)
        self._messages = MessageController(self._backend, clock)
        self._claims = ClaimController(self._backend, clock)
        self._subscriptions = SubscriptionController(self._backend, clock)

    @property
    def cache(self) -> Cache:
        """Queue metadata and live subscriptions read once per change (see ``zaqar.storage.cache``)."""
        return self._backend.cache

    @property
    def queues(self) -> QueueController:
        return self._queues

    @property
    def messages(self) -> MessageController:
        return self._messages

    @property
    def claims(self) -> ClaimController:
        return self._claims

    @property
    def subscriptions(self) -> SubscriptionController:
        return self._subscriptions

    def is_alive(self) -> bool:
        try:
            with self._backend.translated():
                return bool(self._backend.client.ping())
        except Exception:
            return False

    def gc(self) -> int:
        now = num(float(self._clock()))
        removed = 0
        for key in sorted(self._queue_keys()):
            while True:
                expired, dead, stale = self._backend.run("gc", [key], [now, str(_GC_BATCH)])
                removed += int(expired)
                if max(int(expired), int(dead), int(stale)) < _GC_BATCH:
                    break
        self._subscriptions.gc()
        return removed

    def _queue_keys(self) -> set[str]:
        """Record keys of every queue that holds messages or claims (SCAN, never KEYS)."""
        found = set()
        pattern = _glob_escape(self._backend.prefix) + "*"
        with self._backend.translated():
            for key in self._backend.client.scan_iter(match=pattern, count=1000):
                for suffix in _GC_SUFFIXES:
                    if key.endswith(suffix):
                        found.add(key[: -len(suffix)])
        return found

    def close(self) -> None:
        self._backend.close()
        if self._sentinel is not None:
            self._sentinel.close()
