// Checks the capacity model against this machine (issue 17):
//   npm run capacity:validate       (builds; reads bench/results/capacity-units.json, writes capacity-validation.json)
// 1. Memory: predicts used_memory for CAPACITY_VALIDATE_SESSIONS users with one session each (default 1,000,000)
//    from the unit costs, creates them with the real manager.create (CAPACITY_WORKERS processes, default 2) and
//    compares.
// 2. Throughput: predicts the requests/s one Redis core sustains for the request mix below from the unit costs,
//    drives the mix at Redis from the worker processes for CAPACITY_VALIDATE_SECONDS (default 20), each with
//    CAPACITY_CONCURRENCY operations in flight (default 32, as in the measurement), and compares with the operations
//    per second of Redis CPU (used_cpu). On this 2-core machine the workers share the cores with Redis, so Redis
//    may not reach 100% of one core: the utilisation reached is printed with the result.
// The prediction must be within 15% of the measurement, or the model is wrong: the exit code is 1 then.
import { fork } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { RedisStore, SessionManager } from '../../dist/index.js'
import { exitOnSignals, startRedis } from '../redis.mjs'
import { predictedMemory, saturationThroughput } from './model.mjs'
import { machine, probeClient, redisCpuUs, runConcurrently, usedMemory } from './probe.mjs'
import { sessionData } from './measure.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const SELF = fileURLToPath(import.meta.url)
const UNITS = process.env.CAPACITY_UNITS ?? path.join(here, '..', 'results', 'capacity-units.json')
const OUT = process.env.CAPACITY_VALIDATION_OUT ?? path.join(here, '..', 'results', 'capacity-validation.json')
const SESSIONS = Number(process.env.CAPACITY_VALIDATE_SESSIONS ?? 1_000_000)
const SECONDS = Number(process.env.CAPACITY_VALIDATE_SECONDS ?? 20)
const WORKERS = Number(process.env.CAPACITY_WORKERS ?? 2)
const CONCURRENCY = Number(process.env.CAPACITY_CONCURRENCY ?? 32)
const POOL = 3000
const TOLERANCE = 0.15

/** The request mix of the throughput check: shares of operations, summing to 1. */
export const MIX = { request: 0.9, requestTouch: 0.05, login: 0.02, logout: 0.02, list: 0.005, auditQuery: 0.005 }

/** One cycle of 1000 operations in the mix's proportions, interleaved (a fixed shuffle). */
function schedule () {
  const ops = []
  for (const [name, share] of Object.entries(MIX)) for (let n = 0; n < Math.round(share * 1000); n++) ops.push(name)
  let seed = 17
  for (let i = ops.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2147483648
    const j = seed % (i + 1);
    [ops[i], ops[j]] = [ops[j], ops[i]]
  }
  return ops
}

// ---- worker process -------------------------------------------------------------------------------------------

async function worker () {
  const client = new Redis(process.env.CAPACITY_REDIS_URL)
  const id = process.env.CAPACITY_WORKER_ID
  // The plain manager's clock stands still, so a plain request never finds a touch due; the touch manager's clock
  // moves 61 s when the run starts and each time it has gone through its pool, so each of its requests does.
  const frozen = Date.now()
  // batchWrites: false, as in the measured units (measure.mjs): the model prices each command sent alone.
  const plain = new SessionManager({ store: new RedisStore({ client, batchWrites: false }), now: () => frozen })
  let touchClock = frozen
  const touching = new SessionManager({ store: new RedisStore({ client, batchWrites: false }), now: () => touchClock })
  const tokens = []
  const touchTokens = []
  const endable = []
  let logins = 0
  const handlers = {
    async create ({ from, count }) {
      await runConcurrently(count, CONCURRENCY * 4, (i) => plain.create(`v-${from + i}`, sessionData(from + i)))
    },
    async close () {},
    async prepare () {
      await runConcurrently(POOL, CONCURRENCY, async (n) => {
        tokens[n] = (await plain.create(`w${id}-p${n}`, sessionData(n))).token
        await plain.create(`w${id}-p${n}`, sessionData(n, 1))
        touchTokens[n] = (await touching.create(`w${id}-t${n}`, sessionData(n))).token
        endable.push((await plain.create(`w${id}-e${n}`, sessionData(n))).session.id)
      })
    },
    // `only`: that one operation type instead of the mix (capacity:measure prices each type under this load).
    async run ({ seconds, only }) {
      const cycle = only === undefined ? schedule() : [only]
      touchClock += 61_000
      const counts = Object.fromEntries((only === undefined ? Object.keys(MIX) : [only]).map((name) => [name, 0]))
      let next = 0
      let touched = 0
      const deadline = performance.now() + seconds * 1000
      const operations = {
        request: (n) => plain.get(tokens[n % POOL]),
        requestTouch: () => {
          if (touched > 0 && touched % POOL === 0) touchClock += 61_000
          return touching.get(touchTokens[touched++ % POOL])
        },
        login: async () => { endable.push((await plain.create(`w${id}-l${logins}`, sessionData(logins++, 2))).session.id) },
        logout: () => plain.invalidate(endable.shift()),
        list: (n) => plain.list(`w${id}-p${n % POOL}`),
        auditQuery: (n) => plain.auditLog(`w${id}-p${n % POOL}`, { limit: 50 })
      }
      const loop = async () => {
        while (performance.now() < deadline) {
          const n = next++
          const name = cycle[n % cycle.length]
          // Logouts end sessions logged in before: when none is left, this worker's run is over.
          if (name === 'logout' && endable.length === 0) break
          await operations[name](n)
          counts[name]++
        }
      }
      await Promise.all(Array.from({ length: CONCURRENCY }, loop))
      return counts
    }
  }
  process.on('message', async (message) => {
    const result = await handlers[message.cmd](message)
    process.send({ cmd: message.cmd, result })
    if (message.cmd === 'close') {
      client.disconnect()
      process.disconnect()
    }
  })
  process.send({ cmd: 'ready' })
}

