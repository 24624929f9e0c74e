// The load generator (autocannon's programmatic API) plus what autocannon does not give: latency below one
// millisecond (its histogram counts whole milliseconds), and how busy the whole machine was during the run.
import os from 'node:os'
import autocannon from 'autocannon'

const BUCKET_US = 5
const BUCKETS = 400_000 // 2 s in 5 µs buckets; slower responses land in the last bucket

/** Idle and total CPU time of all cores since boot (ms). */
export function cpuTimes () {
  let idle = 0
  let total = 0
  for (const cpu of os.cpus()) {
    const t = cpu.times
    idle += t.idle
    total += t.user + t.nice + t.sys + t.idle + t.irq
  }
  return { idle, total }
}

/** Share of all cores' time that was not idle between two cpuTimes() snapshots, in percent. */
export function busyPercent (before, after) {
  const total = after.total - before.total
  return total > 0 ? 100 * (1 - (after.idle - before.idle) / total) : 0
}

export class LatencyHistogram {
  constructor () {
    this.counts = new Uint32Array(BUCKETS)
    this.count = 0
  }

  record (ms) {
    const bucket = Math.min(BUCKETS - 1, Math.floor(ms * 1000 / BUCKET_US))
    this.counts[bucket]++
    this.count++
  }

  /** The q-quantile in ms (upper edge of its bucket). */
  quantile (q) {
    if (this.count === 0) return null
    const rank = Math.ceil(q * this.count)
    let seen = 0
    for (let n = 0; n < BUCKETS; n++) {
      seen += this.counts[n]
      if (seen >= rank) return ((n + 1) * BUCKET_US) / 1000
    }
    return (BUCKETS * BUCKET_US) / 1000
  }
}

/**
 * Runs autocannon once. `hooks.onStart` / `hooks.onStop` run right before and after the load (the server's
 * CPU and Redis counters are read there). Returns req/s (2xx only), latency quantiles and errors.
 */
export async function runLoad ({ url, connections, seconds, headers = {}, method = 'GET', body, requests }, hooks = {}) {
  await hooks.onStart?.()
  const cpuBefore = cpuTimes()
  const histogram = new LatencyHistogram()
  const instance = autocannon({ url, connections, duration: seconds, headers, method, body, requests })
  instance.on('response', (client, statusCode, bytes, responseTime) => {
    if (statusCode >= 200 && statusCode < 300) histogram.record(responseTime)
  })
  const result = await instance
  const cpuAfter = cpuTimes()
  const stopped = await hooks.onStop?.()
  const ok = result['2xx']
  return {
    connections,
    seconds: result.duration,
    requests: ok,
    reqPerSec: ok / result.duration,
    p50Ms: histogram.quantile(0.5),
    p99Ms: histogram.quantile(0.99),
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    busyPercent: busyPercent(cpuBefore, cpuAfter),
    ...stopped
  }
}
