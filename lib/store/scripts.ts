/**
 * Lua scripts of the Redis store. Each one is a single atomic step whose keys all live in one hash slot:
 * the slot of the shard tag `{T}` that is the first two characters of every session id.
 *
 * Key layout (P = key prefix, T = shard tag, uid = user id, sid = public session id):
 *   P{T}:s:<sid>   hash   one session (fields below), PEXPIRE at its deadline
 *   P{T}:u:<uid>   zset   the user's index: sid -> lastActivity; PEXPIRE at the latest absolute deadline
 *   P{T}:x         zset   the shard's expiry queue: sid..uid -> deadline (no TTL; emptied by the scripts)
 *   P{T}:a:<uid>   stream the user's audit log, trimmed by MINID, PEXPIRE = retention
 *   Pt:<uid>       string the user's shard tag (a different slot; see redis.ts)
 *
 * Session hash fields: u user id, h SHA-256 of the token secret, c created, l last activity, a absolute
 * deadline, i IP, g user agent, f device fingerprint, s concurrency flags, and `m:<key>` one per metadata key
 * holding its JSON value.
 *
 * Common arguments, added by the store to every call (KEYS[1] is always P{T}:x; the script derives the other
 * keys of the slot from it, which keeps an ioredis `keyPrefix` working):
 *   ARGV[1] now (ms)   ARGV[2] idle timeout (ms)   ARGV[3] audit retention (ms, 0 = off)
 *   ARGV[4] max distinct IPs   ARGV[5] max distinct user agents   ARGV[6] rapid-creation window (ms)
 * Every script returns { status, payload, events } where events is a flat list of
 * (type, uid, sid, timestamp, data) quintuples, so the caller can emit what was audited.
 */

const PRELUDE = `
local now = tonumber(ARGV[1])
local idle = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])
local maxIps = tonumber(ARGV[4])
local maxUas = tonumber(ARGV[5])
local rapid = tonumber(ARGV[6])
local xkey = KEYS[1]
local base = string.sub(xkey, 1, -2)
local SID_LEN = 24
local events = {}
local serverNow = nil

local function skey(sid) return base .. 's:' .. sid end
local function ukey(uid) return base .. 'u:' .. uid end
local function akey(uid) return base .. 'a:' .. uid end

local function audit(uid, sid, kind, data)
  local n = #events
  events[n + 1] = kind
  events[n + 2] = uid
  events[n + 3] = sid
  events[n + 4] = ARGV[1]
  events[n + 5] = data
  if retention > 0 then
    if not serverNow then
      local t = redis.call('TIME')
      serverNow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    local k = akey(uid)
    redis.call('XADD', k, 'MINID', string.format('%d', serverNow - retention), '*',
      't', ARGV[1], 'e', kind, 's', sid, 'd', data)
    redis.call('PEXPIRE', k, retention)
  end
end

local function reason(r) return '{"reason":"' .. r .. '"}' end

-- The deadline of a session: the earlier of the idle and the absolute deadline.
local function deadline(l, a)
  local d = l + idle
  if a < d then d = a end
  return d
end

local function removeSession(sid, uid, kind, data)
  redis.call('DEL', skey(sid))
  redis.call('ZREM', ukey(uid), sid)
  redis.call('ZREM', xkey, sid .. uid)
  audit(uid, sid, kind, data)
end

-- A PEXPIRE that only ever extends.
local function extendTtl(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end

-- The user's live sessions, oldest activity first; removes (and audits) the ones that are gone or expired.
local function loadLive(uid)
  local u = ukey(uid)
  local sids = redis.call('ZRANGE', u, 0, -1)
  local live = {}
  for _, sid in ipairs(sids) do
    local r = redis.call('HMGET', skey(sid), 'c', 'l', 'a', 'i', 'g', 's', 'u')
    local c, l, a = tonumber(r[1]), tonumber(r[2]), tonumber(r[3])
    if c and l and a and r[7] == uid and deadline(l, a) > now then
      live[#live + 1] = { sid = sid, c = c, l = l, a = a, i = r[4] or '', g = r[5] or '', s = r[6] }
    elseif r[7] == uid or not r[7] then
      removeSession(sid, uid, 'expired', reason('timeout'))
    else
      -- the key belongs to someone else: drop only this user's index entry
      redis.call('ZREM', u, sid)
    end
  end
  return live
end

-- Concurrency rules, evaluated for each session against the user's other sessions (mirrors security.ts).
local function applyFlags(live)
  for _, cur in ipairs(live) do
    local ips, nIps, uas, nUas, others = {}, 0, {}, 0, 0
    local minC, maxC = nil, nil
    for _, o in ipairs(live) do
      if o.sid ~= cur.sid then
        others = others + 1
        if o.i ~= '' and not ips[o.i] then ips[o.i] = true; nIps = nIps + 1 end
        if o.g ~= '' and not uas[o.g] then uas[o.g] = true; nUas = nUas + 1 end
        if not minC or o.c < minC then minC = o.c end
        if not maxC or o.c > maxC then maxC = o.c end
      end
    end
    local bits = 0
    if nIps > maxIps then bits = bits + 1 end
    if nUas > maxUas then bits = bits + 2 end
    if rapid > 0 and others >= 2 and maxC - minC <= rapid then bits = bits + 4 end
    local str = tostring(bits)
    if cur.s ~= str then
      redis.call('HSET', skey(cur.sid), 's', str)
      cur.s = str
    end
  end
end

-- Expires up to \`limit\` due entries of the shard's expiry queue. Returns expired, orphaned counts.
local function sweep(limit)
  local due = redis.call('ZRANGEBYSCORE', xkey, '-inf', now, 'LIMIT', 0, limit)
  local expired, orphaned = 0, 0
  local touched = {}
  for _, m in ipairs(due) do
    local sid = string.sub(m, 1, SID_LEN)
    local uid = string.sub(m, SID_LEN + 1)
    local s = skey(sid)
    local kind = redis.call('TYPE', s)['ok']
    if uid == '' then
      redis.call('ZREM', xkey, m)
      orphaned = orphaned + 1
    elseif kind == 'none' then
      removeSession(sid, uid, 'expired', reason('timeout'))
      expired = expired + 1
      touched[uid] = true
    elseif kind ~= 'hash' then
      removeSession(sid, uid, 'corrupt', reason('malformed'))
      orphaned = orphaned + 1
    else
      local r = redis.call('HMGET', s, 'u', 'l', 'a', 'c', 'h')
      local l, a = tonumber(r[2]), tonumber(r[3])
      if r[1] ~= uid or not l or not a or not tonumber(r[4]) or not r[5] then
        removeSession(sid, uid, 'corrupt', reason('malformed'))
        orphaned = orphaned + 1
      elseif deadline(l, a) <= now then
        removeSession(sid, uid, 'expired', reason('timeout'))
        expired = expired + 1
        touched[uid] = true
      else
        redis.call('ZADD', xkey, deadline(l, a), m)
      end
    end
  end
  for uid, _ in pairs(touched) do applyFlags(loadLive(uid)) end
  return expired, orphaned, #due
end

local function flatHash(sid)
  return redis.call('HGETALL', skey(sid))
end
`

