"""Lua scripts for queues and messages; every read-modify-write runs as one script.

Redis runs a script without interleaving any other command, so a script is a
serialisable transaction: the checks it makes still hold when it writes. That
is what keeps sequence allocation, the delete decision table, pops and claims
race-free without WATCH retries or locks.

Times and counts arrive as strings formatted by Python (``repr`` of a float)
and are stored as those same strings: Lua's ``tostring`` keeps only 14
significant digits, which would shift timestamps by up to 0.1 ms. Scripts
compare with ``tonumber`` and never write a number they computed from a
float. Scripts return strings or integers only (Redis truncates Lua floats).

Message record (JSON object of strings in the queue's ``:msg`` hash):
``s`` seq, ``t`` ttl, ``c`` created, ``e`` expires, ``a`` available from,
``n`` claim count, and when set ``k`` client id, ``i`` claim id, ``x`` claim
expiry (a copy of the claim's, so liveness is decided from the message alone).
"""

from __future__ import annotations

# Shared helpers, prepended to every script (scripts cannot call each other).
LIB = r"""
local function get_msg(base, id)
  local raw = redis.call('HGET', base .. ':msg', id)
  if raw then return cjson.decode(raw) end
  return nil
end

local function save(base, id, m)
  redis.call('HSET', base .. ':msg', id, cjson.encode(m))
end

local function alive(m, now) return tonumber(m.e) > now end

local function held(m, now) return m.i ~= nil and tonumber(m.x) > now end

local function drop(base, id)
  redis.call('ZREM', base .. ':ids', id)
  redis.call('ZREM', base .. ':exp', id)
  redis.call('HDEL', base .. ':msg', id)
  redis.call('HDEL', base .. ':body', id)
end

local function emit(out, base, id, m)
  out[#out + 1] = id
  out[#out + 1] = cjson.encode(m)
  out[#out + 1] = redis.call('HGET', base .. ':body', id)
end

local function claim_record(base, cid)
  local raw = redis.call('HGET', base .. ':claim', cid)
  if raw then return cjson.decode(raw) end
  return nil
end

-- Whether message ``mid`` exists, is unexpired and is under the live claim ``cid``.
local function holds(base, cid, mid, now)
  local m = get_msg(base, mid)
  if m ~= nil and m.i == cid and held(m, now) and alive(m, now) then return true, m end
  return false, nil
end

-- A claim lives while its record is unexpired and it still holds a message.
local function claim_live(base, cid, now)
  local c = claim_record(base, cid)
  if not c or tonumber(c.e) <= now then return nil end
  for _, mid in ipairs(c.m) do
    if holds(base, cid, mid, now) then return c end
  end
  return nil
end

-- Stretch a message that would die before its claim: expiry = claim expiry + grace.
local function extend(base, id, m, claim_expires, expires, ttl)
  if tonumber(m.e) < claim_expires then
    m.e, m.t = expires, ttl
    redis.call('ZADD', base .. ':exp', expires, id)
  end
end

-- Scan hints (queue record fields ``<kind>_w``/``<kind>_t``, kind 'claim'
-- or 'pop'): every message with seq <= <kind>_w stays out of reach of that
-- kind of scan until <kind>_t ('' = for good), so the scan may start after
-- <kind>_w instead of walking the in-flight front of the queue again. Scans
-- write them; a release drops them; a renewal can only bring them closer.
local function hint(base, now, kind)
  local h = redis.call('HMGET', base, kind .. '_w', kind .. '_t')
  if h[1] and (h[2] == '' or tonumber(h[2]) > now) then return h[1], h[2] end
  return '0', ''
end

-- The earlier of two time strings, '' meaning never.
local function sooner(a, b)
  if a == '' then return b end
  if b == '' or tonumber(a) < tonumber(b) then return a end
  return b
end

local HINTS = {'claim_w', 'claim_t', 'pop_w', 'pop_t'}

local function hints_closer(base, t)
  for _, kind in ipairs({'claim', 'pop'}) do
    local old = redis.call('HGET', base, kind .. '_t')
    if old then redis.call('HSET', base, kind .. '_t', sooner(old, t)) end
  end
end

-- When a message out of reach now may come within reach ('' never); nil
-- when it is within reach now. Claims wait for the delay, pops do not.
local function blocked_until(m, now, ignore_delay)
  if not alive(m, now) then return '' end
  if held(m, now) then return m.x end
  if not ignore_delay and tonumber(m.a) > now then return m.a end
  return nil
end

local function store(base, id, seq, m, body)
  redis.call('ZADD', base .. ':ids', seq, id)
  redis.call('ZADD', base .. ':exp', m.e, id)
  save(base, id, m)
  redis.call('HSET', base .. ':body', id, body)
end
"""

