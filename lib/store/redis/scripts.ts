import { AUDIT_LAYOUT, EXPIRY_QUEUE_ENTRIES, MAX_EXPIRY_QUEUES } from './keys'
import { DEFAULT_AUDIT_MAX_EVENTS_PER_USER } from '../types'
/** How far out of write order two instances' clocks may put a user's events (see AUDIT_QUERY). */
const AUDIT_CLOCK_SKEW_MS = 1000
import { END_REASON_BY_AUDIT, ENDED_SESSION_MEMORY_MS, MAX_KNOWN_DEVICES } from '../../security/stepup'
import { FLAG_DISTINCT_IPS, FLAG_DISTINCT_USER_AGENTS, FLAG_RAPID_CREATION } from '../../security/concurrency'
import { FORBIDDEN_KEYS } from '../../core/metadata'
import { SESSION_ID_LENGTH, TOKEN_HASH_LENGTH } from '../../core/token'
import { luaUnpackTable } from './user-agent'

/**
 * Lua scripts of the Redis store. Each one is a single atomic step whose keys all live in one hash slot:
 * the slot of the shard tag `{T}` that is the first two characters of every session id, derived from the user id
 * (core/token.ts shardTag), so a user's keys and sessions share one slot and no script looks the tag up.
 *
 * Key layout (P = key prefix, T = shard tag, uid = user id, sid = public session id):
 *   P{T}:s:<sid>   string  one session record (JSON, below), PEXPIRE at its deadline
 *   P{T}:u:<uid>   zset    the user's index: sid -> lastActivity, and '~' .. device key -> last login for each known
 *                          device (see rememberDevice); PEXPIRE at the latest absolute deadline, or the known-devices
 *                          window after the last login when that is later
 *   P{T}:x         zset    the shard's expiry queue: sid..uid -> deadline (no TTL; drained by the scripts), split
 *   P{T}:x<k>      zset      into sub-queues of at most 128 members (x, x1, x2, ...; see queueSet)
 *   P{T}:xn        string  how many sub-queues the shard has (absent for one)
 *   P{T}:a2:u:<uid> list   the user's audit timeline, newest first: entries 't|type|#sid|sid..data' (t = writer's
 *                          clock), at most maxEventsPerUser (LTRIM), expired entries popped from the tail by each
 *                          write, PEXPIRE = retention (refreshed by every write)
 *   P{T}:a2:c:<uid> string the timestamp of the newest event the per-user cap dropped, PEXPIRE = retention
 *   P{T}:a2:f       stream  the shard's SIEM feed (fields t, e, u, s, d), only with audit.feed; MINID trim,
 *                          PEXPIRE = retention
 *   ('a2' is the version of the audit layout; 0.1.0 wrote one stream per shard, P{T}:a, which nothing reads now)
 *
 * A session record is one JSON object, so the request path reads it with one GET: u user id, h SHA-256 of the
 * token secret, c created, l last activity, a absolute deadline, i IP, g user agent, f device fingerprint,
 * s concurrency flags (i, g, f and s are left out at their defaults '' and 0: see encode), m metadata as
 * { key: JSON text of the value } (the scripts merge keys without ever
 * decoding a value, so cjson cannot alter what the application stored).
 *
 * Common arguments, added by the store to every call (KEYS[1] is always P{T}:x; the script derives the other
 * keys of the slot from it, which keeps an ioredis `keyPrefix` working):
 *   ARGV[1] now (ms)   ARGV[2] idle timeout (ms)   ARGV[3] audit settings 'retention/cap/feed': retention (ms,
 *   0 = off), most events kept per user, '1' to append to the shard's feed too (a bare retention is accepted)
 *   ARGV[4] max distinct IPs   ARGV[5] max distinct user agents   ARGV[6] rapid-creation window (ms)
 * Every script returns { status, payload, events } where events is a flat list of
 * (type, uid, sid, timestamp, data) quintuples, so the caller can emit what was audited.
 * Every check (limit, ownership, size, expiry) is made before the first write of a script.
 */