// ---- parent ---------------------------------------------------------------------------------------------------

export function startWorkers (url) {
  return Array.from({ length: WORKERS }, (_, n) => {
    const child = fork(SELF, [], { env: { ...process.env, CAPACITY_ROLE: 'worker', CAPACITY_REDIS_URL: url, CAPACITY_WORKER_ID: String(n) } })
    const waiting = new Map()
    child.on('message', (message) => {
      waiting.get(message.cmd)?.(message.result)
      waiting.delete(message.cmd)
    })
    const ready = new Promise((resolve) => waiting.set('ready', resolve))
    return {
      ready,
      ask (cmd, args = {}) {
        const answer = new Promise((resolve) => waiting.set(cmd, resolve))
        child.send({ cmd, ...args })
        return answer
      }
    }
  })
}

const percent = (value) => `${value >= 0 ? '+' : ''}${(value * 100).toFixed(1)}%`

async function main () {
  exitOnSignals()
  const units = JSON.parse(fs.readFileSync(UNITS, 'utf8'))
  const redis = await startRedis()
  const probe = probeClient(redis.url)
  const workers = startWorkers(redis.url)
  const result = { generatedAt: new Date().toISOString(), command: 'npm run capacity:validate', units: { path: path.relative(process.cwd(), UNITS), generatedAt: units.generatedAt } }
  try {
    await Promise.all(workers.map((w) => w.ready))
    result.machine = await machine(probe)
    console.log(`capacity validation: ${SESSIONS} sessions, ${SECONDS} s of the mix, ${WORKERS} worker processes x ${CONCURRENCY} in flight; load ${result.machine.loadAverage.join(' ')}`)
    console.log(`unit costs from ${result.units.path} (${units.generatedAt})`)

    if (SESSIONS > 0) {
      const predicted = predictedMemory(SESSIONS, units)
      const before = await usedMemory(probe)
      const startedAt = performance.now()
      const share = Math.ceil(SESSIONS / WORKERS)
      await Promise.all(workers.map((w, n) => w.ask('create', { from: n * share, count: Math.min(share, SESSIONS - n * share) })))
      const seconds = (performance.now() - startedAt) / 1000
      const measured = await usedMemory(probe) - before
      result.memory = { sessions: SESSIONS, predictedBytes: predicted, measuredBytes: measured, error: (predicted - measured) / measured, createSeconds: seconds, keys: await probe.dbsize() }
      console.log(`memory, ${SESSIONS} users x 1 session: predicted ${(predicted / 2 ** 20).toFixed(1)} MiB, measured ${(measured / 2 ** 20).toFixed(1)} MiB used_memory (${Math.round(measured / SESSIONS)} B per user), error ${percent(result.memory.error)}; created in ${seconds.toFixed(0)} s (${Math.round(SESSIONS / seconds)}/s)`)
    }

    await Promise.all(workers.map((w) => w.ask('prepare')))
    const predicted = saturationThroughput(MIX, units)
    const cpuBefore = await redisCpuUs(probe)
    const startedAt = performance.now()
    const counts = await Promise.all(workers.map((w) => w.ask('run', { seconds: SECONDS })))
    const seconds = (performance.now() - startedAt) / 1000
    const cpuSeconds = (await redisCpuUs(probe) - cpuBefore) / 1e6
    const byOp = {}
    for (const count of counts) for (const [name, n] of Object.entries(count)) byOp[name] = (byOp[name] ?? 0) + n
    const total = Object.values(byOp).reduce((sum, n) => sum + n, 0)
    const perCoreSecond = total / cpuSeconds
    result.throughput = {
      mix: MIX,
      predictedPerCore: predicted,
      operations: total,
      byOperation: byOp,
      seconds,
      opsPerSecond: total / seconds,
      redisCpuSeconds: cpuSeconds,
      redisUtilization: cpuSeconds / seconds,
      measuredPerCore: perCoreSecond,
      error: (predicted - perCoreSecond) / perCoreSecond,
      keysDuringRun: await probe.dbsize()
    }
    console.log(`throughput, mix ${Object.entries(MIX).map(([name, share]) => `${name} ${share * 100}%`).join(', ')}:`)
    console.log(`  predicted ${Math.round(predicted)} operations per second of one Redis core; measured ${total} operations in ${seconds.toFixed(1)} s (${Math.round(total / seconds)}/s) for ${cpuSeconds.toFixed(2)} s of Redis CPU (${(cpuSeconds / seconds * 100).toFixed(0)}% of a core) = ${Math.round(perCoreSecond)} per core-second, error ${percent(result.throughput.error)}`)
    await Promise.all(workers.map((w) => w.ask('close')))
    result.machine.loadAverageAtEnd = (await machine(probe)).loadAverage
    fs.writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n')
    console.log(`wrote ${path.relative(process.cwd(), OUT)} (load average at end ${result.machine.loadAverageAtEnd.join(' ')})`)
    const errors = [result.memory?.error ?? 0, result.throughput.error]
    if (errors.some((error) => Math.abs(error) > TOLERANCE)) {
      console.log(`a prediction is off by more than ${TOLERANCE * 100}%: the model needs fixing`)
      process.exitCode = 1
    }
  } finally {
    probe.disconnect()
    await redis.stop()
  }
}

if (process.argv[1] === SELF) {
  if (process.env.CAPACITY_ROLE === 'worker') await worker()
  else await main()
}
