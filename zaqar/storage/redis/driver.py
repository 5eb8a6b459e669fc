"""The Redis message store.

URI: ``redis://[[user]:password@]host[:port][/db][?options]``, ``rediss://``
for TLS, or ``unix:///path/to/redis.sock[?db=N&...]``. Options:

* ``prefix`` (default ``zaqar:``): every key the store writes starts with it,
  so several deployments (or test runs) can share one database.
* ``socket_timeout`` (default 10 s), ``socket_connect_timeout`` (default 5 s),
  ``socket_keepalive``, ``health_check_interval``, ``max_connections``,
  ``client_name``, ``db``; with ``rediss://`` also ``ssl_cert_reqs``,
  ``ssl_ca_certs``, ``ssl_ca_path``, ``ssl_certfile``, ``ssl_keyfile``,
  ``ssl_password``, ``ssl_check_hostname``.

Other options are ignored, so one URI can carry options for later versions.
Sentinel (``redis+sentinel://``) and Cluster are not supported.

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
import time
import urllib.parse
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from zaqar.storage import base, errors
from zaqar.storage.redis.claims import ClaimController
from zaqar.storage.redis.common import Backend, num
from zaqar.storage.redis.messages import MessageController
from zaqar.storage.redis.queues import QueueController

DEFAULT_PREFIX = "zaqar:"

_SCHEMES = ("redis", "rediss", "unix")
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

# Expired messages (and claims) removed per gc script call, so gc never holds
# the server for long behind a large backlog.
_GC_BATCH = 500
_GC_SUFFIXES = (":exp", ":claims", ":stale")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a store URI means: the key prefix and the ConnectionPool arguments."""

    prefix: str
    connection: dict[str, Any]


def _invalid(uri: str, why: str) -> errors.BackendUnavailable:
    # Never echo the URI itself: it may carry a password.
    scheme = uri.partition(":")[0]
    return errors.BackendUnavailable(reason=f"invalid {scheme} store URI: {why}")


def parse_uri(uri: str) -> Settings:
    """Split a store URI into the key prefix and redis-py connection arguments."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in _SCHEMES:
        raise _invalid(uri, f"scheme must be one of {', '.join(_SCHEMES)}")
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    options = dict(query)
    prefix = options.pop("prefix", DEFAULT_PREFIX)
    if not prefix:
        raise _invalid(uri, "prefix must not be empty")
    allowed = _FORWARDED | (_FORWARDED_TLS if parts.scheme == "rediss" else frozenset())
    kept = {name: value for name, value in options.items() if name in allowed}
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
    connection.update(decode_responses=True, retry=Retry(NoBackoff(), 0))
    return Settings(prefix=prefix, connection=connection)


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
        try:
            # No connection is made here: the service may start before Redis does.
            pool = redis.ConnectionPool(**settings.connection)
        except (TypeError, ValueError) as exc:
            raise _invalid(uri, str(exc)) from None
        self._backend = Backend(pool, settings.prefix)
        self._clock = clock
        self._queues = QueueController(self._backend, clock)
        self._messages = MessageController(self._backend, clock)
        self._claims = ClaimController(self._backend, clock)

    @property
    def queues(self) -> QueueController:
        return self._queues

    @property
    def messages(self) -> MessageController:
        return self._messages

    @property
    def claims(self) -> ClaimController:
        return self._claims

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
