// `npm run bench:audit`: the per-user audit timeline at scale (issue 12). Against a fresh redis-server of our own:
//   1. memory: bytes per event (INFO used_memory delta over every loaded event) and the per-user fixed cost
//      (MEMORY USAGE of a timeline holding 1 and 20 events);
//   2. auditLog(user, { limit: 50 }) p50/p99 with USERS users x EVENTS events each;
//   3. the same while one user of a shard holds HEAVY_EVENTS events (its cap raised to hold them all) and the
//      shard's SIEM feed holds as many entries, querying its shard neighbours and the heavy user itself;
//   and for every query phase, Redis' own time per query (INFO commandstats) and SLOWLOG entries over 2 ms.
// Events are loaded with the store's own audit() Lua function (the PRELUDE of the RECORD script) called in a loop
// by one script per batch of users of one shard, pipelined: the layout written is exactly the one the plugin writes,
// 1000 events per round trip instead of one.
// Environment: AUDIT_USERS (1000000), AUDIT_EVENTS (20), AUDIT_HEAVY_EVENTS (1000000), AUDIT_SAMPLES (5000),
// AUDIT_RESULTS (audit.json; another name leaves docs/benchmarks.md alone).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { RedisStore, SessionManager } from '../dist/index.js'
import { shardTag } from '../dist/core/token.js'
import { RECORD } from '../dist/store/redis/scripts.js'
import { LatencyHistogram } from './load.mjs'
import { exitOnSignals, info, startRedis } from './redis.mjs'
import { writeReport } from './report.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const USERS = Number(process.env.AUDIT_USERS ?? 1_000_000)
const EVENTS = Number(process.env.AUDIT_EVENTS ?? 20)
const HEAVY_EVENTS = Number(process.env.AUDIT_HEAVY_EVENTS ?? 1_000_000)
const SAMPLES = Number(process.env.AUDIT_SAMPLES ?? 5000)
/** Only the default file (bench/results/audit.json) is quoted by docs/benchmarks.md, which this run then rewrites. */
const RESULTS_FILE = process.env.AUDIT_RESULTS ?? 'audit.json'
const PREFIX = 'sess:'
const RETENTION_MS = 7 * 86_400_000
const DEFAULT_CAP = 5000
const USERS_PER_CALL = Math.max(1, Math.floor(1000 / EVENTS))
const IN_FLIGHT = 64
const HEAVY_TAG = 'Hv'
/** A user on HEAVY_TAG: the shard tag is a hash of the user id, so the id is picked for it. */
const HEAVY_USER = userOnTag(HEAVY_TAG, 'heavy')
const CREATED = JSON.stringify({ ip: '203.0.113.7', userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36' })
const LOGOUT = JSON.stringify({ reason: 'logout' })

// The loader: the store's PRELUDE (which defines audit()) and a loop instead of RECORD's one call.
// ARGV[7] events per user, ARGV[8..] user ids; events alternate a login (created) and a logout (invalidated).
const preludeEnd = RECORD.indexOf('audit(ARGV[7], ARGV[8], ARGV[9], ARGV[10])')
if (preludeEnd < 0) throw new Error('bench/audit.mjs: RECORD no longer starts its body with audit(); update the loader')
const LOADER = RECORD.slice(0, preludeEnd) + `
local perUser = tonumber(ARGV[7])
for i = 8, #ARGV do
  for k = 1, perUser do
    local sid = string.sub(xkey, #xkey - 4, #xkey - 3) .. string.format('%022d', k)
    if k % 2 == 1 then audit(ARGV[i], sid, 'created', ${JSON.stringify(CREATED).replaceAll('"', "'").replace(/^'|'$/g, '"')}) else audit(ARGV[i], sid, 'invalidated', '${LOGOUT}') end
  end
end
return #ARGV - 7
`

function log (message) {
  process.stderr.write(`[bench:audit ${new Date().toISOString().slice(11, 19)}] ${message}\n`)
}

const userId = (n) => `user-${n}`
const tagOfUser = (n) => shardTag(userId(n))

/** The first `<base>-<n>` whose shard tag is `tag`. */
function userOnTag (tag, base) {
  for (let n = 0; ; n++) if (shardTag(`${base}-${n}`) === tag) return `${base}-${n}`
}

async function usedMemory (client) {
  return Number((await info(client, 'memory')).used_memory)
}

/** Runs `calls` (functions returning promises) with at most IN_FLIGHT pending at once. */
async function pipelined (count, makeCall) {
  let next = 0
  const worker = async () => {
    while (next < count) await makeCall(next++)
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
}

/** One loader call: `ids` (all of `tag`) each get `perUser` events; `settings` is the scripts' ARGV[3]. */
function load (client, tag, settings, perUser, ids) {
  return client.fdsessLoad(`${PREFIX}{${tag}}:x`, String(Date.now()), '1800000', settings, '2', '3', '300000', String(perUser), ...ids)
}

/**
 * The machine's noise floor, measured the same way: a GET of one small key, one call at a time. On a shared machine
 * its p99 and its SLOWLOG entries show how much of the query's tail is the scheduler rather than the query.
 */
async function measureBaseline (client) {
  await client.set('bench:probe', 'x')
  await client.config('RESETSTAT')
  await client.slowlog('RESET')
  const histogram = new LatencyHistogram()
  for (let n = 0; n < SAMPLES; n++) {
    const startedAt = performance.now()
    await client.get('bench:probe')
    histogram.record(performance.now() - startedAt)
  }
  const percentiles = /p50=([\d.]+),p99=([\d.]+),p99\.9=([\d.]+)/.exec(String((await info(client, 'latencystats')).latency_percentiles_usec_get))
  const slow = await client.slowlog('GET', 128)
  const result = {
    label: 'baseline: GET of one small key',
    samples: SAMPLES,
    meanEventsReturned: 0,
    clientP50Ms: histogram.quantile(0.5),
    clientP99Ms: histogram.quantile(0.99),
    redisUsecPerScriptCall: null,
    redisP50Usec: percentiles === null ? null : Number(percentiles[1]),
    redisP99Usec: percentiles === null ? null : Number(percentiles[2]),
    redisP999Usec: percentiles === null ? null : Number(percentiles[3]),
    slowlogOver2ms: slow.length,
    loadAverage: os.loadavg()[0]
  }
  log(`  ${result.label}: p50 ${result.clientP50Ms} ms, p99 ${result.clientP99Ms} ms (client), Redis p99 ${result.redisP99Usec} us, ${result.slowlogOver2ms} calls over 2 ms`)
  return result
}

/**
 * A script that only counts, calibrated to take as long as a query (`targetUsec`), called the same way: the calls
 * over 2 ms it gets are what the machine does to any script of that length (Redis descheduled mid-call).
 */
async function measureBusyScript (client, targetUsec) {
  const BUSY = 'local x = 0 for i = 1, tonumber(ARGV[1]) do x = x + i end return x'
  let loops = 10_000
  for (let attempt = 0; attempt < 3; attempt++) {
    await client.config('RESETSTAT')
    for (let n = 0; n < 200; n++) await client.eval(BUSY, 0, String(loops))
    const stats = /usec_per_call=([\d.]+)/.exec(String((await info(client, 'commandstats')).cmdstat_eval))
    loops = Math.max(1, Math.round(loops * targetUsec / Number(stats?.[1] ?? targetUsec)))
  }
  await client.config('RESETSTAT')
  await client.slowlog('RESET')
  const histogram = new LatencyHistogram()
  for (let n = 0; n < SAMPLES; n++) {
    const startedAt = performance.now()
    await client.eval(BUSY, 0, String(loops))
    histogram.record(performance.now() - startedAt)
  }
  const stats = /usec_per_call=([\d.]+)/.exec(String((await info(client, 'commandstats')).cmdstat_eval))
  const percentiles = /p50=([\d.]+),p99=([\d.]+),p99\.9=([\d.]+)/.exec(String((await info(client, 'latencystats')).latency_percentiles_usec_eval))
  const slow = await client.slowlog('GET', 128)
  const result = {
    label: `baseline: a script that only counts, ${loops} loops`,
    samples: SAMPLES,
    meanEventsReturned: 0,
    clientP50Ms: histogram.quantile(0.5),
    clientP99Ms: histogram.quantile(0.99),
    redisUsecPerScriptCall: Number(stats?.[1]),
    redisP50Usec: percentiles === null ? null : Number(percentiles[1]),
    redisP99Usec: percentiles === null ? null : Number(percentiles[2]),
    redisP999Usec: percentiles === null ? null : Number(percentiles[3]),
    slowlogOver2ms: slow.length,
    slowestMs: slow.length === 0 ? null : Math.max(...slow.map((entry) => Number(entry[2]))) / 1000,
    loadAverage: os.loadavg()[0]
  }
  log(`  ${result.label}: p50 ${result.clientP50Ms} ms, p99 ${result.clientP99Ms} ms (client), Redis ${result.redisUsecPerScriptCall} us per call, p99 ${result.redisP99Usec} us, ${result.slowlogOver2ms} calls over 2 ms`)
  return result
}

/**
 * The loader's scripts leave garbage in Redis' Lua heap (a table of 5000 audit fields per call); Redis collects
 * it in steps after later scripts, which would bill the next queries for it. One full collection after each load
 * phase, outside the timed phases; returns the Lua heap before and after (bytes).
 */
async function collectLuaGarbage (client) {
  const heap = async () => Number((await info(client, 'memory')).used_memory_lua)
  const before = await heap()
  await client.eval("collectgarbage('collect') return 0", 0)
  return { luaHeapBefore: before, luaHeapAfter: await heap() }
}

async function measureQueries (client, manager, pickUser, label) {
  await client.config('RESETSTAT')
  await client.slowlog('RESET')
  await client.config('SET', 'slowlog-log-slower-than', '2000')
  const histogram = new LatencyHistogram()
  let returned = 0
  for (let n = 0; n < SAMPLES; n++) {
    const user = pickUser(n)
    const startedAt = performance.now()
    const events = await manager.auditLog(user, { limit: 50 })
    histogram.record(performance.now() - startedAt)
    returned += events.length
  }
  const stats = await info(client, 'commandstats')
  const evalsha = /calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)/.exec(String(stats.cmdstat_evalsha))
  // Redis' own per-command latency percentiles (INFO latencystats, Redis 7), reset with the stats above.
  const percentiles = /p50=([\d.]+),p99=([\d.]+),p99\.9=([\d.]+)/.exec(String((await info(client, 'latencystats')).latency_percentiles_usec_evalsha))
  const slow = await client.slowlog('GET', 128)
  const result = {
    label,
    samples: SAMPLES,
    meanEventsReturned: Number((returned / SAMPLES).toFixed(1)),
    clientP50Ms: histogram.quantile(0.5),
    clientP99Ms: histogram.quantile(0.99),
    redisUsecPerScriptCall: evalsha === null ? null : Number(evalsha[3]),
    redisP50Usec: percentiles === null ? null : Number(percentiles[1]),
    redisP99Usec: percentiles === null ? null : Number(percentiles[2]),
    redisP999Usec: percentiles === null ? null : Number(percentiles[3]),
    slowlogOver2ms: slow.length,
    slowestMs: slow.length === 0 ? null : Math.max(...slow.map((entry) => Number(entry[2]))) / 1000,
    loadAverage: os.loadavg()[0],
    // Which calls were slow: a script of the query (its KEYS[1] is a shard's :x key) or anything else.
    slowCalls: slow.map((entry) => {
      const args = entry[3]
      return { ms: Number(entry[2]) / 1000, command: String(args[0]).toLowerCase(), key: String((String(args[0]).toLowerCase() === 'evalsha' ? args[3] : args[1]) ?? '') }
    })
  }
  log(`  ${label}: p50 ${result.clientP50Ms} ms, p99 ${result.clientP99Ms} ms (client: one script call), ` +
    `Redis ${result.redisUsecPerScriptCall} us per script call (p50 ${result.redisP50Usec}, p99 ${result.redisP99Usec}, p99.9 ${result.redisP999Usec} us), ` +
    `${result.slowlogOver2ms} calls over 2 ms, ${result.meanEventsReturned} events per answer`)
  return result
}

exitOnSignals()
const redis = await startRedis()
const client = new Redis(redis.url)
client.defineCommand('fdsessLoad', { numberOfKeys: 1, lua: LOADER })
const results = { startedAt: new Date().toISOString(), users: USERS, eventsPerUser: EVENTS, heavyEvents: HEAVY_EVENTS, samples: SAMPLES }
try {
  const settings = `${RETENTION_MS}/${DEFAULT_CAP}/0`
  const manager = new SessionManager({ store: new RedisStore({ client, prefix: PREFIX }) })

  // Users grouped by shard (their tag is a hash of their id) so one loader call writes one slot.
  const byTag = new Map()
  for (let n = 0; n < USERS; n++) {
    const tag = tagOfUser(n)
    let list = byTag.get(tag)
    if (list === undefined) byTag.set(tag, list = [])
    list.push(userId(n))
  }
  const calls = []
  for (const [tag, ids] of byTag) {
    for (let n = 0; n < ids.length; n += USERS_PER_CALL) calls.push([tag, ids.slice(n, n + USERS_PER_CALL)])
  }
  const before = await usedMemory(client)
  log(`loading ${USERS} users x ${EVENTS} events (${calls.length} script calls)`)
  let startedAt = performance.now()
  await pipelined(calls.length, (n) => load(client, calls[n][0], settings, EVENTS, calls[n][1]))
  const loadSeconds = (performance.now() - startedAt) / 1000
  const after = await usedMemory(client)
  const totalEvents = USERS * EVENTS
  const timelineSample = `${PREFIX}{${tagOfUser(0)}}:a2:u:${userId(0)}`
  results.memory = {
    loadSeconds: Number(loadSeconds.toFixed(1)),
    eventsPerSecond: Math.round(totalEvents / loadSeconds),
    usedMemoryDeltaBytes: after - before,
    bytesPerEvent: Number(((after - before) / totalEvents).toFixed(1)),
    bytesPerUser: Math.round((after - before) / USERS),
    timelineEncoding: await client.object('ENCODING', timelineSample),
    memoryUsageOf20Events: Number(await client.memory('USAGE', timelineSample, 'SAMPLES', '0'))
  }
  log(`  ${totalEvents} events in ${results.memory.loadSeconds} s: ${results.memory.bytesPerEvent} B/event (used_memory delta), ` +
    `${results.memory.bytesPerUser} B/user with ${EVENTS} events; MEMORY USAGE of one ${EVENTS}-event timeline ${results.memory.memoryUsageOf20Events} B (${results.memory.timelineEncoding})`)
  // Fixed cost: a user whose timeline holds one event (a login), and one with one short event.
  for (const [name, data] of [['one-login', CREATED], ['one-logout', LOGOUT]]) {
    await client.set(`${PREFIX}t:${name}`, 'Fx')
    await client.fdsessLoad(`${PREFIX}{Fx}:x`, String(Date.now()), '1800000', settings, '2', '3', '300000', data === CREATED ? '1' : '0', name)
    if (data === LOGOUT) await manager.recordSecurityEvent(name, '', { reason: 'logout' })
    results.memory[`memoryUsage_${name}`] = Number(await client.memory('USAGE', `${PREFIX}{Fx}:a2:u:${name}`, 'SAMPLES', '0'))
  }
  log(`  MEMORY USAGE of a timeline with one login event ${results.memory['memoryUsage_one-login']} B, with one short event ${results.memory['memoryUsage_one-logout']} B`)

  // The loader's batches are garbage now; collected before the timed phases rather than during them.
  calls.length = 0
  results.memory.luaGarbage = await collectLuaGarbage(client)
  log(`auditLog(user, { limit: 50 }) over ${USERS} users`)
  const picked = Array.from({ length: SAMPLES }, () => userId(Math.floor(Math.random() * USERS)))
  results.uniform = await measureQueries(client, manager, (n) => picked[n], `${USERS} users x ${EVENTS} events`)
  // The same users again: their tags are now in the store's cache (10,000 users), so one round trip each.
  results.uniformCached = await measureQueries(client, manager, (n) => picked[n], `${USERS} users x ${EVENTS} events, tag cached`)

  // One user of the shard HEAVY_TAG holds HEAVY_EVENTS events (its cap raised to hold them), and the shard's feed
  // as many entries (audit.feed on for that user's writes).
  log(`one user of shard ${HEAVY_TAG} writes ${HEAVY_EVENTS} events, feed on`)
  const heavySettings = `${RETENTION_MS}/${HEAVY_EVENTS}/1`
  startedAt = performance.now()
  await pipelined(Math.ceil(HEAVY_EVENTS / 1000), () => load(client, HEAVY_TAG, heavySettings, 1000, [HEAVY_USER]))
  const neighbours = byTag.get(HEAVY_TAG) ?? []
  byTag.clear()
  const luaGarbage = await collectLuaGarbage(client)
  results.heavy = {
    loadSeconds: Number(((performance.now() - startedAt) / 1000).toFixed(1)),
    timelineLength: await client.llen(`${PREFIX}{${HEAVY_TAG}}:a2:u:${HEAVY_USER}`),
    feedLength: await client.xlen(`${PREFIX}{${HEAVY_TAG}}:a2:f`),
    neighboursOnShard: neighbours.length,
    timelineMemoryUsage: Number(await client.memory('USAGE', `${PREFIX}{${HEAVY_TAG}}:a2:u:${HEAVY_USER}`, 'SAMPLES', '0')),
    feedMemoryUsage: Number(await client.memory('USAGE', `${PREFIX}{${HEAVY_TAG}}:a2:f`, 'SAMPLES', '0')),
    luaGarbage
  }
  log(`  timeline ${results.heavy.timelineLength} entries, feed ${results.heavy.feedLength} entries, ${neighbours.length} neighbours on the shard`)
  results.heavyNeighbours = await measureQueries(client, manager, (n) => neighbours[n % neighbours.length], `neighbours of a ${HEAVY_EVENTS}-event user`)
  results.heavyUser = await measureQueries(client, manager, () => HEAVY_USER, `the ${HEAVY_EVENTS}-event user itself`)
  results.luaHeapAfterQueries = Number((await info(client, 'memory')).used_memory_lua)
  results.baseline = await measureBaseline(client)
  results.baselineScript = await measureBusyScript(client, results.heavyUser.redisUsecPerScriptCall)
  results.redisVersion = (await info(client, 'server')).redis_version
  fs.mkdirSync(path.join(here, 'results'), { recursive: true })
  fs.writeFileSync(path.join(here, 'results', RESULTS_FILE), JSON.stringify(results, null, 2) + '\n')
  log(`written to bench/results/${RESULTS_FILE}`)
  const latest = path.join(here, 'results', 'latest.json')
  if (RESULTS_FILE === 'audit.json' && fs.existsSync(latest)) {
    writeReport(JSON.parse(fs.readFileSync(latest, 'utf8')))
    log('docs/benchmarks.md rewritten with this run')
  }
} finally {
  client.disconnect()
  await redis.stop()
}