const PRELUDE = `
local ENDED_MS = ${ENDED_SESSION_MEMORY_MS}
local END_REASON = ${luaTable(END_REASON_BY_AUDIT)}
local now = tonumber(ARGV[1])
local idle = tonumber(ARGV[2])
local retention, auditCap, auditFeed = tonumber(ARGV[3]), ${DEFAULT_AUDIT_MAX_EVENTS_PER_USER}, false
do
  local r, c, f = string.match(ARGV[3], '^(%d+)/(%d+)/([01])$')
  if r then retention, auditCap, auditFeed = tonumber(r), tonumber(c), f == '1' end
end
local maxIps = tonumber(ARGV[4])
local maxUas = tonumber(ARGV[5])
local rapid = tonumber(ARGV[6])
local xkey = KEYS[1]
local base = string.sub(xkey, 1, -2)
local SID_LEN = ${SESSION_ID_LENGTH}
local HASH_LEN = ${TOKEN_HASH_LENGTH}
local FORBIDDEN = { ${[...FORBIDDEN_KEYS].map((key) => `${key} = true`).join(', ')} }
local FLAG_IPS, FLAG_UAS, FLAG_RAPID = ${FLAG_DISTINCT_IPS}, ${FLAG_DISTINCT_USER_AGENTS}, ${FLAG_RAPID_CREATION}
local events = {}
local serverNow = nil

local function skey(sid) return base .. 's:' .. sid end
local function ukey(uid) return base .. 'u:' .. uid end
-- Redis's clock (ms), read once per script.
local function redisTime()
  if not serverNow then
    local t = redis.call('TIME')
    serverNow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return serverNow
end
-- The caller's deadline (epoch ms, '' for none) against Redis's clock: Redis's time when it has passed, else nil.
-- A call that lands after its caller answered 503 must change nothing (create, rotate).
local function pastDeadline(notAfter)
  if notAfter == nil or notAfter == '' then return nil end
  if redisTime() > tonumber(notAfter) then return string.format('%d', serverNow) end
  return nil
end
-- The user's index also holds the user's known devices, as '~' .. device key (no session id starts with '~').
local function isDevice(member) return string.byte(member, 1) == 126 end

-- The shard's expiry queue is split into sub-queues of at most QUEUE_ENTRIES members: P{T}:x, then P{T}:x1,
-- P{T}:x2, ... (how many: P{T}:xn, absent for one). Redis keeps a sorted set of up to 128 members as a listpack,
-- ~48 bytes a session here, and a larger one as a skiplist, ~137 bytes: one queue per shard passed 128 members at
-- about 500,000 sessions. A member is in one sub-queue; creates fill the first one with room.
local QUEUE_ENTRIES = ${EXPIRY_QUEUE_ENTRIES}
local MAX_QUEUES = ${MAX_EXPIRY_QUEUES}
local countKey = xkey .. 'n'
local checkedQueues = {}
local queues = nil

-- A repair of a key that belongs to no user (a queue, its count, the audit feed): emitted as an audit event and
-- logged by the caller, not stored, since the audit log is per user.
local function emitCorrupt(note)
  local n = #events
  events[n + 1] = 'corrupt'
  events[n + 2] = ''
  events[n + 3] = ''
  events[n + 4] = ARGV[1]
  events[n + 5] = note
end

-- Sub-queue k's key. A sub-queue of another type would fail every script of the shard: it is deleted (the sessions
-- it listed still expire by their keys' TTLs, and their users' scripts drop them) and a 'corrupt' event is emitted.
local function queueKey(k)
  local key = xkey
  if k > 0 then key = xkey .. k end
  if not checkedQueues[k] then
    checkedQueues[k] = true
    local found = redis.call('TYPE', key)['ok']
    if found ~= 'zset' and found ~= 'none' then
      redis.call('DEL', key)
      emitCorrupt('{"reason":"queue"}')
    end
  end
  return key
end

-- How many sub-queues the shard has. A count that is not one (another type, not a number, out of range), or that
-- is too small (the sub-queue after its last exists: the count was deleted or lowered by hand), is rebuilt from the
-- sub-queues that exist, with a 'corrupt' event: a sub-queue beyond the count would never be drained.
local function queueCount()
  if queues then return queues end
  local raw = redis.pcall('GET', countKey)
  local n = nil
  if not raw then
    n = 1
  elseif type(raw) == 'string' and string.match(raw, '^[1-9]%d*$') and tonumber(raw) <= MAX_QUEUES then
    n = tonumber(raw)
  end
  if n and (n == MAX_QUEUES or redis.call('EXISTS', xkey .. n) == 0) then
    queues = n
  else
    redis.call('DEL', countKey)
    queues = 1
    for k = 1, MAX_QUEUES - 1 do
      if redis.call('EXISTS', xkey .. k) == 1 then queues = k + 1 end
    end
    if queues > 1 then redis.call('SET', countKey, queues) end
    emitCorrupt('{"reason":"queue"}')
  end
  return queues
end

local function setQueueCount(n)
  queues = n
  if n == 1 then redis.call('DEL', countKey) else redis.call('SET', countKey, n) end
end

-- Removes member m from whichever sub-queue holds it.
local function queueRemove(m)
  for k = 0, queueCount() - 1 do
    if redis.call('ZREM', queueKey(k), m) == 1 then return end
  end
end

-- Sets member m's deadline: in the sub-queue that holds it, else in the first one with room, opening a new sub-queue
-- when all are full (the last one takes the excess once there are MAX_QUEUES). A create looks too: ioredis resends a
-- command whose reply a reconnect lost, and a replayed CREATE must not file its session a second time. Each sub-queue
-- holding the member costs a scan of up to 128 entries: two sub-queues per shard at 1,000,000 sessions, twenty at
-- 10,000,000.
local function queueSet(m, score)
  local n = queueCount()
  local room = nil
  for k = 0, n - 1 do
    local key = queueKey(k)
    if redis.call('ZSCORE', key, m) then
      redis.call('ZADD', key, score, m)
      return
    end
    if room == nil and redis.call('ZCARD', key) < QUEUE_ENTRIES then room = key end
  end
  if room == nil then
    if n < MAX_QUEUES then
      room = queueKey(n)
      setQueueCount(n + 1)
    else
      room = queueKey(n - 1)
    end
  end
  redis.call('ZADD', room, score, m)
end

-- Forgets the last sub-queues once Redis has deleted them (an emptied sorted set is deleted).
local function dropEmptyQueues()
  local n = queueCount()
  local kept = n
  while kept > 1 and redis.call('EXISTS', queueKey(kept - 1)) == 0 do kept = kept - 1 end
  if kept ~= n then setQueueCount(kept) end
end

-- Audit layout ${AUDIT_LAYOUT}: the user's timeline (a list, newest first), the cap marker, the shard's opt-in feed.
local AUDIT_BASE = base .. 'a${AUDIT_LAYOUT}:'
local function timelineKey(uid) return AUDIT_BASE .. 'u:' .. uid end
local function capKey(uid) return AUDIT_BASE .. 'c:' .. uid end
local feedKey = AUDIT_BASE .. 'f'

-- The time of a timeline entry ('t|type|<length of sid>|<sid><data>'), or nil when the entry is not one.
local function entryTime(entry)
  if type(entry) ~= 'string' then return nil end
  return tonumber(string.match(entry, '^([^|]*)|'))
end

local function audit(uid, sid, kind, data)
  local n = #events
  events[n + 1] = kind
  events[n + 2] = uid
  events[n + 3] = sid
  events[n + 4] = ARGV[1]
  events[n + 5] = data
  if retention <= 0 then return end
  local l = timelineKey(uid)
  -- The session id goes with its length: ids recorded through recordSecurityEvent may hold any character.
  local entry = ARGV[1] .. '|' .. kind .. '|' .. #sid .. '|' .. sid .. data
  local len = redis.pcall('LPUSH', l, entry)
  -- A timeline key of another type (written by hand) would fail the script after its other writes: replace it.
  -- The repair is itself audited: a corrupt record (reason audit_log) goes in first, and to the caller.
  if type(len) ~= 'number' then
    redis.call('DEL', l)
    local note = '{"reason":"audit_log"}'
    redis.call('LPUSH', l, ARGV[1] .. '|corrupt|0|' .. note)
    n = #events
    events[n + 1] = 'corrupt'
    events[n + 2] = uid
    events[n + 3] = ''
    events[n + 4] = ARGV[1]
    events[n + 5] = note
    len = redis.call('LPUSH', l, entry)
  end
  -- Retention, amortised: each write pops at most two expired entries from the tail (the oldest end), so the
  -- list shrinks faster than one write grows it; the query also skips what is older than the retention.
  local cutoff = now - retention
  for _ = 1, 2 do
    local t = entryTime(redis.call('LINDEX', l, -1))
    if len <= 1 or not t or t >= cutoff then break end
    redis.call('RPOP', l)
    len = len - 1
  end
  if len > auditCap then
    -- The cap drops the oldest; the newest dropped time is kept so the query can say the log was cut.
    local dropped = entryTime(redis.call('LINDEX', l, auditCap))
    redis.call('LTRIM', l, 0, auditCap - 1)
    if dropped then redis.call('SET', capKey(uid), string.format('%d', dropped), 'PX', retention) end
  end
  redis.call('PEXPIRE', l, retention)
  if auditFeed then
    local minId = string.format('%d', redisTime() - retention)
    local added = redis.pcall('XADD', feedKey, 'MINID', minId, '*', 't', ARGV[1], 'e', kind, 'u', uid, 's', sid, 'd', data)
    if type(added) == 'table' and added.err then
      emitCorrupt('{"reason":"audit_feed"}')
      redis.call('DEL', feedKey)
      redis.call('XADD', feedKey, 'MINID', minId, '*', 't', ARGV[1], 'e', kind, 'u', uid, 's', sid, 'd', data)
    end
    redis.call('PEXPIRE', feedKey, retention)
  end
end

local function reason(r) return '{"reason":"' .. r .. '"}' end

-- The deadline of a session: the earlier of the idle deadline (the session's own idle timeout \`d\` when it has
-- one, else the store's) and the absolute deadline. The same rule as sessionDeadline in store/types.ts.
local function deadline(rec)
  local d = rec.l + (rec.d or idle)
  if rec.a < d then d = rec.a end
  return d
end

-- The byte length of metadata (key -> JSON text) serialized as one JSON object, and its key count. The same rule
-- as metadataBytes in core/metadata.ts.
local function metaSize(m)
  local size, count = 2, 0
  for k, v in pairs(m) do
    size = size + #k + 3 + #v
    count = count + 1
  end
  if count > 1 then size = size + count - 1 end
  return size, count
end

-- A record's user agent as the client sent it, for comparing user agents: the store writes common phrases as a tab
-- and a letter (store/redis/user-agent.ts). A stored user agent holds no tab of its own (the manager removes control
-- characters), so a record written before packing comes back unchanged.
local UA_PHRASES = ${luaUnpackTable()}
local function uaKey(g)
  return (string.gsub(g, '\t(%w)', UA_PHRASES))
end

-- cjson reads 1e999 as infinity and NaN is not equal to itself: neither is a time.
local function isTime(t)
  return t == t and t ~= math.huge and t ~= -math.huge
end

local MAX_SAFE = 9007199254740991
-- A positive (or, with zero allowed, non-negative) integer no larger than Number.MAX_SAFE_INTEGER.
local function isCount(v, allowZero)
  if type(v) ~= 'number' or v ~= v or v ~= math.floor(v) or v > MAX_SAFE then return false end
  if allowZero then return v >= 0 end
  return v > 0
end

-- A session record: the decoded table (and the stored text), nil when there is no key, false when the key holds
-- no valid record. The same rules as parseRecord in redis/store.ts; cjson refuses lone surrogates, which parseRecord
-- checks for explicitly.
local function readRec(sid)
  local raw = redis.pcall('GET', skey(sid))
  if not raw then return nil end
  if type(raw) ~= 'string' then return false end
  local ok, rec = pcall(cjson.decode, raw)
  -- An ended session's tombstone is no session (never corrupt).
  if ok and type(rec) == 'table' and rec.x ~= nil and rec.u == nil then return nil end
  if not ok or type(rec) ~= 'table' or type(rec.u) ~= 'string' or rec.u == '' or type(rec.h) ~= 'string' or
    #rec.h ~= HASH_LEN or type(rec.c) ~= 'number' or type(rec.l) ~= 'number' or type(rec.a) ~= 'number' or
    (rec.m ~= nil and type(rec.m) ~= 'table') then
    return false
  end
  if not isTime(rec.c) or not isTime(rec.l) or not isTime(rec.a) then return false end
  if (rec.d ~= nil and not isCount(rec.d, false)) or (rec.r ~= nil and not isCount(rec.r, true)) then return false end
  if rec.m == nil then rec.m = {} end
  if rec.m[1] ~= nil then return false end
  -- The same rules as parseRecord in redis/store.ts: every metadata value is JSON text under an ordinary key.
  for k, v in pairs(rec.m) do
    if type(k) ~= 'string' or FORBIDDEN[k] or type(v) ~= 'string' or not pcall(cjson.decode, v) then return false end
  end
  if type(rec.i) ~= 'string' then rec.i = '' end
  if type(rec.g) ~= 'string' then rec.g = '' end
  if type(rec.f) ~= 'string' then rec.f = '' end
  if type(rec.s) ~= 'number' then rec.s = 0 end
  return rec, raw
end

-- Whether session sid's key holds the tombstone of an ended session (readRec reads both it and no key as nil).
local function isBuried(sid)
  local raw = redis.pcall('GET', skey(sid))
  if type(raw) ~= 'string' then return false end
  local ok, rec = pcall(cjson.decode, raw)
  return ok and type(rec) == 'table' and rec.x ~= nil and rec.u == nil
end

-- The record as stored: fields at their default (no metadata, flags 0, an empty IP, user agent or fingerprint) are
-- left out, and each slash, which cjson escapes as backslash-slash, is written plain (JSON reads both alike; cjson
-- escapes every slash, so each one follows a backslash of its own). Every byte is Redis memory and request-path work.
local ESCAPED_SLASH = string.char(92) .. '/'
local OPTIONAL = { i = '', g = '', f = '', s = 0 }
local function encode(rec)
  local kept = {}
  if next(rec.m) == nil then rec.m = nil end
  for k, default in pairs(OPTIONAL) do
    if rec[k] == default then kept[k] = default; rec[k] = nil end
  end
  local json = (string.gsub(cjson.encode(rec), ESCAPED_SLASH, '/'))
  for k, v in pairs(kept) do rec[k] = v end
  if rec.m == nil then rec.m = {} end
  return json
end

local function writeRec(sid, rec)
  local json = encode(rec)
  redis.call('SET', skey(sid), json, 'KEEPTTL')
  return json
end

-- A glob pattern matching \`s\` literally (for ZSCAN MATCH).
local function globEscape(s)
  local out = {}
  for i = 1, #s do
    local c = string.sub(s, i, i)
    if c == '*' or c == '?' or c == '[' or c == ']' or c == string.char(92) then out[#out + 1] = string.char(92) end
    out[#out + 1] = c
  end
  return table.concat(out)
end

-- Members of the shard's expiry queue (every sub-queue) matching a pattern, as { sid, uid } pairs.
local function queueMembers(pattern)
  local found = {}
  for k = 0, queueCount() - 1 do
    local cursor = '0'
    repeat
      local r = redis.call('ZSCAN', queueKey(k), cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = r[1]
      for i = 1, #r[2], 2 do
        local m = r[2][i]
        found[#found + 1] = { sid = string.sub(m, 1, SID_LEN), uid = string.sub(m, SID_LEN + 1) }
      end
    until cursor == '0'
  end
  return found
end

-- A user index that is not a sorted set (written by hand, or by something else) would make every script of the
-- user fail: it is rebuilt from the shard's expiry queue, the other place that lists the user's sessions.
local function ensureIndex(uid)
  local u = ukey(uid)
  local kind = redis.call('TYPE', u)['ok']
  if kind == 'zset' or kind == 'none' then return end
  redis.call('DEL', u)
  local ttl = 0
  for _, entry in ipairs(queueMembers('*' .. globEscape(uid))) do
    if entry.uid == uid then
      local rec = readRec(entry.sid)
      if rec and rec.u == uid then
        redis.call('ZADD', u, rec.l, entry.sid)
        if rec.a - now > ttl then ttl = rec.a - now end
      end
    end
  end
  if ttl > 0 then redis.call('PEXPIRE', u, ttl) end
  audit(uid, '', 'corrupt', reason('index'))
end

-- Why a session ended, from its audit record (the same table as endReasonOf in security/stepup.ts).
local function endReason(kind, data)
  if kind == 'expired' or kind == 'evicted' or kind == 'unrecognized' then return kind end
  local given = ''
  local ok, d = pcall(cjson.decode, data)
  if ok and type(d) == 'table' and type(d.reason) == 'string' then given = d.reason end
  return END_REASON[string.match(given, '^[^:]*')] or 'revoked'
end

-- Overwrites the session key with a tombstone { x = reason, at = time, h = token hash } for ENDED_MS; an
-- existing tombstone is kept (the first reason wins).
local function bury(sid, kind, data)
  local key = skey(sid)
  local raw = redis.pcall('GET', key)
  local h = ''
  local at = now
  if type(raw) == 'string' then
    local ok, old = pcall(cjson.decode, raw)
    if ok and type(old) == 'table' then
      if old.x ~= nil and old.u == nil then return end
      if type(old.h) == 'string' then h = old.h end
      -- An expired session ended at its deadline, whenever that is noticed.
      if kind == 'expired' and type(old.l) == 'number' and type(old.a) == 'number' and deadline(old) < now then at = deadline(old) end
    end
  end
  redis.call('SET', key, cjson.encode({ x = endReason(kind, data), at = at, h = h }), 'PX', ENDED_MS)
end

-- Something new among the user's sessions ends every acknowledgement (record field z).
local function clearAcks(live)
  for _, entry in ipairs(live) do
    if entry.rec.z ~= nil then
      entry.rec.z = nil
      writeRec(entry.sid, entry.rec)
    end
  end
end

local function removeSession(sid, uid, kind, data)
  if kind == 'corrupt' then redis.call('DEL', skey(sid)) else bury(sid, kind, data) end
  ensureIndex(uid)
  redis.call('ZREM', ukey(uid), sid)
  queueRemove(sid .. uid)
  audit(uid, sid, kind, data)
end

-- Who owns whatever is stored under a session key: the record's \`u\` when its outer JSON reads at all, else the
-- shard's expiry queue, which names the owner of every session it holds.
local function ownerOf(sid)
  local raw = redis.pcall('GET', skey(sid))
  if type(raw) == 'string' then
    local ok, partial = pcall(cjson.decode, raw)
    if ok and type(partial) == 'table' and type(partial.u) == 'string' and partial.u ~= '' then return partial.u end
  end
  for _, entry in ipairs(queueMembers(globEscape(sid) .. '*')) do
    if entry.sid == sid and entry.uid ~= '' then return entry.uid end
  end
  return nil
end

-- Removes a session key holding no valid record (whatever it holds), with its index and queue entries, and audits
-- it as \`kind\`. Returns the owner, or nil when nothing names one.
local function dropCorrupt(sid, kind, data)
  local uid = ownerOf(sid)
  redis.call('DEL', skey(sid))
  for _, entry in ipairs(queueMembers(globEscape(sid) .. '*')) do
    if entry.sid == sid then queueRemove(sid .. entry.uid) end
  end
  if uid then
    ensureIndex(uid)
    redis.call('ZREM', ukey(uid), sid)
    audit(uid, sid, kind, data)
  end
  return uid
end

-- A PEXPIRE that only ever extends.
local function extendTtl(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end

-- The user's live sessions, oldest activity first; removes (and audits) the ones that are gone, expired or corrupt.
-- How many sessions loadLive found expired (and removed) in this script: a sweep counts them with its own.
local liveExpired = 0

local function loadLive(uid)
  ensureIndex(uid)
  local u = ukey(uid)
  local sids = redis.call('ZRANGE', u, 0, -1)
  local live = {}
  for _, sid in ipairs(sids) do
    -- A member starting with '~' is a known device (rememberDevice), not a session.
    if not isDevice(sid) then
      local rec, raw = readRec(sid)
      if rec == nil then
        removeSession(sid, uid, 'expired', reason('timeout'))
        liveExpired = liveExpired + 1
      elseif rec == false then
        removeSession(sid, uid, 'corrupt', reason('malformed'))
      elseif rec.u ~= uid then
        redis.call('ZREM', u, sid)
      elseif deadline(rec) <= now then
        removeSession(sid, uid, 'expired', reason('timeout'))
        liveExpired = liveExpired + 1
      else
        live[#live + 1] = { sid = sid, rec = rec, raw = raw }
      end
    end
  end
  return live
end

-- Concurrency rules, evaluated for each session against the user's other sessions (mirrors security/concurrency.ts,
-- allConcurrencyFlags). O(n): distinct IPs and user agents are counted once, and each session's "others" are the
-- totals minus itself; the others' creation range comes from the two smallest and two largest creation times.
-- A record is rewritten only when its flags change (entry.raw then holds the new text).
local function applyFlags(live)
  local ipCount, uaCount, nIps, nUas = {}, {}, 0, 0
  local low1, low2, high1, high2 = math.huge, math.huge, -math.huge, -math.huge
  for _, entry in ipairs(live) do
    local r = entry.rec
    if r.i ~= '' then
      if ipCount[r.i] then ipCount[r.i] = ipCount[r.i] + 1 else ipCount[r.i] = 1; nIps = nIps + 1 end
    end
    if r.g ~= '' then
      entry.ua = uaKey(r.g)
      if uaCount[entry.ua] then uaCount[entry.ua] = uaCount[entry.ua] + 1 else uaCount[entry.ua] = 1; nUas = nUas + 1 end
    end
    if r.c < low1 then low2 = low1; low1 = r.c elseif r.c < low2 then low2 = r.c end
    if r.c > high1 then high2 = high1; high1 = r.c elseif r.c > high2 then high2 = r.c end
  end
  local others = #live - 1
  for _, cur in ipairs(live) do
    local r = cur.rec
    local otherIps, otherUas = nIps, nUas
    if r.i ~= '' and ipCount[r.i] == 1 then otherIps = otherIps - 1 end
    if r.g ~= '' and uaCount[cur.ua] == 1 then otherUas = otherUas - 1 end
    local minC, maxC = low1, high1
    if r.c == low1 then minC = low2 end
    if r.c == high1 then maxC = high2 end
    local bits = 0
    if otherIps > maxIps then bits = bits + FLAG_IPS end
    if otherUas > maxUas then bits = bits + FLAG_UAS end
    if rapid > 0 and others >= 2 and maxC - minC <= rapid then bits = bits + FLAG_RAPID end
    -- The newest other creation goes with the burst bit, so the request path can age it (field w).
    local w = nil
    if bits >= FLAG_RAPID then w = maxC end
    if cur.rec.s ~= bits or cur.rec.w ~= w then
      cur.rec.s = bits
      cur.rec.w = w
      cur.raw = writeRec(cur.sid, cur.rec)
    end
  end
end

-- The live record of session \`sid\` owned by \`owner\` ('' = any owner), or nil. A record past its deadline is
-- removed here (audited 'expired', the user's flags recomputed): every script that writes a session ends it alike.
local function liveRecord(sid, owner)
  local rec = readRec(sid)
  if not rec or (owner ~= '' and owner ~= rec.u) then return nil end
  if deadline(rec) <= now then
    removeSession(sid, rec.u, 'expired', reason('timeout'))
    applyFlags(loadLive(rec.u))
    return nil
  end
  return rec
end

-- Expires up to \`limit\` due entries of the shard's expiry queue, sub-queue by sub-queue. Returns expired, orphaned
-- and examined counts.
local function sweep(limit)
  local expired, orphaned, examined = 0, 0, 0
  local users = {}
  for k = 0, queueCount() - 1 do
    if examined >= limit then break end
    local key = queueKey(k)
    local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, limit - examined)
    examined = examined + #due
    for _, m in ipairs(due) do
      local sid = string.sub(m, 1, SID_LEN)
      local uid = string.sub(m, SID_LEN + 1)
      local rec = readRec(sid)
      if uid == '' then
        redis.call('ZREM', key, m)
        orphaned = orphaned + 1
      elseif rec == nil and isBuried(sid) then
        -- A leftover of a session that has ended and been audited (a second entry of it, filed by an instance that
        -- predates the sub-queues during a rolling deploy): dropped, not audited again.
        redis.call('ZREM', key, m)
        ensureIndex(uid)
        redis.call('ZREM', ukey(uid), sid)
        orphaned = orphaned + 1
      elseif rec == nil then
        removeSession(sid, uid, 'expired', reason('timeout'))
        expired = expired + 1
        users[uid] = true
      elseif rec == false or rec.u ~= uid then
        if rec == false then redis.call('DEL', skey(sid)) end
        ensureIndex(uid)
        redis.call('ZREM', ukey(uid), sid)
        redis.call('ZREM', key, m)
        audit(uid, sid, 'corrupt', reason('malformed'))
        orphaned = orphaned + 1
      elseif deadline(rec) <= now then
        removeSession(sid, uid, 'expired', reason('timeout'))
        expired = expired + 1
        users[uid] = true
      else
        redis.call('ZADD', key, deadline(rec), m)
      end
    end
  end
  dropEmptyQueues()
  -- A user's other expired sessions, beyond this batch, are removed by loadLive: they count as expired too.
  local before = liveExpired
  for uid, _ in pairs(users) do applyFlags(loadLive(uid)) end
  return expired + liveExpired - before, orphaned, examined
end

-- Known devices (issue 14): remembers that the user used device \`dev\` now, as the member '~' .. dev of the user's
-- index (score = last seen; one key fewer per user than a zset of its own), at most MAX_KNOWN_DEVICES of them, the
-- index kept for at least the window. True, with a security audit record, when the user has known devices and this
-- is not one of them. The index is a zset here: CREATE has loaded the user's sessions (ensureIndex) before.
local function rememberDevice(uid, dev, window, sid, data)
  local u = ukey(uid)
  local member = '~' .. dev
  local others, isKnown = {}, false
  local all = redis.call('ZRANGE', u, 0, -1, 'WITHSCORES')
  for n = 1, #all, 2 do
    local m, seen = all[n], tonumber(all[n + 1])
    if isDevice(m) then
      if seen < now - window then
        redis.call('ZREM', u, m)
      elseif m == member then
        isKnown = true
      else
        others[#others + 1] = { m = m, seen = seen }
      end
    end
  end
  local isNew = #others > 0 and not isKnown
  redis.call('ZADD', u, now, member)
  local excess = #others + 1 - ${MAX_KNOWN_DEVICES}
  if excess > 0 then
    table.sort(others, function(a, b) return a.seen < b.seen or (a.seen == b.seen and a.m < b.m) end)
    for n = 1, excess do redis.call('ZREM', u, others[n].m) end
  end
  extendTtl(u, window)
  if isNew then audit(uid, sid, 'security', data) end
  return isNew
end
`

