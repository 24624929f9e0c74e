// What the near cache's broadcast tracking (the Redis Cluster mode, lib/store/redis/near-cache.ts) costs a Redis
// node: every write under the key prefix is reported to every app instance's listener on that node.
//   node bench/near-cache-broadcast.mjs [writes per run, default 20000] [repeats, default 3] [users in flight, default 32]
// On a redis-server of its own (a Cluster node tracks the same way, for its own keys), the run writes sessions the
// way the plugin does (logins and logouts through SessionManager, 2 write scripts per user) while 0, 10 and 50
// simulated instances listen (each a tracking connection with CLIENT TRACKING ON REDIRECT ... BCAST PREFIX sess:, and
// a subscribed listener), in a rotated order per repeat. Prints Redis CPU per write script (INFO cpu) for each count,
// the invalidation messages each listener received per write, and the tracking table's size (BCAST keeps none).
// Redis sends the keys changed under a prefix as one message per event-loop turn: with many users in flight a
// message carries the keys of many writes; with 1 in flight, each write is a message of its own (the dearest case).
import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'
import { Redis } from 'ioredis'
import { broadcastListeners } from './capacity/probe.mjs'
import { info, redisCpuSeconds, startRedis } from './redis.mjs'
import { median } from './report.mjs'

const WRITES = Number(process.argv[2] ?? 20_000)
const REPEATS = Number(process.argv[3] ?? 3)
const LISTENER_COUNTS = [0, 10, 50]
const IN_FLIGHT = Number(process.argv[4] ?? 32)
const { RedisStore, SessionManager } = await import(pathToFileURL(resolve('dist/index.js')).href)

const redis = await startRedis()
const client = new Redis(redis.url)

async function run (listeners, repeat) {
  await client.flushall()
  const instances = await broadcastListeners(redis.url, listeners)
  const manager = new SessionManager({ store: new RedisStore({ client }), audit: { retention: 0 } })
  const users = WRITES / 2
  const cpuBefore = await redisCpuSeconds(client)
  let next = 0
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < users) {
      const n = next++
      const { session } = await manager.create(`user-${repeat}-${n}`, { ipAddress: '10.0.0.1', userAgent: 'bench' })
      await manager.invalidate(session.id)
    }
  }))
  const cpu = await redisCpuSeconds(client) - cpuBefore
  // The last messages are still on their way: wait for them before counting.
  await new Promise((resolve) => setTimeout(resolve, 200))
  const tracking = await info(client, 'stats')
  await manager.close()
  const messages = instances.messages()
  const keys = instances.keys()
  instances.close()
  return {
    listeners,
    cpuMicrosPerWrite: cpu * 1e6 / WRITES,
    messagesPerWritePerListener: listeners === 0 ? 0 : messages / listeners / WRITES,
    keysPerWritePerListener: listeners === 0 ? 0 : keys / listeners / WRITES,
    trackingTotalKeys: tracking.tracking_total_keys,
    trackingTotalPrefixes: tracking.tracking_total_prefixes
  }
}

try {
  const results = []
  for (let repeat = 0; repeat < REPEATS; repeat++) {
    const order = LISTENER_COUNTS.map((_, k) => LISTENER_COUNTS[(k + repeat) % LISTENER_COUNTS.length])
    for (const listeners of order) results.push(await run(listeners, repeat))
  }
  const base = median(results.filter((r) => r.listeners === 0).map((r) => r.cpuMicrosPerWrite))
  console.log(`${WRITES} write scripts per run (logins and logouts), ${IN_FLIGHT} users in flight, ${REPEATS} repeats, medians; ${new Date().toISOString()}`)
  console.log('listening instances | Redis CPU per write (µs) | extra per instance (µs) | messages per write per instance | keys per message | tracking keys')
  for (const listeners of LISTENER_COUNTS) {
    const runs = results.filter((r) => r.listeners === listeners)
    const cpu = median(runs.map((r) => r.cpuMicrosPerWrite))
    const messages = median(runs.map((r) => r.messagesPerWritePerListener))
    const keys = median(runs.map((r) => r.keysPerWritePerListener))
    console.log([
      listeners,
      `${cpu.toFixed(1)} (${runs.map((r) => r.cpuMicrosPerWrite.toFixed(1)).join(', ')})`,
      listeners === 0 ? '-' : ((cpu - base) / listeners).toFixed(2),
      messages.toFixed(2),
      messages === 0 ? '-' : (keys / messages).toFixed(1),
      runs[0].trackingTotalKeys
    ].join(' | '))
  }
} finally {
  client.disconnect()
  await redis.stop()
}
