// Redis memory of a user with one session, key by key (MEMORY USAGE), on a fresh redis-server of its own.
//   node bench/key-memory.mjs [dist directory, default ./dist] [users for the used_memory figure, default 20000]
//     [sessions per user, default 1]
// Run it against another build's dist (for example an older commit's) to compare layouts. Defaults of the manager
// (known devices on) with audit.retention 0, the session data of `npm run bench` (bench/extras.mjs).
import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'
import { Redis } from 'ioredis'
import { info, startRedis } from './redis.mjs'
import { keyBreakdown, benchSessionData } from './extras.mjs'

const dist = resolve(process.argv[2] ?? 'dist')
const users = Number(process.argv[3] ?? 20_000)
const perUser = Number(process.argv[4] ?? 1)
const { RedisStore, SessionManager, fingerprintFromHeaders } = await import(pathToFileURL(resolve(dist, 'index.js')).href)
// Builds before the expiry queue was split into sub-queues keep one queue per shard, however long.
const { EXPIRY_QUEUE_ENTRIES = Infinity } = await import(pathToFileURL(resolve(dist, 'store/redis/keys.js')).href)

const redis = await startRedis()
const client = new Redis(redis.url)
try {
  const sessionData = benchSessionData(fingerprintFromHeaders)
  const manager = new SessionManager({ store: new RedisStore({ client }), audit: { retention: 0 } })
  const { token } = await manager.create('user-0', sessionData)
  const breakdown = await keyBreakdown(client, 'sess:', token, 'user-0', EXPIRY_QUEUE_ENTRIES)
  await manager.invalidate(token.slice(0, 24))
  const tombstone = Number(await client.memory('USAGE', `sess:{${token.slice(0, 2)}}:s:${token.slice(0, 24)}`, 'SAMPLES', '0'))
  await manager.close()

  // used_memory per user at scale: every key, its dict and expiry entries, allocator rounding.
  await client.flushall()
  const scaled = new SessionManager({ store: new RedisStore({ client }), audit: { retention: 0 } })
  const before = Number((await info(client, 'memory')).used_memory)
  let next = 0
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < users * perUser) {
      const n = next++
      await scaled.create(`user-${n % users}`, { ...sessionData, ipAddress: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}` })
    }
  }))
  const after = Number((await info(client, 'memory')).used_memory)
  await scaled.close()

  console.log(`dist: ${dist}`)
  for (const [name, bytes] of Object.entries(breakdown.keys)) console.log(`  ${name.padEnd(34)} ${String(bytes).padStart(5)} B`)
  console.log(`  ${'sum (one user, one session)'.padEnd(34)} ${String(breakdown.total).padStart(5)} B`)
  console.log(`  ${'tombstone of an ended session'.padEnd(34)} ${String(tombstone).padStart(5)} B`)
  console.log(`  record: ${breakdown.sessionRecordLength} bytes of JSON (${breakdown.sessionRecordEncoding})`)
  const sessions = perUser === 1 ? '' : ` with ${perUser} sessions each`
  console.log(`  used_memory per user, ${users} users${sessions}: ${Math.round((after - before) / users)} B (${await client.dbsize()} keys)`)
} finally {
  client.disconnect()
  await redis.stop()
}