/** A script: the prelude's helpers and rules, then `body`. Exported for the Lua/TypeScript parity tests. */
export function script (body: string): string {
  return PRELUDE + body
}

/** A Lua table literal of string keys and values. */
function luaTable (table: Readonly<Record<string, string>>): string {
  return '{ ' + Object.entries(table).map(([key, value]) => `[${JSON.stringify(key)}] = ${JSON.stringify(value)}`).join(', ') + ' }'
}

/**
 * create: ARGV[7] sid, [8] uid, [9] token hash, [10] absolute deadline, [11] max sessions,
 * [12] policy ('evict-oldest' | 'deny'), [13] ip, [14] user agent, [15] fingerprint, [16] audit data, [17] the
 * session's idle timeout (ms) or '' for the store's, [18] the id of a session to end in the same step ('' for none;
 * only sent when it is on this shard), [19] its audit data, [20] metadata as one JSON object (key -> JSON text),
 * [21] the device key to remember ('' for none), [22] how long devices stay known (ms), [23] the audit data of a
 * new device, [24] the caller's deadline (epoch ms) or '' for none.
 * Past the deadline by Redis's clock nothing is done at all: the caller has answered 503 and ends nothing it reports.
 * The limit is checked (with the replaced session not counted) before anything is written.
 * -> { 'OK', { evicted sids, record, '1' when the replaced session was ended, '1' when the device is new } }
 *    | { 'LIMIT' } | { 'LATE', Redis's time (ms) }
 */