# KEYS: queue, project index. ARGV: name, metadata JSON. Returns 1 when created.
QUEUE_CREATE = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'meta', ARGV[2], 'seq', '0')
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""

# KEYS: project index. ARGV: the key of the project's queue records without the (quoted) name,
# range start ('-' or '(' .. marker), how many names to read, name filter ('' for none).
# Returns {names read, last name read ('' when none), then name, metadata JSON per queue}
# for the names that pass the filter and whose record still exists (a concurrent delete).
# Names are quoted as ``Backend.queue_key`` quotes them (urllib's quote with safe='').
QUEUE_LIST = r"""
local names = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], '+', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {#names, names[#names] or ''}
local needle = ARGV[4]
local function quoted(c) return string.format('%%%02X', string.byte(c)) end
for _, name in ipairs(names) do
  if needle == '' or string.find(name, needle, 1, true) then
    local meta = redis.call('HGET', ARGV[1] .. (string.gsub(name, '[^%w_%.~%-]', quoted)), 'meta')
    if meta then
      out[#out + 1] = name
      out[#out + 1] = meta
    end
  end
end
return out
"""

# KEYS: queue. ARGV: metadata JSON, invalidation channel. Returns 0 when the queue is missing.
# The queue key is published in the same script (atomically with the write) so that
# every process drops its cached copy (see ``zaqar.storage.cache``).
QUEUE_SET_METADATA = r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'meta', ARGV[1])
redis.call('PUBLISH', ARGV[2], KEYS[1])
return 1
"""

# KEYS: queue. ARGV: metadata JSON as read before, new metadata JSON, invalidation channel.
# Compare-and-set for QueueController.update_metadata, whose change function
# runs in Python between the read and this script. Returns 0 when the queue is
# missing, 1 when stored, 2 (nothing written) when the metadata changed since
# it was read. Only the ``meta`` field is compared, so posts and claims
# writing ``seq`` and the scan hints of the same hash cause no retries.
QUEUE_REPLACE_METADATA = r"""
local current = redis.call('HGET', KEYS[1], 'meta')
if not current then return 0 end
if current ~= ARGV[1] then return 2 end
redis.call('HSET', KEYS[1], 'meta', ARGV[2])
redis.call('PUBLISH', ARGV[3], KEYS[1])
return 1
"""

# KEYS: queue, project index.
# ARGV: name, now, has client (1/0), client id, count,
#       then per draft: body, ttl, expires, available, random id tail;
#       then spare id tails for collisions with dead-lettered ids.
# Ids are chosen before anything is written, so a conflict stores nothing.
POST = r"""
local base, n = KEYS[1], tonumber(ARGV[5])
local first = tonumber(redis.call('HGET', base, 'seq') or '0') + 1
local spare = 6 + 5 * n
local ids = {}
for k = 0, n - 1 do
  local prefix = string.format('%016x', first + k)
  local id = prefix .. ARGV[10 + 5 * k]
  while redis.call('HEXISTS', base .. ':msg', id) == 1 do
    if spare > #ARGV then return {'conflict'} end
    id = prefix .. ARGV[spare]
    spare = spare + 1
  end
  ids[k + 1] = id
end
redis.call('HSETNX', base, 'meta', '{}')
redis.call('HSET', base, 'seq', string.format('%d', first + n - 1))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
for k = 0, n - 1 do
  local at = 6 + 5 * k
  local seq = string.format('%d', first + k)
  local m = {s = seq, t = ARGV[at + 1], c = ARGV[2], e = ARGV[at + 2], a = ARGV[at + 3], n = '0'}
  if ARGV[3] == '1' then m.k = ARGV[4] end
  store(base, ids[k + 1], seq, m, ARGV[at])
end
table.insert(ids, 1, 'ok')
return ids
"""

# KEYS: queue. ARGV: marker id or '', seq to start after (used when the marker
# is not stored here), now, limit, hide client (1/0), client id,
# include claimed (1/0), include delayed (1/0), scan budget.
# Examines at most ``budget`` entries so one page never blocks the server for
# long; returns {'done'|'more', cursor seq, id, meta, body, ...}.
LIST = r"""
local base, now = KEYS[1], tonumber(ARGV[3])
local limit, budget = tonumber(ARGV[4]), tonumber(ARGV[9])
local cursor = ARGV[2]
if ARGV[1] ~= '' then
  local score = redis.call('ZSCORE', base .. ':ids', ARGV[1])
  if score then cursor = score end
end
if ARGV[7] ~= '1' and ARGV[8] ~= '1' then
  local skip = hint(base, now, 'claim')
  if tonumber(skip) > tonumber(cursor) then cursor = skip end