function script (body: string): string {
  return PRELUDE + body
}

/**
 * create: ARGV[7] sid, [8] uid, [9] token hash, [10] absolute deadline, [11] max sessions,
 * [12] policy ('evict-oldest' | 'deny'), [13] ip, [14] user agent, [15] fingerprint, [16] '1' when the
 * tag came from a cache and must be confirmed by an existing index, [17] audit data, [18..] metadata pairs.
 * -> { 'OK', evicted sids } | { 'LIMIT' } | { 'STALE' }
 */
export const CREATE = script(`
local sid, uid = ARGV[7], ARGV[8]
local u = ukey(uid)
if ARGV[16] == '1' and redis.call('EXISTS', u) == 0 then return { 'STALE', {}, events } end
sweep(16)
local live = loadLive(uid)
local max = tonumber(ARGV[11])
local evicted = {}
if #live >= max then
  if ARGV[12] == 'deny' then return { 'LIMIT', {}, events } end
  local excess = #live - max + 1
  local kept = {}
  for n, rec in ipairs(live) do
    if n <= excess then
      removeSession(rec.sid, uid, 'evicted', reason('limit'))
      evicted[#evicted + 1] = rec.sid
    else
      kept[#kept + 1] = rec
    end
  end
  live = kept
end
local abs = tonumber(ARGV[10])
local s = skey(sid)
local fields = { 'u', uid, 'h', ARGV[9], 'c', ARGV[1], 'l', ARGV[1], 'a', ARGV[10],
  'i', ARGV[13], 'g', ARGV[14], 'f', ARGV[15], 's', '0' }
for n = 18, #ARGV, 2 do
  fields[#fields + 1] = 'm:' .. ARGV[n]
  fields[#fields + 1] = ARGV[n + 1]
end
redis.call('HSET', s, unpack(fields))
local d = deadline(now, abs)
redis.call('PEXPIRE', s, d - now)
redis.call('ZADD', u, now, sid)
extendTtl(u, abs - now)
redis.call('ZADD', xkey, d, sid .. uid)
live[#live + 1] = { sid = sid, c = now, l = now, a = abs, i = ARGV[13], g = ARGV[14], s = '0' }
applyFlags(live)
audit(uid, sid, 'created', ARGV[17])
return { 'OK', { evicted, flatHash(sid) }, events }
`)