export const CREATE = script(`
local late = pastDeadline(ARGV[24])
if late then return { 'LATE', late, events } end
local sid, uid, replace = ARGV[7], ARGV[8], ARGV[18]
local u = ukey(uid)
sweep(16)
local live = loadLive(uid)
local replaced = nil
if replace ~= '' then
  replaced = readRec(replace)
  if replaced and deadline(replaced) <= now then replaced = nil end
end
local counted = #live
if replaced and replaced.u == uid then
  for _, entry in ipairs(live) do
    if entry.sid == replace then counted = counted - 1 end
  end
end
local max = tonumber(ARGV[11])
if counted >= max and ARGV[12] == 'deny' then return { 'LIMIT', {}, events } end
-- The previous session of the device ends in this step: a login never leaves it behind, a refused one keeps it.
local hasReplaced = '0'
if replaced ~= nil then
  if replaced == false then
    dropCorrupt(replace, 'invalidated', ARGV[19])
  else
    removeSession(replace, replaced.u, 'invalidated', ARGV[19])
    if replaced.u == uid then
      local kept = {}
      for _, entry in ipairs(live) do
        if entry.sid ~= replace then kept[#kept + 1] = entry end
      end
      live = kept
    else
      applyFlags(loadLive(replaced.u))
    end
  end
  hasReplaced = '1'
end
local evicted = {}
if #live >= max then
  local excess = #live - max + 1
  local kept = {}
  for n, entry in ipairs(live) do
    if n <= excess then
      removeSession(entry.sid, uid, 'evicted', reason('limit'))
      evicted[#evicted + 1] = entry.sid
    else
      kept[#kept + 1] = entry
    end
  end
  live = kept
end
local abs = tonumber(ARGV[10])
local meta = cjson.decode(ARGV[20])
local rec = { u = uid, h = ARGV[9], c = now, l = now, a = abs, i = ARGV[13], g = ARGV[14], f = ARGV[15], s = 0, m = meta }
if ARGV[17] ~= '' then rec.d = tonumber(ARGV[17]) end
local d = deadline(rec)
redis.call('SET', skey(sid), encode(rec), 'PX', d - now + ENDED_MS)
redis.call('ZADD', u, now, sid)
extendTtl(u, abs - now)
queueSet(sid .. uid, d)
clearAcks(live)
live[#live + 1] = { sid = sid, rec = rec }
applyFlags(live)
audit(uid, sid, 'created', ARGV[16])
local isNewDevice = '0'
if ARGV[21] ~= '' and rememberDevice(uid, ARGV[21], tonumber(ARGV[22]), sid, ARGV[23]) then isNewDevice = '1' end
return { 'OK', { evicted, encode(rec), hasReplaced, isNewDevice }, events }
`)

