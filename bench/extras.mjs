// Store-level measurements, run in this process against a fresh redis-server after the HTTP rounds:
// Redis memory per session (with and without audit entries), get and list latency as the keyspace grows,
// and the time manager.cleanup() takes for expired sessions (clock injected, so nothing waits).
import { Redis } from 'ioredis'
import { RedisStore, SessionManager, fingerprintFromHeaders } from '../dist/index.js'
import { EXPIRY_QUEUE_ENTRIES } from '../dist/store/redis/keys.js'
import { LatencyHistogram } from './load.mjs'
import { info, redisCpuSeconds, startRedis } from './redis.mjs'

const CONCURRENCY = 64
const LATENCY_SAMPLES = 5000
const LIST_USER = 'list-probe'
const LIST_USER_SESSIONS = 5

/** Counts the commands one ioredis client sends (each one a round trip: nothing here pipelines). */
function countCommands (client) {
  const counter = { count: 0 }
  const sendCommand = client.sendCommand
  client.sendCommand = function countedSendCommand (...args) {
    counter.count++
    return sendCommand.apply(this, args)
  }
  return counter
}

async function usedMemory (client) {
  return Number((await info(client, 'memory')).used_memory)
}

/** Creates `count` sessions, one user each (the common case: one device per user), `CONCURRENCY` at a time. */
async function createSessions (manager, from, count, sessionData, tokens) {
  let next = from
  const end = from + count
  const worker = async () => {
    while (next < end) {
      const n = next++
      const { token } = await manager.create(`user-${n}`, { ...sessionData, ipAddress: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}` })
      tokens?.push(token)
    }
  }
  const startedAt = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  return count / ((performance.now() - startedAt) / 1000)
}

async function timeEach (samples, operation) {
  const histogram = new LatencyHistogram()
  for (let n = 0; n < samples; n++) {
    const startedAt = performance.now()
    await operation(n)
    histogram.record(performance.now() - startedAt)
  }
  return { samples, p50Ms: histogram.quantile(0.5), p99Ms: histogram.quantile(0.99) }
}

/** The session attributes of `npm run bench`'s store measurements (`fingerprint` = fingerprintFromHeaders of the build). */
export function benchSessionData (fingerprint, headers = BENCH_HEADERS) {
  return {
    ipAddress: '203.0.113.7',
    userAgent: headers['user-agent'],
    deviceFingerprint: fingerprint(headers),
    metadata: { plan: 'free' }
  }
}

/** The browser headers of bench/run.mjs (BROWSER_HEADERS). */
const BENCH_HEADERS = {
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36',
  'accept-language': 'en-GB,en;q=0.9',
  'accept-encoding': 'gzip, deflate, br'
}

/** What each key of a user is, by what follows the shard (or, for 0.1.0's tag key, the prefix). */
const KEY_KINDS = [
  ['s:', 'record'],
  ['u:', 'user index (zset)'],
  ['d:', 'known devices (zset)'],
  ['a', 'audit'],
  ['t:', 'user tag (string, 0.1.0)']
]

/** Sessions per shard at 1,000,000 sessions over 4096 shard tags. */
const QUEUE_MEMBERS_AT_1M = Math.round(1_000_000 / 4096)

/**
 * MEMORY USAGE of every key of one user with one session, found by SCAN (keys of the shard that end in the user id or
 * the session id, so whatever the layout of the build measured): its record, the user's index, known devices and
 * audit timeline, 0.1.0's tag key `Pt:<uid>` when there is one, and the session's share of its shard's expiry queue
 * at 1,000,000 sessions (a copy of the queue filled to that density with members of the same length, divided by its
 * members). `queueEntries` is the most members the build puts in one expiry sub-queue (its EXPIRY_QUEUE_ENTRIES;
 * builds before the split keep one queue per shard: Infinity), so the copy holds what one of its queues would.
 * Also the named fields bench/report.mjs prints.
 */
export async function keyBreakdown (client, prefix, token, userId, queueEntries = EXPIRY_QUEUE_ENTRIES) {
  const sid = token.slice(0, 24)
  const shard = `${prefix}{${sid.slice(0, 2)}}:`
  const usage = async (key) => Number(await client.memory('USAGE', key, 'SAMPLES', '0')) || 0
  const keys = {}
  const scan = async (pattern) => {
    let cursor = '0'
    const found = []
    do {
      const [next, batch] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      found.push(...batch)
    } while (cursor !== '0')
    return found
  }
  const queue = `${shard}x`
  // Only this user's and this session's keys: the shard holds other users' too.
  const found = [...await scan(`${shard}*:${userId}`), ...await scan(`${shard}*:${sid}`), ...await scan(`${prefix}t:${userId}`)]
  for (const key of new Set(found)) {
    if (key === queue) continue
    const kind = KEY_KINDS.find(([infix]) => key.startsWith(infix === 't:' ? prefix + infix : shard + infix))?.[1] ?? key.slice(prefix.length)
    keys[kind] = (keys[kind] ?? 0) + await usage(key)
  }
  const members = await client.zrange(queue, 0, -1, 'WITHSCORES')
  let queueShare = 0
  if (members.length > 0) {
    const scratch = `${prefix}scratch-queue`
    const [member, score] = members
    const args = []
    const copied = Math.min(QUEUE_MEMBERS_AT_1M, queueEntries)
    for (let n = 0; n < copied; n++) {
      // Same length and shape as the real member: only the random part of the session id differs.
      const filler = String(n).padStart(6, '0')
      args.push(Number(score) + n, member.slice(0, 2) + filler + member.slice(8))
    }
    await client.zadd(scratch, ...args)
    queueShare = Math.round(await usage(scratch) / copied)
    await client.del(scratch)
  }
  const split = queueEntries < QUEUE_MEMBERS_AT_1M ? `, sub-queues of ${queueEntries}` : ''
  keys[`expiry queue share (at ${QUEUE_MEMBERS_AT_1M}/shard${split})`] = queueShare
  const timeline = `${shard}a2:u:${userId}`
  return {
    keys,
    total: Object.values(keys).reduce((sum, bytes) => sum + bytes, 0),
    sessionRecordLength: (await client.get(`${shard}s:${sid}`))?.length ?? 0,
    sessionRecordEncoding: await client.object('ENCODING', `${shard}s:${sid}`),
    sessionRecord: keys.record ?? 0,
    userIndex: keys['user index (zset)'] ?? 0,
    userTag: keys['user tag (string, 0.1.0)'] ?? 0,
    knownDevices: keys['known devices (zset)'] ?? 0,
    auditTimelineEntries: await client.llen(timeline),
    auditTimeline: await usage(timeline),
    expiryQueueShare: queueShare
  }
}

/**
 * Grows the keyspace to each size in `sizes`; at the sizes in `memoryAt` records used_memory per session, at the
 * sizes in `latencyAt` times get (random token of the keyspace) and list (a user with 5 sessions).
 */
async function growKeyspace ({ client, auditRetention, sizes, memoryAt, latencyAt, sessionData, log }) {
  await client.flushall()
  const manager = new SessionManager({ store: new RedisStore({ client }), audit: { retention: auditRetention } })
  for (let n = 0; n < LIST_USER_SESSIONS; n++) await manager.create(LIST_USER, sessionData)
  const baseline = await usedMemory(client)
  const tokens = []
  const points = []
  let created = 0
  for (const size of sizes) {
    const createPerSec = await createSessions(manager, created, size - created, sessionData, tokens)
    created = size
    const point = { sessions: size, createPerSec: Math.round(createPerSec) }
    if (memoryAt.includes(size)) {
      const used = await usedMemory(client)
      point.usedMemoryDeltaBytes = used - baseline
      point.bytesPerSession = Math.round((used - baseline) / size)
      point.keys = await client.dbsize()
      point.breakdown = await keyBreakdown(client, 'sess:', tokens[0], 'user-0')
    }
    if (latencyAt.includes(size)) {
      let misses = 0
      point.get = await timeEach(LATENCY_SAMPLES, async () => {
        const session = await manager.get(tokens[Math.floor(Math.random() * tokens.length)])
        if (session === null) misses++
      })
      point.get.misses = misses
      point.list = await timeEach(LATENCY_SAMPLES, () => manager.list(LIST_USER))
    }
    log(`  audit ${auditRetention === 0 ? 'off' : 'on '} ${String(size).padStart(7)} sessions: ${point.createPerSec} creates/s` +
      (point.bytesPerSession === undefined ? '' : `, ${point.bytesPerSession} B/session`) +
      (point.get === undefined ? '' : `, get p50 ${point.get.p50Ms} ms p99 ${point.get.p99Ms} ms, list p50 ${point.list.p50Ms} ms p99 ${point.list.p99Ms} ms`))
    points.push(point)
  }
  return points
}

/** manager.cleanup() over `count` sessions that all expired (clock moved past their absolute deadline). */
async function measureCleanup ({ client, count, sessionData }) {
  await client.flushall()
  let clock = Date.now()
  const manager = new SessionManager({ store: new RedisStore({ client }), now: () => clock })
  await createSessions(manager, 0, count, sessionData, null)
  const keysBefore = await client.dbsize()
  clock += 25 * 3_600_000
  const counter = countCommands(client)
  const redisCpuBefore = await redisCpuSeconds(client)
  counter.count = 0
  const startedAt = performance.now()
  const result = await manager.cleanup()
  const seconds = (performance.now() - startedAt) / 1000
  const roundTrips = counter.count
  const redisCpu = (await redisCpuSeconds(client)) - redisCpuBefore
  return {
    sessions: count,
    expired: result.expired,
    orphaned: result.orphaned,
    seconds,
    sessionsPerSecond: Math.round(result.expired / seconds),
    roundTrips,
    redisCpuSeconds: redisCpu,
    keysBefore,
    keysAfter: await client.dbsize()
  }
}

export async function runStoreMeasurements ({ log, memorySessions, latencySizes, cleanupSessions, headers }) {
  const redis = await startRedis()
  const client = new Redis(redis.url)
  const sessionData = benchSessionData(fingerprintFromHeaders, headers)
  const sizes = [...new Set([...memorySessions, ...latencySizes])].sort((a, b) => a - b)
  try {
    log('store: keyspace growth with audit entries (default retention)')
    const withAudit = await growKeyspace({ client, auditRetention: '7d', sizes, memoryAt: memorySessions, latencyAt: latencySizes, sessionData, log })
    log('store: keyspace growth without audit entries (audit.retention 0)')
    const withoutAudit = await growKeyspace({ client, auditRetention: 0, sizes: memorySessions, memoryAt: memorySessions, latencyAt: [], sessionData, log })
    log(`store: cleanup of ${cleanupSessions} expired sessions`)
    const cleanup = await measureCleanup({ client, count: cleanupSessions, sessionData })
    log(`  ${cleanup.expired} expired in ${cleanup.seconds.toFixed(2)} s (${cleanup.roundTrips} round trips)`)
    return { sessionShape: { ...sessionData, metadata: JSON.stringify(sessionData.metadata) }, withAudit, withoutAudit, cleanup }
  } finally {
    client.disconnect()
    await redis.stop()
  }
}
