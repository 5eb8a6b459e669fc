"""Lua scripts for claims, dead-lettering and garbage collection.

Claim record (JSON object of strings in the queue's ``:claim`` hash, keyed by
claim id): ``t`` ttl, ``u`` created or last renewed, ``e`` expiry, ``m`` the
ids it took. Messages carry the claim id and expiry themselves, so ``m`` is
only a lookup list: a listed message that was deleted, re-claimed or
released no longer belongs to the claim and is skipped.

The ``:claims`` sorted set scores live-or-recent claims by expiry (stats and
gc read it). A claim past its expiry whose messages still carry its id moves
to ``:stale`` (scored by the latest expiry of those messages) instead of
being forgotten, so releasing it later still clears their claim id, exactly
as when gc has not run yet.
"""

from __future__ import annotations

# KEYS: queue, dead-letter queue (the queue itself when none), project index.
# ARGV: 1 now, 2 claim id, 3 limit, 4 claim expiry, 5 extended message expiry,
#       6 extended message ttl, 7 claim ttl, 8 dead-letter (1/0), 9 max claim
#       count, 10 dead-letter queue name, 11 dead-letter expiry or '',
#       12 dead-letter ttl, 13.. spare id tails.
# Takes the oldest ``limit`` candidates in post order, up to the queue's
# current seq (so a message moved to the end of this very queue is never met
# twice). Moved candidates are not replaced by younger messages, so a claim
# that dead-letters returns fewer than ``limit`` (as the SQLite store does).
# Returns {'none'} or {'ok', id, meta, body, ...}.
CLAIM_CREATE = r"""
local base, now, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[3])
local top = redis.call('HGET', base, 'seq')
if not top then return {'none'} end
local dl, spare = ARGV[8] == '1', 13

-- The id is settled before the message leaves its queue, so running out of
-- spare ids aborts with every message still in exactly one place.
local function bury(id, m)
  local dlq = KEYS[2]
  local seq = redis.call('HINCRBY', dlq, 'seq', 1)
  local nid = id
  while redis.call('HEXISTS', dlq .. ':msg', nid) == 1 and not (dlq == base and nid == id) do
    if spare > #ARGV then error('zaqar: message id conflict') end
    nid = string.format('%016x', seq) .. ARGV[spare]
    spare = spare + 1
  end
  local body = redis.call('HGET', base .. ':body', id)
  drop(base, id)
  redis.call('HSETNX', dlq, 'meta', '{}')
  redis.call('ZADD', KEYS[3], 0, ARGV[10])
  m.s, m.i, m.x = string.format('%d', seq), nil, nil
  if ARGV[11] ~= '' then m.e, m.t = ARGV[11], ARGV[12] end
  store(dlq, nid, m.s, m, body)
end

local chosen, cursor, low = {}, hint(base, now, 'claim')
local candidates = 0
while candidates < limit do
  local batch = redis.call('ZRANGEBYSCORE', base .. ':ids', '(' .. cursor, top,
    'WITHSCORES', 'LIMIT', 0, 100)
  for j = 1, #batch, 2 do
    cursor = batch[j + 1]
    local m = get_msg(base, batch[j])
    local blocked = m and blocked_until(m, now, false)
    if blocked then
      low = sooner(low, blocked)
    elseif m then
      if dl and tonumber(m.n) >= tonumber(ARGV[9]) then
        bury(batch[j], m)
      else
        chosen[#chosen + 1] = {batch[j], m}
      end
      candidates = candidates + 1
      if candidates == limit then break end
    end
  end
  if #batch < 200 then break end
end
-- Everything scanned is now unclaimable: blocked, moved, or taken right here.
if #chosen > 0 then low = sooner(low, ARGV[4]) end
redis.call('HSET', base, 'claim_w', cursor, 'claim_t', low)
if #chosen == 0 then return {'none'} end

local claim_expires, out, mids = tonumber(ARGV[4]), {'ok'}, {}
for _, c in ipairs(chosen) do
  local id, m = c[1], c[2]
  m.i, m.x = ARGV[2], ARGV[4]
  if dl then m.n = string.format('%d', tonumber(m.n) + 1) end
  extend(base, id, m, claim_expires, ARGV[5], ARGV[6])
  save(base, id, m)
  mids[#mids + 1] = id
  emit(out, base, id, m)
end
local record = {t = ARGV[7], u = ARGV[1], e = ARGV[4], m = mids}
redis.call('HSET', base .. ':claim', ARGV[2], cjson.encode(record))
redis.call('ZADD', base .. ':claims', ARGV[4], ARGV[2])
return out
"""