/**
 * touch: ARGV[7] sid, [8] touch interval (ms), [9] activity audit data or '' (no activity audit).
 * -> { 'OK' | 'FRESH' | 'GONE', flags }
 */
export const TOUCH = script(`
local sid = ARGV[7]
local rec = liveRecord(sid, '')
if not rec then return { 'GONE', 0, events } end
local uid = rec.u
if now - rec.l < tonumber(ARGV[8]) then return { 'FRESH', rec.s or 0, events } end
ensureIndex(uid)
rec.l = now
local d = deadline(rec)
redis.call('SET', skey(sid), encode(rec), 'PX', d - now + ENDED_MS)
redis.call('ZADD', ukey(uid), 'XX', now, sid)
queueSet(sid .. uid, d)
local live = loadLive(uid)
applyFlags(live)
local flags = 0
for _, entry in ipairs(live) do
  if entry.sid == sid then flags = entry.rec.s end
end
if ARGV[9] ~= '' then audit(uid, sid, 'activity', ARGV[9]) end
return { 'OK', flags, events }
`)

/**
 * update: ARGV[7] sid, [8] max metadata bytes, [9] ip or '\\0' (unchanged), [10] user agent or '\\0',
 * [11] fingerprint or '\\0', [12] audit data, [13] expected revision or '' (any), [14] owner uid or '' (any),
 * [15] max metadata keys, [16] metadata patch as one JSON object (key -> JSON text, or false to delete).
 * The metadata size is the byte length of the merged object serialized as JSON; it, the key count, the owner and
 * the revision are checked before any write. Every update moves the revision \`r\` by one.
 * -> { 'OK', revision } | { 'GONE' | 'TOO_LARGE' | 'TOO_MANY_KEYS' | 'CONFLICT' }
 */
