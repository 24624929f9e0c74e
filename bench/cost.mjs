// Cost of the per-user scripts and of the near cache on a redis-server of its own (issue 11 item 6):
//   node bench/cost.mjs   (after npm run build)
// Prints the Redis time per LIST call for a user with 1000 sessions (INFO commandstats usec_per_call of evalsha),
// how long ten concurrent lists delay another client's PING, and used_memory growth for 100,000 unknown tokens
// read through the near cache.
import { Redis } from 'ioredis'
import { SessionManager } from '../dist/core/manager.js'
import { RedisStore } from '../dist/store/redis/store.js'
import { startRedis, exitOnSignals } from './redis.mjs'

exitOnSignals()
const server = await startRedis()
const client = new Redis(server.url)
try {
  const manager = new SessionManager({ store: new RedisStore({ client }), maxSessionsPerUser: 1000, audit: { retention: 0 } })
  for (let n = 0; n < 1000; n += 50) {
    await Promise.all(Array.from({ length: 50 }, (_, k) => manager.create('heavy', { ipAddress: `10.0.${(n + k) >> 8}.${(n + k) & 255}`, userAgent: `UA/${(n + k) % 7}` })))
  }
  await manager.list('heavy')
  await client.config('RESETSTAT')
  for (let n = 0; n < 20; n++) await manager.list('heavy')
  const stats = await client.info('commandstats')
  const evalsha = /cmdstat_evalsha:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)/.exec(stats)
  console.log(`LIST of 1000 sessions: ${evalsha?.[3]} us of Redis time per call (${evalsha?.[1]} calls)`)
  const pinger = new Redis(server.url)
  await pinger.ping()
  const started = performance.now()
  const lists = Array.from({ length: 10 }, () => manager.list('heavy'))
  await new Promise((resolve) => setTimeout(resolve, 1))
  const pingAt = performance.now()
  await pinger.ping()
  const pingMs = performance.now() - pingAt
  await Promise.all(lists)
  console.log(`PING during ten concurrent lists: ${pingMs.toFixed(1)} ms (lists done after ${(performance.now() - started).toFixed(1)} ms)`)
  pinger.disconnect()

  const cached = new RedisStore({ client: new Redis(server.url), nearCache: true, prefix: 'nc:' })
  const near = new SessionManager({ store: cached, audit: { retention: 0 } })
  for (let n = 0; n < 200 && !cached.nearCache.ready; n++) await new Promise((resolve) => setTimeout(resolve, 10))
  const before = Number(/used_memory:(\d+)/.exec(await client.info('memory'))[1])
  const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  const random = (length) => Array.from({ length }, () => letters[Math.floor(Math.random() * letters.length)]).join('')
  for (let n = 0; n < 100_000; n += 500) {
    await Promise.all(Array.from({ length: 500 }, () => near.get(`${random(24)}.${random(43)}`, { touch: false })))
  }
  const after = Number(/used_memory:(\d+)/.exec(await client.info('memory'))[1])
  console.log(`near cache, 100,000 unknown tokens: used_memory +${after - before} bytes (${((after - before) / 100_000).toFixed(1)} per token)`)
  await near.close()
} finally {
  client.disconnect()
  await server.stop()
}
