"""Subscriptions: who gets notified of a queue's messages.

Keys of one queue's subscriptions (``P{T}`` and ``Q`` as in ``common``; the
``:s:`` namespace is apart from the queue's ``:q:`` keys, so deleting the
queue record keeps its subscriptions, as upstream does):

* ``P{T}:s:Q``       hash, subscription id -> record (JSON object of strings:
  ``s`` subscriber, ``t`` ttl, ``c`` time of creation or of the last ttl
  change, ``e`` expiry, ``o`` options JSON, ``f`` confirmed ``'1'``/``'0'``).
* ``P{T}:s:Q:ids``   sorted set of the ids, all scored 0: ZRANGEBYLEX lists
  them by id, which is creation order, and takes any marker.
* ``P{T}:s:Q:who``   hash, subscriber -> id: the uniqueness index.
* ``P{T}:s:Q:due``   sorted set, id -> expiry: for gc.
* ``P{T}:s:Q:last``  string, the creation stamp of the newest id handed out.

A subscription is live while ``e > now``. Expired ones are filtered out of
every read; the write scripts treat them as deleted (and delete them when
they meet them), so an expired holder never blocks its subscriber; gc
removes the rest. Every write that checks something is one Lua script, so
uniqueness by subscriber holds whatever the concurrency.

Ids: 16 hex digits of a stamp (microseconds since the epoch by the store's
clock, but at least one more than ``:last``) + 8 random hex digits. Equal
widths make string order creation order, and ``:last`` makes stamps grow
strictly within a queue even when the clock repeats a value or steps back.
gc drops ``:last`` once the queue has no subscriptions left and the clock
has passed it, when it can no longer make a difference.

Options pass through the scripts as an opaque JSON string (cjson would turn
``[]`` into ``{}`` and round floats), so they come back exactly as stored.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from zaqar.storage import base, errors
from zaqar.storage.redis.common import Backend, evalsha, num

_SUBSCRIPTION_ID = re.compile(r"[0-9a-f]{24}")

# Ids fetched per ZRANGEBYLEX round of a listing (at least the page size), so
# expired entries not yet collected rarely cost a second round.
_LIST_CHUNK = 50

# Expired subscriptions removed per gc script call.
GC_BATCH = 500

# Helpers prepended to every script. Records hold strings only, so decoding
# and encoding them again with cjson keeps every field exactly.
_LIB = r"""
local function rec(base, id)
  local raw = redis.call('HGET', base, id)
  if raw then return cjson.decode(raw) end
  return nil
end

local function live(s, now) return tonumber(s.e) > now end

-- Remove subscription ``id`` (record ``s``, nil when the record is gone).
local function forget(base, id, s)
  redis.call('HDEL', base, id)
  redis.call('ZREM', base .. ':ids', id)
  redis.call('ZREM', base .. ':due', id)
  if s and redis.call('HGET', base .. ':who', s.s) == id then
    redis.call('HDEL', base .. ':who', s.s)
  end
end

-- The id and record of the live subscription holding ``subscriber``, or nil
-- (an expired holder is removed on the way: it is as if deleted).
local function holder(base, subscriber, now)
  local id = redis.call('HGET', base .. ':who', subscriber)
  if not id then return nil end
  local s = rec(base, id)
  if s and live(s, now) then return id, s end
  if s then forget(base, id, s) end
  redis.call('HDEL', base .. ':who', subscriber)
  return nil
end
"""

# KEYS: base. ARGV: subscriber, ttl, now, expires, options JSON, stamp
# (integer microseconds), random tail, invalidation channel.
# Returns {'ok', id} or {'exists', id, confirmed}.
_CREATE = r"""
local base, now = KEYS[1], tonumber(ARGV[3])
local hid, h = holder(base, ARGV[1], now)
if hid then return {'exists', hid, h.f} end
local stamp = tonumber(ARGV[6])
local last = redis.call('GET', base .. ':last')
if last and tonumber(last) >= stamp then stamp = tonumber(last) + 1 end
redis.call('SET', base .. ':last', string.format('%d', stamp))
local id = string.format('%016x', stamp) .. ARGV[7]
local s = {s = ARGV[1], t = ARGV[2], c = ARGV[3], e = ARGV[4], o = ARGV[5], f = '0'}
redis.call('HSET', base, id, cjson.encode(s))
redis.call('ZADD', base .. ':ids', 0, id)
redis.call('ZADD', base .. ':due', ARGV[4], id)
redis.call('HSET', base .. ':who', ARGV[1], id)
redis.call('PUBLISH', ARGV[8], base)
return {'ok', id}
"""

# KEYS: base. ARGV: id, now, has subscriber (1/0), subscriber, has ttl (1/0),
# ttl, expires, has options (1/0), options JSON, invalidation channel.
# Returns {'ok'}, {'missing'} or {'exists', holder id, confirmed}.
_UPDATE = r"""
local base, id, now = KEYS[1], ARGV[1], tonumber(ARGV[2])
local s = rec(base, id)
if not s or not live(s, now) then
  if s then forget(base, id, s) end
  return {'missing'}