export const UPDATE = script(`
local sid = ARGV[7]
local rec = liveRecord(sid, ARGV[14])
if not rec then return { 'GONE', '', events } end
local uid = rec.u
if ARGV[13] ~= '' and (rec.r or 0) ~= tonumber(ARGV[13]) then return { 'CONFLICT', tostring(rec.r or 0), events } end
for k, v in pairs(cjson.decode(ARGV[16])) do
  if v == false then rec.m[k] = nil else rec.m[k] = v end
end
local size, count = metaSize(rec.m)
if size > tonumber(ARGV[8]) then return { 'TOO_LARGE', '', events } end
if count > tonumber(ARGV[15]) then return { 'TOO_MANY_KEYS', '', events } end
local changed = false
if ARGV[9] ~= '\\0' then rec.i = ARGV[9]; changed = true end
if ARGV[10] ~= '\\0' then rec.g = ARGV[10]; changed = true end
if ARGV[11] ~= '\\0' then rec.f = ARGV[11] end
rec.r = (rec.r or 0) + 1
writeRec(sid, rec)
if changed then
  local live = loadLive(uid)
  clearAcks(live)
  applyFlags(live)
end
audit(uid, sid, 'updated', ARGV[12])
return { 'OK', tostring(rec.r), events }
`)

/**
 * invalidate: ARGV[7] sid, [8] audit type ('invalidated' | 'expired'), [9] audit data,
 * [10] owner uid or '' (any owner). An 'expired' call only removes a session whose deadline has passed.
 * A key that holds no valid record is removed whatever it holds (unless its known owner is another user): a
 * logout that answers 'OK' leaves nothing any reader could take for the session.
 * -> { 'OK' | 'GONE', uid }
 */