end
local function visible(m)
  if not alive(m, now) then return false end
  if ARGV[5] == '1' and m.k == ARGV[6] then return false end
  if ARGV[7] ~= '1' and held(m, now) then return false end
  if ARGV[8] ~= '1' and tonumber(m.a) > now then return false end
  return true
end
local out = {'more', ''}
local found, seen = 0, 0
local chunk = math.min(limit + 10, budget)
while found < limit and seen < budget do
  local batch = redis.call('ZRANGEBYSCORE', base .. ':ids', '(' .. cursor, '+inf',
    'WITHSCORES', 'LIMIT', 0, chunk)
  for j = 1, #batch, 2 do
    cursor, seen = batch[j + 1], seen + 1
    local m = get_msg(base, batch[j])
    if m and visible(m) then
      emit(out, base, batch[j], m)
      found = found + 1
      if found == limit then break end
    end
  end
  if found < limit and #batch < 2 * chunk then
    out[1] = 'done'
    break
  end
end
out[2] = cursor
return out
"""

# KEYS: queue. ARGV: now, limit. Returns {'ok', id, meta, body, ...}.
POP = r"""
local base, now, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local chosen, cursor, low = {}, hint(base, now, 'pop')
while #chosen < limit do
  local batch = redis.call('ZRANGEBYSCORE', base .. ':ids', '(' .. cursor, '+inf',
    'WITHSCORES', 'LIMIT', 0, 100)
  for j = 1, #batch, 2 do
    cursor = batch[j + 1]
    local m = get_msg(base, batch[j])
    local blocked = m and blocked_until(m, now, true)
    if blocked then
      low = sooner(low, blocked)
    elseif m then
      chosen[#chosen + 1] = {batch[j], m}
      if #chosen == limit then break end
    end
  end
  if #batch < 200 then break end
end
if redis.call('EXISTS', base) == 1 then
  redis.call('HSET', base, 'pop_w', cursor, 'pop_t', low)
end
local out = {'ok'}
for _, c in ipairs(chosen) do
  emit(out, base, c[1], c[2])
  drop(base, c[1])
end
return out
"""

# KEYS: queue. ARGV: message id, has claim id (1/0), claim id, now.
# Returns 'ok' or the error to raise: 'claimed', 'not_claimed', 'not_live'.
DELETE = r"""
local base, now = KEYS[1], tonumber(ARGV[4])
local m = get_msg(base, ARGV[1])
if not m or not alive(m, now) then return 'ok' end
local live = held(m, now)
if ARGV[2] == '0' then
  if live then return 'claimed' end
elseif ARGV[3] ~= m.i then
  if not live then return 'not_claimed' end
  if claim_live(base, ARGV[3], now) then return 'claimed' end
  return 'not_live'
end
drop(base, ARGV[1])
return 'ok'
"""

# KEYS: queue. ARGV: now, number of claim ids, claim ids..., message ids...
# Returns {'ok'} or {'no_claim', claim id} (then nothing was deleted).
DELETE_MANY = r"""
local base, now, ncids = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local first_id = 3 + ncids
for c = 3, 2 + ncids do
  local found = false
  for j = first_id, #ARGV do
    if holds(base, ARGV[c], ARGV[j], now) then
      found = true
      break
    end
  end
  if not found then return {'no_claim', ARGV[c]} end
end
for j = first_id, #ARGV do drop(base, ARGV[j]) end
return {'ok'}
"""

# KEYS: queue. ARGV: now.
# Returns {total, claimed, oldest id, oldest created, newest id, newest created}, or
# {0, 0, whether the queue record exists (1/0)} when no message is alive.
STATS = r"""
local base, now = KEYS[1], tonumber(ARGV[1])
local total = redis.call('ZCOUNT', base .. ':exp', '(' .. ARGV[1], '+inf')
if total == 0 then return {0, 0, redis.call('EXISTS', base)} end
local claimed = 0
for _, cid in ipairs(redis.call('ZRANGEBYSCORE', base .. ':claims', '(' .. ARGV[1], '+inf')) do
  local c = claim_record(base, cid)
  for _, mid in ipairs(c and c.m or {}) do
    if holds(base, cid, mid, now) then claimed = claimed + 1 end
  end
end
local out = {total, claimed}
for _, cmd in ipairs({'ZRANGE', 'ZREVRANGE'}) do
  local start, found = 0, false
  while not found do
    local batch = redis.call(cmd, base .. ':ids', start, start + 49)
    if #batch == 0 then return {0, 0, redis.call('EXISTS', base)} end
    for _, id in ipairs(batch) do
      local m = get_msg(base, id)
      if m and alive(m, now) then
        out[#out + 1] = id
        out[#out + 1] = m.c
        found = true
        break
      end
    end
    start = start + 50
  end
end
return out
"""
