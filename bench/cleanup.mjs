// Cleanup cost: how long `manager.cleanup()` takes over 100 000 expired sessions, and over 100 000 live ones (the
// price of a run that finds nothing, paid every interval). Runs on the build: `npm run build && node bench/cleanup.mjs`.
// Options: --sessions N (default 100000), --batch N (batch size, default 500), --concurrency N (creates in flight).
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { RedisStore, SessionManager } from '../dist/index.js'
import { info, redisCpuSeconds, startRedis } from './redis.mjs'

const { values: args } = parseArgs({
  options: {
    sessions: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '256' }
  }
})
const SESSIONS = Number(args.sessions)
const BATCH_SIZE = Number(args.batch)
const CONCURRENCY = Number(args.concurrency)
const PER_USER = 5
const IDLE_MS = 30 * 60_000

/** Creates `count` sessions, PER_USER per user, `CONCURRENCY` creates in flight on the one connection. */
async function createSessions (manager, count, userPrefix) {
  let next = 0
  const worker = async () => {
    while (next < count) {
      const n = next++
      // Consecutive creates go to different users, so the in-flight ones rarely contend for one user's index.
      await manager.create(`${userPrefix}${n % (count / PER_USER)}`, { ipAddress: '10.0.0.1', userAgent: 'bench' })
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  return performance.now() - started
}

async function timedCleanup (manager, client) {
  const cpuBefore = await redisCpuSeconds(client)
  const started = performance.now()
  const result = await manager.cleanup(BATCH_SIZE)
  const ms = performance.now() - started
  return { ...result, ms, redisCpuMs: (await redisCpuSeconds(client) - cpuBefore) * 1000 }
}

const format = (ms) => `${ms.toFixed(0)} ms`

const server = await startRedis()
const client = new Redis(server.url)
try {
  let clock = Date.now()
  const manager = new SessionManager({
    store: new RedisStore({ client, prefix: 'bench:' }),
    now: () => clock,
    idleTimeout: IDLE_MS,
    maxSessionsPerUser: PER_USER
  })
  console.log(`node ${process.version}, redis ${(await info(client, 'server')).redis_version}, ${SESSIONS} sessions, batch ${BATCH_SIZE}, ${CONCURRENCY} creates in flight`)

  const cpuBefore = await redisCpuSeconds(client)
  const createMs = await createSessions(manager, SESSIONS, 'expiring-')
  const createCpuMs = (await redisCpuSeconds(client) - cpuBefore) * 1000
  console.log(`created ${SESSIONS} sessions in ${format(createMs)} (${Math.round(SESSIONS / createMs * 1000)}/s, redis CPU ${format(createCpuMs)})`)
  clock += IDLE_MS + 1
  const expired = await timedCleanup(manager, client)
  console.log(`cleanup over ${SESSIONS} expired sessions: expired ${expired.expired}, orphaned ${expired.orphaned}, ${format(expired.ms)} (${Math.round(expired.expired / expired.ms * 1000)} sessions/s, redis CPU ${format(expired.redisCpuMs)})`)

  await createSessions(manager, SESSIONS, 'live-')
  const idle = []
  for (let round = 0; round < 3; round++) idle.push(await timedCleanup(manager, client))
  console.log(`cleanup over ${SESSIONS} live sessions, nothing expired: expired ${idle.map((r) => r.expired).join('/')}, ${idle.map((r) => `${format(r.ms)} (redis CPU ${format(r.redisCpuMs)})`).join(', ')} (3 runs)`)

  await client.flushall()
  const empty = await timedCleanup(manager, client)
  console.log(`cleanup over an empty keyspace: ${format(empty.ms)} (redis CPU ${format(empty.redisCpuMs)})`)
  console.log(`redis used_memory_peak_human: ${(await info(client, 'memory')).used_memory_peak_human}`)
} finally {
  await client.quit()
  await server.stop()
}