end
if ARGV[3] == '1' and ARGV[4] ~= s.s then
  local hid, h = holder(base, ARGV[4], now)
  if hid and hid ~= id then return {'exists', hid, h.f} end
  if redis.call('HGET', base .. ':who', s.s) == id then redis.call('HDEL', base .. ':who', s.s) end
  redis.call('HSET', base .. ':who', ARGV[4], id)
  s.s = ARGV[4]
end
if ARGV[5] == '1' then
  s.t, s.c, s.e = ARGV[6], ARGV[2], ARGV[7]
  redis.call('ZADD', base .. ':due', ARGV[7], id)
end
if ARGV[8] == '1' then s.o = ARGV[9] end
redis.call('HSET', base, id, cjson.encode(s))
redis.call('PUBLISH', ARGV[10], base)
return {'ok'}
"""

# KEYS: base. ARGV: id, now, confirmed (1/0), invalidation channel. Returns 1, or 0 when missing.
_CONFIRM = r"""
local base, id = KEYS[1], ARGV[1]
local s = rec(base, id)
if not s or not live(s, tonumber(ARGV[2])) then return 0 end
s.f = ARGV[3]
redis.call('HSET', base, id, cjson.encode(s))
redis.call('PUBLISH', ARGV[4], base)
return 1
"""

# KEYS: base. ARGV: id, invalidation channel.
_DELETE = r"""
local s = rec(KEYS[1], ARGV[1])
if s then
  forget(KEYS[1], ARGV[1], s)
  redis.call('PUBLISH', ARGV[2], KEYS[1])
end
return 1
"""

# KEYS: base. ARGV: now, batch, now as integer microseconds.
# Returns how many expired subscriptions went.
_GC = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', base .. ':due', '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(expired) do forget(base, id, rec(base, id)) end
if redis.call('EXISTS', base) == 0 then
  redis.call('DEL', base .. ':ids', base .. ':who', base .. ':due')
  local last = redis.call('GET', base .. ':last')
  if last and tonumber(last) < tonumber(ARGV[3]) then redis.call('DEL', base .. ':last') end
end
return #expired
"""

_SCRIPTS = {"create": _CREATE, "update": _UPDATE, "confirm": _CONFIRM, "delete": _DELETE, "gc": _GC}

# Key suffixes of one queue's subscriptions besides the record hash.
_SUFFIXES = (":ids", ":who", ":due", ":last")


def _is_subscription_id(value: object) -> bool:
    return isinstance(value, str) and _SUBSCRIPTION_ID.fullmatch(value) is not None


def _stamp(now: float) -> str:
    return str(max(int(now * 1_000_000), 0))


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "\\*?[]" else ch for ch in text)


