// The shard-neighbour scenario of issue 12, through the public API only: a victim and a noisy neighbour share a
// shard tag (ids picked to share one); the neighbour logs in and out until it has written
// NEIGHBOUR_EVENTS audit events; then the victim's auditLog is queried. Run it against any build:
//   node bench/audit-neighbour.mjs [distDir]   (default ./dist; BEFORE figures: a build of 0.1.0)
// Environment: NEIGHBOUR_EVENTS (52000), QUERIES (200).
import { createHash } from 'node:crypto'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { Redis } from 'ioredis'
import { startRedis } from './redis.mjs'

const dist = path.resolve(process.argv[2] ?? 'dist')
const { RedisStore, SessionManager } = await import(pathToFileURL(path.join(dist, 'index.js')).href)
const NEIGHBOUR_EVENTS = Number(process.env.NEIGHBOUR_EVENTS ?? 52_000)
const QUERIES = Number(process.env.QUERIES ?? 200)
const CONCURRENCY = 64
const TAG = 'Qx'
/** The first `<base>-<n>` whose shard tag (the first two base64url characters of SHA-256(id)) is `tag`. */
function userOnTag (tag, base) {
  for (let n = 0; ; n++) if (createHash('sha256').update(`${base}-${n}`).digest('base64url').startsWith(tag)) return `${base}-${n}`
}
const VICTIM = userOnTag(TAG, 'victim')
const NEIGHBOUR = userOnTag(TAG, 'neighbour')

const redis = await startRedis()
const client = new Redis(redis.url)
try {
  // On one shard in every layout: 0.1.0 reads a user's tag from `P t:<uid>`, later builds hash the user id (these
  // ids are picked to hash to TAG; the keys are then unused).
  await client.set(`sess:t:${VICTIM}`, TAG, 'PX', 30 * 86_400_000)
  await client.set(`sess:t:${NEIGHBOUR}`, TAG, 'PX', 30 * 86_400_000)
  const manager = new SessionManager({ store: new RedisStore({ client }), maxSessionsPerUser: 1000 })
  await manager.create(VICTIM, { ipAddress: '198.51.100.1', userAgent: 'victim-browser' })
  const startedAt = performance.now()
  let written = 0
  const worker = async () => {
    while (written < NEIGHBOUR_EVENTS) {
      written += 2
      const { session } = await manager.create(NEIGHBOUR, { ipAddress: '203.0.113.9', userAgent: 'Mozilla/5.0 (X11; Linux x86_64)' })
      await manager.invalidate(session.id)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  const writeSeconds = (performance.now() - startedAt) / 1000
  await client.config('RESETSTAT')
  await client.slowlog('RESET')
  await client.config('SET', 'slowlog-log-slower-than', '2000')
  const times = []
  let found = -1
  for (let n = 0; n < QUERIES; n++) {
    const t0 = performance.now()
    const log = await manager.auditLog(VICTIM, { limit: 50 })
    times.push(performance.now() - t0)
    found = log.length
  }
  times.sort((a, b) => a - b)
  const stats = await client.info('commandstats')
  const evalsha = /cmdstat_evalsha:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)/.exec(stats)
  const slow = await client.slowlog('GET', 1000)
  console.log(JSON.stringify({
    dist,
    neighbourEvents: written,
    neighbourWriteSeconds: Number(writeSeconds.toFixed(2)),
    victimEventsReturned: found,
    queries: QUERIES,
    queryP50Ms: Number(times[Math.floor(QUERIES * 0.5)].toFixed(3)),
    queryP99Ms: Number(times[Math.floor(QUERIES * 0.99)].toFixed(3)),
    redisUsecPerQuery: evalsha === null ? null : Number(evalsha[3]),
    slowlogOver2ms: slow.length
  }, null, 2))
} finally {
  client.disconnect()
  await redis.stop()
}