export const INVALIDATE = script(`
local sid, owner = ARGV[7], ARGV[10]
local rec = readRec(sid)
if rec == false then
  local found = ownerOf(sid)
  if owner ~= '' and found ~= nil and found ~= owner then return { 'GONE', '', events } end
  local uid = dropCorrupt(sid, ARGV[8], ARGV[9])
  if uid then applyFlags(loadLive(uid)) end
  return { 'OK', uid or '', events }
end
if not rec or (owner ~= '' and owner ~= rec.u) then return { 'GONE', '', events } end
if ARGV[8] == 'expired' and deadline(rec) > now then return { 'GONE', '', events } end
local uid = rec.u
removeSession(sid, uid, ARGV[8], ARGV[9])
applyFlags(loadLive(uid))
return { 'OK', uid, events }
`)

/**
 * invalidateAll: ARGV[7] uid, [8] sid to keep or '', [9] audit data.
 * -> { 'OK', count }
 */
export const INVALIDATE_ALL = script(`
local uid, keep = ARGV[7], ARGV[8]
local live = loadLive(uid)
local count = 0
local kept = {}
for _, entry in ipairs(live) do
  if entry.sid == keep then
    kept[#kept + 1] = entry
  else
    removeSession(entry.sid, uid, 'invalidated', ARGV[9])
    count = count + 1
  end
end
applyFlags(kept)
audit(uid, keep, 'all_user_sessions_invalidated', ARGV[9])
return { 'OK', count, events }
`)

/**
 * list: ARGV[7] uid.
 * -> { 'OK', { sid, record, sid, record, ... } newest activity first }
 */
export const LIST = script(`
local uid = ARGV[7]
local live = loadLive(uid)
applyFlags(live)
local out = {}
for n = #live, 1, -1 do
  out[#out + 1] = live[n].sid
  out[#out + 1] = live[n].raw
end
return { 'OK', out, events }
`)

/**
 * rotate: ARGV[7] sid, [8] hash of the presented secret, [9] new hash, [10] audit data, [11] the caller's deadline
 * (epoch ms) or '' for none: past it by Redis's clock nothing changes (the client keeps its working token).
 * -> { 'OK' | 'GONE' } | { 'LATE', Redis's time (ms) }
 */
