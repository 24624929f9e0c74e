// One server under test, forked by bench/run.mjs: `node bench/server.mjs <variant>`.
// IPC: it sends { type: 'ready', port }; it answers 'start' / 'stop' (CPU used and Redis round trips between
// the two) and exits on 'close'. BENCH_REDIS_URL names the bench's redis-server; BENCH_COUNT_ROUND_TRIPS=1 wraps
// ioredis' sendCommand to count the commands this process sends (one round trip each: nothing here pipelines).
// A variant whose builder returns `cacheStats` (the near cache's counters) also reports its hits and misses in between.
import { Redis } from 'ioredis'
import { VARIANTS } from './apps.mjs'

const variant = VARIANTS.find((v) => v.key === process.argv[2])
if (variant === undefined) throw new Error(`unknown variant ${process.argv[2]}`)

let roundTrips = 0
let sentByCommand = new Map()
if (process.env.BENCH_COUNT_ROUND_TRIPS === '1') {
  const sendCommand = Redis.prototype.sendCommand
  Redis.prototype.sendCommand = function countedSendCommand (command, stream) {
    roundTrips++
    sentByCommand.set(command.name, (sentByCommand.get(command.name) ?? 0) + 1)
    return sendCommand.call(this, command, stream)
  }
}

const { server, close, cacheStats } = await variant.build(process.env.BENCH_REDIS_URL)
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))

let cpuAtStart = process.cpuUsage()
let startedAt = process.hrtime.bigint()

/** A copy of the near cache's counters (null without one), so a live object returned by the plugin cannot move. */
function cacheSnapshot () {
  const stats = cacheStats?.() ?? null
  return stats === null ? null : { hits: stats.hits, misses: stats.misses }
}

let cacheAtStart = cacheSnapshot()

/**
 * Hits and misses between two cacheStats() snapshots. Counters that went down were reset in between (the cache was
 * cleared): then everything counted since the reset is what the run did.
 */
function cacheDelta (before, after) {
  if (before === null || after === null) return null
  const isReset = after.hits < before.hits || after.misses < before.misses
  const hits = isReset ? after.hits : after.hits - before.hits
  const misses = isReset ? after.misses : after.misses - before.misses
  return { hits, misses, hitRatio: hits + misses === 0 ? null : hits / (hits + misses) }
}

process.on('message', async (message) => {
  if (message.type === 'start') {
    roundTrips = 0
    sentByCommand = new Map()
    cpuAtStart = process.cpuUsage()
    startedAt = process.hrtime.bigint()
    cacheAtStart = cacheSnapshot()
    process.send({ type: 'started' })
  } else if (message.type === 'stop') {
    const cpu = process.cpuUsage(cpuAtStart)
    const stoppedAt = process.hrtime.bigint()
    process.send({
      type: 'stats',
      cpuMicros: cpu.user + cpu.system,
      elapsedMs: Number(stoppedAt - startedAt) / 1e6,
      // The monotonic clock in µs, the clock of V8's profile timestamps: bench/profile.mjs keeps the samples in between.
      startedAtMicros: Number(startedAt / 1000n),
      stoppedAtMicros: Number(stoppedAt / 1000n),
      roundTrips,
      sentByCommand: Object.fromEntries(sentByCommand),
      rssBytes: process.memoryUsage.rss(),
      cache: cacheDelta(cacheAtStart, cacheSnapshot())
    })
  } else if (message.type === 'close') {
    await close()
    // --cpu-prof writes its profile on a normal exit.
    process.exit(0)
  }
})
process.on('disconnect', () => process.exit(0))
process.send({ type: 'ready', port: server.address().port })
