"""Key naming, the shared client with error translation, and reply decoding.

Key layout (``P`` = the URI's ``prefix``, ``T`` = project tag, ``Q`` = the
percent-encoded queue name; every key starts with ``P``):

* ``P{T}:queues``   sorted set of the project's queue names, all scored 0, so
  ZRANGEBYLEX lists them by name (byte order, like SQLite's BINARY collation).
* ``P{T}:q:Q``      hash, the queue record: ``meta`` (metadata JSON),
  ``seq`` (the last sequence number handed out) and the scan hints
  ``claim_w``/``claim_t``/``pop_w``/``pop_t`` (see ``lua.LIB``). Exists iff
  the queue does.
* ``P{T}:q:Q:ids``  sorted set, message id -> seq: post order and markers.
* ``P{T}:q:Q:exp``  sorted set, message id -> expiry: counting and gc.
* ``P{T}:q:Q:msg``  hash, message id -> message record (see ``lua``).
* ``P{T}:q:Q:body`` hash, message id -> body JSON (kept apart so claims do
  not rewrite bodies).
* ``P{T}:q:Q:claim`` hash, claim id -> claim record (see ``lua_claims``).
* ``P{T}:q:Q:claims`` / ``:stale`` sorted sets of claim ids by expiry.
* ``P{T}:s:Q`` and ``P{T}:s:Q:*``  the queue's subscriptions, apart from its
  ``:q:`` keys so deleting the queue keeps them (see ``subscriptions``).

``T`` is ``~`` for the project ``None`` and ``p`` + the encoded name
otherwise, so ``None`` differs from every string project, ``""`` included.
Names are percent-encoded (``:`` and braces too), so no two queues share a
key. The tag sits in braces: all keys of one project share a Redis Cluster
hash slot, which is what a script touching a queue and its dead-letter
queue would need there. A queue has a constant number of keys, so deleting
one is a handful of UNLINKs however many messages it holds.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import redis
import redis.commands.core

from zaqar.storage import base, errors
from zaqar.storage.cache import Cache
from zaqar.storage.redis import lua, lua_claims
from zaqar.storage.redis.invalidation import RedisChannel, channel_name

_MESSAGE_ID = re.compile(r"[0-9a-f]{24}")
_CLAIM_ID = re.compile(r"[0-9a-f]{32}")

# Per-queue keys besides the record itself.
QUEUE_SUFFIXES = (":ids", ":exp", ":msg", ":body", ":claim", ":claims", ":stale")

SCRIPTS: dict[str, str] = {
    "queue_create": lua.QUEUE_CREATE,
    "queue_list": lua.QUEUE_LIST,
    "queue_set_metadata": lua.QUEUE_SET_METADATA,
    "queue_replace_metadata": lua.QUEUE_REPLACE_METADATA,
    "post": lua.POST,
    "list": lua.LIST,
    "pop": lua.POP,
    "delete": lua.DELETE,
    "delete_many": lua.DELETE_MANY,
    "stats": lua.STATS,
    "claim_create": lua_claims.CLAIM_CREATE,
    "claim_get": lua_claims.CLAIM_GET,
    "claim_update": lua_claims.CLAIM_UPDATE,
    "claim_delete": lua_claims.CLAIM_DELETE,
    "gc": lua_claims.GC,
}

# Raised by a script that found no free message id (see lua_claims.CLAIM_CREATE).
ID_CONFLICT = "zaqar: message id conflict"


class IdConflict(Exception):
    """A script ran out of spare id tails; the caller knows which queue to name."""


def num(value: float) -> str:
    """A float as the exact decimal string the scripts store and compare."""
    return repr(float(value))


def is_message_id(value: object) -> bool:
    return isinstance(value, str) and _MESSAGE_ID.fullmatch(value) is not None


def is_claim_id(value: object) -> bool:
    """Whether ``value`` could ever name a claim of this driver (uuid4 hex)."""
    return isinstance(value, str) and _CLAIM_ID.fullmatch(value) is not None


def unavailable(exc: BaseException) -> errors.BackendUnavailable:
    return errors.BackendUnavailable(reason=f"{type(exc).__name__}: {exc}")


try:
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - hiredis is part of the redis extra
    _pack = None


def evalsha(client: redis.Redis, script: redis.commands.core.Script, keys: Sequence[str],
            args: Sequence[Any]) -> Any:
    """Run a registered script over one pooled connection, loading it again if the server lost it.

    # PERF: ``Script.__call__`` goes through ``execute_command`` and encodes every argument in
    # Python before hiredis packs them: ~80 µs of client CPU per call against ~30 µs here
    # (hiredis packs the strings itself; the pool, connection and reply parser are redis-py's).
    """
    if _pack is None:
        return script(keys=list(keys), args=list(args))
    try:
        command = [_pack(("EVALSHA", script.sha, len(keys), *keys, *args))]
    except TypeError as exc:  # what redis-py's own encoder raises for such an argument
        raise redis.exceptions.DataError(str(exc)) from exc
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        try:
            conn.send_packed_command(command)
            return conn.read_response()
        except redis.exceptions.NoScriptError:  # the server restarted, or SCRIPT FLUSH ran
            # NOTE: loaded over this same connection: asking the pool for another could wait
            # forever (or fail) when max_connections are all held by calls doing just this.
            conn.send_packed_command([_pack(("SCRIPT", "LOAD", script.script))])
            conn.read_response()
            conn.send_packed_command(command)
            return conn.read_response()
    except redis.exceptions.ResponseError:
        raise  # an error reply: the connection is in step and stays usable
    except BaseException:
        conn.disconnect()  # a reply may be half read: never hand this socket out again as it is
        raise
    finally:
        pool.release(conn)


class Backend:
    """The connection pool, key names, registered scripts and read cache shared by the controllers.

    ``cache`` holds queue metadata (under the queue's record key) and a queue's
    subscription records (under its subscriptions key); every write of either
    publishes that key on ``channel`` (see ``zaqar.storage.cache``).
    """

    def __init__(self, pool: redis.ConnectionPool, prefix: str) -> None:
        self.pool = pool
        self.prefix = prefix
        self.client = redis.Redis(connection_pool=pool)
        self._scripts = {name: self.client.register_script(lua.LIB + src) for name, src in SCRIPTS.items()}
        self._closed = False
        self.channel = channel_name(prefix)
        self.cache = Cache(lambda: RedisChannel(self.client, self.channel), name=f"redis-{prefix}")

    def project_key(self, project: str | None) -> str:
        tag = "~" if project is None else "p" + quote(project, safe="")
        return f"{self.prefix}{{{tag}}}"

    def index_key(self, project: str | None) -> str:
        return self.project_key(project) + ":queues"

    def queue_key(self, project: str | None, name: str) -> str:
        return f"{self.project_key(project)}:q:{quote(name, safe='')}"

    def subscriptions_key(self, project: str | None, queue: str) -> str:
        return f"{self.project_key(project)}:s:{quote(queue, safe='')}"

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """Turn every client-side failure into BackendUnavailable.

        Connection and timeout errors are the expected ones; any other Redis
        error (OOM, READONLY replica, BUSY script, LOADING) equally means the
        store cannot serve the request now.
        """
        if self._closed:
            raise errors.BackendUnavailable(reason="the Redis store was closed")
        try:
            yield
        except redis.exceptions.RedisError as exc:
            raise unavailable(exc) from exc

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one registered script (EVALSHA, loading it again after a server restart)."""
        with self.translated():
            try:
                return evalsha(self.client, self._scripts[name], keys, args)
            except redis.exceptions.ResponseError as exc:
                if ID_CONFLICT in str(exc):
                    raise IdConflict(str(exc)) from exc
                raise

    def close(self) -> None:
        self._closed = True
        self.cache.close()
        self.pool.disconnect()


def message_from_reply(mid: str, meta: str, body: str, now: float) -> base.Message:
    fields: dict[str, str] = json.loads(meta)
    created = float(fields["c"])
    claim_id = fields.get("i")
    return base.Message(
        id=mid,
        body=json.loads(body),
        ttl=int(fields["t"]),
        age=int(now - created),
        created=created,
        claim_id=claim_id,
        claimed=claim_id is not None and float(fields["x"]) > now,
        claim_count=int(fields["n"]),
        client_id=fields.get("k"),
    )


def messages_from_reply(flat: Sequence[str], now: float) -> list[base.Message]:
    """Decode the (id, record, body) triples a script returns."""
    return [message_from_reply(*flat[i : i + 3], now) for i in range(0, len(flat), 3)]