export const ROTATE = script(`
local late = pastDeadline(ARGV[11])
if late then return { 'LATE', late, events } end
local sid = ARGV[7]
local rec = readRec(sid)
if not rec or rec.h ~= ARGV[8] or deadline(rec) <= now then return { 'GONE', '', events } end
rec.p = rec.h
rec.q = now + ENDED_MS
rec.h = ARGV[9]
writeRec(sid, rec)
audit(rec.u, sid, 'rotated', ARGV[10])
return { 'OK', '', events }
`)

/**
 * discard: ARGV[7] sid. Removes whatever is stored under the session key when it is not a valid session.
 * -> { 'OK' | 'GONE' }
 */
export const DISCARD = script(`
local sid = ARGV[7]
local rec = readRec(sid)
if rec ~= false then return { 'GONE', '', events } end
dropCorrupt(sid, 'corrupt', reason('malformed'))
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
 * auditQuery: ARGV[7] uid, [8] since (manager clock, ms), [9] limit.
 * Reads the user's timeline from its newest end: O(limit) entries, whatever the other users of the shard wrote.
 * Entries are in write order and t is the writer's clock, so the walk stops at the first entry older than the
 * window by more than ${AUDIT_CLOCK_SKEW_MS} ms (clocks of several instances), and skips the ones just older.
 * -> { 'OK', { { t, e, s, d, t, e, s, d, ... }, newest time the cap dropped within the window or '' } }
 */
export const AUDIT_QUERY = script(`
local uid, since, limit = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local l = timelineKey(uid)
local floor = since
if retention > 0 and now - retention > floor then floor = now - retention end
local out, found, from = {}, 0, 0
local done = false
local size = limit + 16
while not done do
  local batch = redis.pcall('LRANGE', l, from, from + size - 1)
  if type(batch) ~= 'table' or batch.err then break end
  for _, entry in ipairs(batch) do
    local t, e, n, rest = string.match(entry, '^([^|]*)|([^|]*)|(%d+)|(.*)$')
    local ms = tonumber(t)
    if ms then
      local s, d = string.sub(rest, 1, tonumber(n)), string.sub(rest, tonumber(n) + 1)
      if ms < floor - ${AUDIT_CLOCK_SKEW_MS} then done = true; break end
      if ms >= floor then
        out[#out + 1] = t
        out[#out + 1] = e
        out[#out + 1] = s
        out[#out + 1] = d
        found = found + 1
        if found >= limit then done = true; break end
      end
    end
  end
  if #batch < size then break end
  from = from + size
end
local marker = redis.pcall('GET', capKey(uid))
local dropped = type(marker) == 'string' and tonumber(marker) or nil
if not dropped or dropped < floor then dropped = '' else dropped = string.format('%d', dropped) end
return { 'OK', { out, dropped }, {} }
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
 * Compare-and-delete of a lock: deletes it only while it still holds the caller's owner value, so a claim that
 * expired and was taken by another owner is never removed.
 * KEYS[1] the lock key; ARGV[1] the owner value. -> 1 when deleted, 0 when the lock is not the caller's.
 */
export const RELEASE_LOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

// ---- step-up (issue 14): new scripts ----

/**
 * confirm: ARGV[7] sid, [8] owner uid or '' (any), [9] ip, [10] user agent, [11] fingerprint, [12] method,
 * [13] audit data. authenticatedAt (t) = now, method (k), the request's IP and device become the baseline, and
 * the flags the session has once they are applied are acknowledged (z).
 * -> { 'OK' | 'GONE' }
 */
export const CONFIRM = script(`
local sid = ARGV[7]
local rec = liveRecord(sid, ARGV[8])
if not rec then return { 'GONE', '', events } end
local uid = rec.u
rec.t = now
rec.k = ARGV[12]
rec.i = ARGV[9]
rec.g = ARGV[10]
rec.f = ARGV[11]
writeRec(sid, rec)
local live = loadLive(uid)
applyFlags(live)
for _, entry in ipairs(live) do
  if entry.sid == sid then
    if entry.rec.s ~= 0 then entry.rec.z = entry.rec.s else entry.rec.z = nil end
    writeRec(sid, entry.rec)
  end
end
audit(uid, sid, 'confirmed', ARGV[13])
return { 'OK', '', events }
`)

/**
 * rename: ARGV[7] sid, [8] owner uid, [9] name or '' (remove it), [10] audit data.
 * -> { 'OK' | 'GONE' }
 */
export const RENAME = script(`
local sid = ARGV[7]
local rec = readRec(sid)
if not rec or rec.u ~= ARGV[8] or deadline(rec) <= now then return { 'GONE', '', events } end
if ARGV[9] == '' then rec.n = nil else rec.n = ARGV[9] end
writeRec(sid, rec)
audit(rec.u, sid, 'updated', ARGV[10])
return { 'OK', '', events }
`)

/**
 * reportUnrecognized: ARGV[7] sid, [8] owner uid, [9] '1' to end the user's other sessions too, [10] sid to keep
 * or '', [11] audit data. Each session ended is audited 'unrecognized' and keeps that reason in its tombstone.
 * -> { 'OK', { ended sids } } | { 'GONE' }
 */
export const REPORT_UNRECOGNIZED = script(`
local sid, uid = ARGV[7], ARGV[8]
local rec = readRec(sid)
if not rec or rec.u ~= uid then return { 'GONE', {}, events } end
removeSession(sid, uid, 'unrecognized', ARGV[11])
local ended = { sid }
local live = loadLive(uid)
if ARGV[9] == '1' then
  local kept = {}
  for _, entry in ipairs(live) do
    if entry.sid == ARGV[10] then
      kept[#kept + 1] = entry
    else
      removeSession(entry.sid, uid, 'unrecognized', ARGV[11])
      ended[#ended + 1] = entry.sid
    end
  end
  live = kept
end
applyFlags(live)
return { 'OK', ended, events }
`)