/**
 * touch: ARGV[7] sid, [8] touch interval (ms), [9] activity audit data or '' (no activity audit).
 * -> { 'OK' | 'FRESH' | 'GONE', flags }
 */
export const TOUCH = script(`
local sid = ARGV[7]
local s = skey(sid)
local r = redis.call('HMGET', s, 'u', 'l', 'a', 's')
local uid, l, a = r[1], tonumber(r[2]), tonumber(r[3])
if not uid or not l or not a then return { 'GONE', '0', events } end
if deadline(l, a) <= now then
  removeSession(sid, uid, 'expired', reason('timeout'))
  applyFlags(loadLive(uid))
  return { 'GONE', '0', events }
end
if now - l < tonumber(ARGV[8]) then return { 'FRESH', r[4] or '0', events } end
redis.call('HSET', s, 'l', ARGV[1])
local d = deadline(now, a)
redis.call('PEXPIRE', s, d - now)
redis.call('ZADD', ukey(uid), 'XX', now, sid)
redis.call('ZADD', xkey, d, sid .. uid)
applyFlags(loadLive(uid))
if ARGV[9] ~= '' then audit(uid, sid, 'activity', ARGV[9]) end
return { 'OK', redis.call('HGET', s, 's') or '0', events }
`)

/**
 * update: ARGV[7] sid, [8] max metadata bytes, [9] ip or '\\0' (unchanged), [10] user agent or '\\0',
 * [11] fingerprint or '\\0', [12] audit data, [13..] metadata pairs (key, JSON value or '' to delete).
 * The metadata size is the byte length of the merged object serialized as JSON; it is checked before any write.
 * -> { 'OK' | 'GONE' | 'TOO_LARGE' }
 */
export const UPDATE = script(`
local sid = ARGV[7]
local s = skey(sid)
local r = redis.call('HMGET', s, 'u', 'l', 'a')
local uid, l, a = r[1], tonumber(r[2]), tonumber(r[3])
if not uid or not l or not a then return { 'GONE', '', events } end
if deadline(l, a) <= now then
  removeSession(sid, uid, 'expired', reason('timeout'))
  return { 'GONE', '', events }
end
local all = redis.call('HGETALL', s)
local meta = {}
for n = 1, #all, 2 do
  if string.sub(all[n], 1, 2) == 'm:' then meta[string.sub(all[n], 3)] = all[n + 1] end
end
for n = 13, #ARGV, 2 do
  if ARGV[n + 1] == '' then meta[ARGV[n]] = nil else meta[ARGV[n]] = ARGV[n + 1] end
end
local size, count = 2, 0
for k, v in pairs(meta) do
  size = size + #k + 3 + #v
  count = count + 1
end
if count > 0 then size = size - 1 end
if size > tonumber(ARGV[8]) then return { 'TOO_LARGE', '', events } end
for n = 13, #ARGV, 2 do
  if ARGV[n + 1] == '' then
    redis.call('HDEL', s, 'm:' .. ARGV[n])
  else
    redis.call('HSET', s, 'm:' .. ARGV[n], ARGV[n + 1])
  end
end
local changed = false
if ARGV[9] ~= '\\0' then redis.call('HSET', s, 'i', ARGV[9]); changed = true end
if ARGV[10] ~= '\\0' then redis.call('HSET', s, 'g', ARGV[10]); changed = true end
if ARGV[11] ~= '\\0' then redis.call('HSET', s, 'f', ARGV[11]) end
if changed then applyFlags(loadLive(uid)) end
audit(uid, sid, 'updated', ARGV[12])
return { 'OK', '', events }
`)

/**
 * invalidate: ARGV[7] sid, [8] audit type ('invalidated' | 'expired'), [9] audit data,
 * [10] owner uid or '' (any owner). An 'expired' call only removes a session whose deadline has passed.
 * -> { 'OK' | 'GONE', uid }
 */