class SubscriptionController(base.SubscriptionController):
    def __init__(self, backend: Backend, clock: base.Clock) -> None:
        self._backend = backend
        self._clock = clock
        client = backend.client
        self._scripts = {name: client.register_script(_LIB + src) for name, src in _SCRIPTS.items()}

    def _key(self, project: str | None, queue: str) -> str:
        return self._backend.subscriptions_key(project, queue)

    def _run(self, name: str, key: str, args: Sequence[str]) -> Any:
        with self._backend.translated():
            return evalsha(self._backend.client, self._scripts[name], [key], args)

    def _write(self, name: str, key: str, args: Sequence[str]) -> Any:
        """Run a script that changes the queue's subscriptions and publishes ``key`` when it does."""
        try:
            return self._run(name, key, [*args, self._backend.channel])
        finally:
            self._backend.cache.invalidate(key)  # also after a lost reply: the script may have run

    def create(
        self, project: str | None, queue: str, subscriber: str, ttl: int, options: Mapping[str, Any]
    ) -> str:
        # Serialised before the script runs, so bad options fail before anything is stored.
        encoded = json.dumps(dict(options))
        now = float(self._clock())
        ttl = int(ttl)
        args = [subscriber, str(ttl), num(now), num(now + ttl), encoded, _stamp(now), secrets.token_hex(4)]
        status, sid, *rest = self._write("create", self._key(project, queue), args)
        if status == "exists":
            raise errors.SubscriptionAlreadyExists(sid=sid, confirmed=rest[0] == "1")
        return str(sid)

    def get(self, project: str | None, queue: str, subscription_id: str) -> base.Subscription:
        if not _is_subscription_id(subscription_id):
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        now = float(self._clock())
        with self._backend.translated():
            raw = self._backend.client.hget(self._key(project, queue), subscription_id)
        found = _decode(queue, subscription_id, raw, now)
        if found is None:
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        return found

    def list(
        self, project: str | None, queue: str, *, marker: str | None = None, limit: int = 10
    ) -> list[base.Subscription]:
        if limit <= 0:
            return []
        now = float(self._clock())
        key = self._key(project, queue)
        chunk = max(limit, _LIST_CHUNK)
        start = "-" if marker is None else "(" + marker
        found: list[base.Subscription] = []
        with self._backend.translated():
            while len(found) < limit:
                ids = self._backend.client.zrangebylex(key + ":ids", start, "+", start=0, num=chunk)
                if not ids:
                    break
                # An id whose record vanished since the index was read (a
                # concurrent delete) decodes to None and is skipped.
                for sid, raw in zip(ids, self._backend.client.hmget(key, ids), strict=True):
                    item = _decode(queue, sid, raw, now)
                    if item is not None:
                        found.append(item)
                if len(ids) < chunk:
                    break
                start = "(" + ids[-1]
        return found[:limit]

    def update(
        self,
        project: str | None,
        queue: str,
        subscription_id: str,
        *,
        subscriber: str | None = None,
        ttl: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not _is_subscription_id(subscription_id):
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        encoded = "" if options is None else json.dumps(dict(options))
        now = float(self._clock())
        args = [subscription_id, num(now)]
        args += [_flag(subscriber is not None), subscriber or ""]
        if ttl is None:
            args += ["0", "", ""]
        else:
            args += ["1", str(int(ttl)), num(now + int(ttl))]
        args += [_flag(options is not None), encoded]
        status, *rest = self._write("update", self._key(project, queue), args)
        if status == "missing":
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        if status == "exists":
            raise errors.SubscriptionAlreadyExists(sid=rest[0], confirmed=rest[1] == "1")

    def confirm(self, project: str | None, queue: str, subscription_id: str, confirmed: bool) -> None:
        if not _is_subscription_id(subscription_id):
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)
        now = float(self._clock())
        args = [subscription_id, num(now), _flag(confirmed)]
        if not self._write("confirm", self._key(project, queue), args):
            raise errors.SubscriptionDoesNotExist(sid=subscription_id)

    def delete(self, project: str | None, queue: str, subscription_id: str) -> None:
        if not _is_subscription_id(subscription_id):
            return
        self._write("delete", self._key(project, queue), [subscription_id])

    def delete_all(self, project: str | None, queue: str) -> None:
        key = self._key(project, queue)
        try:
            with self._backend.translated():
                pipe = self._backend.client.pipeline(transaction=True)
                # ``:last`` stays (gc drops it), so ids keep growing after a purge.
                pipe.unlink(key, key + ":ids", key + ":who", key + ":due")
                pipe.publish(self._backend.channel, key)
                pipe.execute()
        finally:
            self._backend.cache.invalidate(key)

    def live(self, project: str | None, queue: str) -> list[base.Subscription]:
        # PERF: the notifier asks this on every post, mostly of queues nobody subscribes to.
        # The raw records are cached (an empty dict too) and decoded per call, so expiry and
        # age follow this driver's clock without any invalidation.
        key = self._key(project, queue)
        records = self._backend.cache.get(key, lambda: self._read_records(key))
        if not records:
            return []
        now = float(self._clock())
        found = (_decode(queue, sid, raw, now) for sid, raw in sorted(records.items()))
        return [item for item in found if item is not None]

    def _read_records(self, key: str) -> dict[str, str]:
        with self._backend.translated():
            records: dict[str, str] = self._backend.client.hgetall(key)
        return records

    def gc(self) -> int:
        """Remove expired subscriptions of every queue; return how many went."""
        now = float(self._clock())
        args = [num(now), str(GC_BATCH), _stamp(now)]
        removed = 0
        for key in sorted(self._keys()):
            while True:
                count = int(self._run("gc", key, args))
                removed += count
                if count < GC_BATCH:
                    break
        return removed

    def _keys(self) -> set[str]:
        """Record keys of every queue with subscription keys (SCAN, never KEYS)."""
        # The tag and the encoded queue name hold no ``}`` or ``:``, so what
        # follows the last ``}:s:`` of a key is ``Q`` or ``Q:suffix``.
        marker = "}:s:"
        pattern = _glob_escape(self._backend.prefix) + "{*" + marker + "*"
        found = set()
        with self._backend.translated():
            for key in self._backend.client.scan_iter(match=pattern, count=1000):
                head, sep, tail = key.rpartition(marker)
                name, colon, suffix = tail.partition(":")
                if sep and (not colon or ":" + suffix in _SUFFIXES):
                    found.add(head + sep + name)
        return found


def _decode(queue: str, sid: str, raw: str | None, now: float) -> base.Subscription | None:
    """The subscription a stored record describes, or None when missing or expired."""
    if raw is None:
        return None
    fields: dict[str, str] = json.loads(raw)
    if not float(fields["e"]) > now:
        return None
    return base.Subscription(
        id=sid,
        source=queue,
        subscriber=fields["s"],
        ttl=int(fields["t"]),
        age=int(now - float(fields["c"])),
        options=json.loads(fields["o"]),
        confirmed=fields["f"] == "1",
    )