# KEYS: queue. ARGV: claim id, now.
# Returns {'none'} or {'ok', ttl, updated, id, meta, body, ...}.
CLAIM_GET = r"""
local base, cid, now = KEYS[1], ARGV[1], tonumber(ARGV[2])
local c = claim_record(base, cid)
if not c or tonumber(c.e) <= now then return {'none'} end
local out = {'ok', c.t, c.u}
for _, mid in ipairs(c.m) do
  local ok, m = holds(base, cid, mid, now)
  if ok then emit(out, base, mid, m) end
end
if #out == 3 then return {'none'} end
return out
"""

# KEYS: queue. ARGV: claim id, now, claim expiry, extended message expiry,
# extended message ttl, claim ttl. Returns 'ok' or 'none'.
CLAIM_UPDATE = r"""
local base, cid, now = KEYS[1], ARGV[1], tonumber(ARGV[2])
local c = claim_live(base, cid, now)
if not c then return 'none' end
local kept = {}
for _, mid in ipairs(c.m) do
  local ok, m = holds(base, cid, mid, now)
  if ok then
    m.x = ARGV[3]
    extend(base, mid, m, tonumber(ARGV[3]), ARGV[4], ARGV[5])
    save(base, mid, m)
    kept[#kept + 1] = mid
  end
end
c.t, c.u, c.e, c.m = ARGV[6], ARGV[2], ARGV[3], kept
redis.call('HSET', base .. ':claim', cid, cjson.encode(c))
redis.call('ZADD', base .. ':claims', ARGV[3], cid)
hints_closer(base, ARGV[3])
return 'ok'
"""

# KEYS: queue. ARGV: claim id. Frees the claim's messages, live or lapsed.
CLAIM_DELETE = r"""
local base, cid = KEYS[1], ARGV[1]
local c = claim_record(base, cid)
if not c then return 'ok' end
for _, mid in ipairs(c.m) do
  local m = get_msg(base, mid)
  if m and m.i == cid then
    m.i, m.x = nil, nil
    save(base, mid, m)
  end
end
redis.call('HDEL', base .. ':claim', cid)
redis.call('ZREM', base .. ':claims', cid)
redis.call('ZREM', base .. ':stale', cid)
redis.call('HDEL', base, unpack(HINTS))
return 'ok'
"""

# KEYS: queue. ARGV: now, batch size.
# Removes up to a batch of expired messages, retires up to a batch of expired
# claims, forgets up to a batch of stale ones; returns the three counts so
# the caller repeats while any batch came back full.
GC = r"""
local base, now, batch = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', base .. ':exp', '-inf', ARGV[1], 'LIMIT', 0, batch)
for _, id in ipairs(expired) do drop(base, id) end

local dead = redis.call('ZRANGEBYSCORE', base .. ':claims', '-inf', ARGV[1], 'LIMIT', 0, batch)
for _, cid in ipairs(dead) do
  local c = claim_record(base, cid)
  local refs, last = {}, nil
  for _, mid in ipairs(c and c.m or {}) do
    local m = get_msg(base, mid)
    if m and m.i == cid then
      refs[#refs + 1] = mid
      if last == nil or tonumber(m.e) > tonumber(last) then last = m.e end
    end
  end
  redis.call('ZREM', base .. ':claims', cid)
  if last == nil then
    redis.call('HDEL', base .. ':claim', cid)
  else
    c.m = refs
    redis.call('HSET', base .. ':claim', cid, cjson.encode(c))
    redis.call('ZADD', base .. ':stale', last, cid)
  end
end

local stale = redis.call('ZRANGEBYSCORE', base .. ':stale', '-inf', ARGV[1], 'LIMIT', 0, batch)
for _, cid in ipairs(stale) do
  redis.call('HDEL', base .. ':claim', cid)
  redis.call('ZREM', base .. ':stale', cid)
end
return {#expired, #dead, #stale}
"""