export const INVALIDATE = script(`
local sid = ARGV[7]
local r = redis.call('HMGET', skey(sid), 'u', 'l', 'a')
local uid = r[1]
if not uid or (ARGV[10] ~= '' and ARGV[10] ~= uid) then return { 'GONE', '', events } end
if ARGV[8] == 'expired' then
  local l, a = tonumber(r[2]), tonumber(r[3])
  if l and a and deadline(l, a) > now then return { 'GONE', '', events } end
end
removeSession(sid, uid, ARGV[8], ARGV[9])
applyFlags(loadLive(uid))
return { 'OK', uid, events }
`)

/**
 * invalidateAll: ARGV[7] uid, [8] sid to keep or '', [9] audit data, [10] '1' to require an existing index.
 * -> { 'OK', count } | { 'STALE' }
 */
export const INVALIDATE_ALL = script(`
local uid, keep = ARGV[7], ARGV[8]
local u = ukey(uid)
if ARGV[10] == '1' and redis.call('EXISTS', u) == 0 then return { 'STALE', 0, events } end
local live = loadLive(uid)
local count = 0
local kept = {}
for _, rec in ipairs(live) do
  if rec.sid == keep then
    kept[#kept + 1] = rec
  else
    removeSession(rec.sid, uid, 'invalidated', ARGV[9])
    count = count + 1
  end
end
applyFlags(kept)
audit(uid, keep, 'all_user_sessions_invalidated', ARGV[9])
return { 'OK', count, events }
`)

/**
 * list: ARGV[7] uid, [8] '1' to require an existing index.
 * -> { 'OK', { sid, hash fields, sid, hash fields, ... } newest activity first } | { 'STALE' }
 */
export const LIST = script(`
local uid = ARGV[7]
if ARGV[8] == '1' and redis.call('EXISTS', ukey(uid)) == 0 then return { 'STALE', {}, events } end
local live = loadLive(uid)
applyFlags(live)
local out = {}
for n = #live, 1, -1 do
  out[#out + 1] = live[n].sid
  out[#out + 1] = flatHash(live[n].sid)
end
return { 'OK', out, events }
`)

/**
 * rotate: ARGV[7] sid, [8] hash of the presented secret, [9] new hash, [10] audit data.
 * -> { 'OK' | 'GONE' }
 */
export const ROTATE = script(`
local sid = ARGV[7]
local s = skey(sid)
local r = redis.call('HMGET', s, 'u', 'h', 'l', 'a')
local uid, l, a = r[1], tonumber(r[3]), tonumber(r[4])
if not uid or r[2] ~= ARGV[8] or not l or not a or deadline(l, a) <= now then return { 'GONE', '', events } end
redis.call('HSET', s, 'h', ARGV[9])
audit(uid, sid, 'rotated', ARGV[10])
return { 'OK', '', events }
`)

/**
 * discard: ARGV[7] sid. Removes whatever is stored under the session key when it is not a valid session.
 * -> { 'OK' | 'GONE' }
 */
export const DISCARD = script(`
local sid = ARGV[7]
local s = skey(sid)
local kind = redis.call('TYPE', s)['ok']
if kind == 'none' then return { 'GONE', '', events } end
local uid = nil
if kind == 'hash' then uid = redis.call('HGET', s, 'u') end
redis.call('DEL', s)
if uid and uid ~= '' then
  redis.call('ZREM', ukey(uid), sid)
  redis.call('ZREM', xkey, sid .. uid)
  audit(uid, sid, 'corrupt', reason('malformed'))
end
return { 'OK', '', events }
`)

/**
 * record: ARGV[7] uid, [8] sid, [9] type, [10] data. Appends one audit event.
 */
export const RECORD = script(`
audit(ARGV[7], ARGV[8], ARGV[9], ARGV[10])
return { 'OK', '', {} }
`)

/**
 * cleanup: ARGV[7] batch size. Expires up to one batch of the shard's due entries.
 * -> { 'OK', { expired, orphaned, examined } }
 */
export const CLEANUP = script(`
local expired, orphaned, examined = sweep(tonumber(ARGV[7]))
return { 'OK', { expired, orphaned, examined }, events }
`)

/**
 * resolveTag, the only script outside a shard's slot. KEYS[1] = Pt:<uid>; ARGV[1] candidate tag,
 * ARGV[2] minimum TTL (ms), ARGV[3] '1' to create when missing (and extend the TTL).
 * -> { tag, pttl } | false
 */
export const RESOLVE_TAG = `
local cur = redis.call('GET', KEYS[1])
local ttl = tonumber(ARGV[2])
if not cur then
  if ARGV[3] ~= '1' then return false end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
  return { ARGV[1], ttl }
end
if ARGV[3] == '1' and redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return { cur, redis.call('PTTL', KEYS[1]) }
`
