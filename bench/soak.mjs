// Soak test (not part of npm test): `npm run soak`, or `npm run build && node bench/soak.mjs`.
// A steady load of logins, authenticated requests, logouts and abandoned sessions that expire (short idle timeout)
// against the built plugin on its own redis-server, for SOAK_MINUTES (default 3) at SOAK_RATE operations per second
// (default 300). Every 10 s it samples Node's heapUsed (after a full GC) and Redis' DBSIZE and used_memory, then
// prints a table and a verdict: both must stay flat (the mean of the last third within 10% of the middle third's).
import v8 from 'node:v8'
import vm from 'node:vm'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { sessionPlugin } from '../dist/index.js'
import { info, startRedis } from './redis.mjs'

const MINUTES = Number(process.env.SOAK_MINUTES ?? 3)
const RATE = Number(process.env.SOAK_RATE ?? 300)
const SAMPLE_EVERY_MS = 10_000
const USERS = 2000
const IDLE_TIMEOUT = '20s'
const FLAT_TOLERANCE = 0.10

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')

const redis = await startRedis()
const client = new Redis(redis.url)
const app = Fastify()
await app.register(sessionPlugin, {
  redis: client,
  idleTimeout: IDLE_TIMEOUT,
  absoluteTimeout: '10m',
  touchInterval: '5s',
  maxSessionsPerUser: 3,
  // Cleanup drains the expiry queues and audits the sessions that timed out; short retention keeps the audit
  // streams at a steady size within the run.
  cleanup: { interval: '10s' },
  audit: { retention: '1m' }
})
app.post('/login', async (request, reply) => {
  const { token } = await reply.startSession(request.body.user, { metadata: { plan: 'pro', cart: [1, 2, 3] } })
  return { token }
})
app.get('/orders', { preHandler: app.requireSession }, async (request) => ({ user: request.session.userId }))
await app.ready()

// Held tokens: requests use them, logouts end them, and some are dropped to expire by the idle timeout.
const held = []
const MAX_HELD = 1500
const counts = { login: 0, request: 0, logout: 0, abandoned: 0, ok: 0, unauthorized: 0, other: 0 }
const pending = new Set()

function count (status) {
  if (status < 300) counts.ok++
  else if (status === 401) counts.unauthorized++
  else counts.other++
}

async function operation () {
  const dice = Math.random()
  if (held.length === 0 || dice < 0.15) {
    const user = `user${Math.floor(Math.random() * USERS)}`
    const response = await app.inject({ method: 'POST', url: '/login', payload: { user } })
    counts.login++
    count(response.statusCode)
    if (response.statusCode === 200) {
      held.push(response.json().token)
      if (held.length > MAX_HELD) held.splice(Math.floor(Math.random() * held.length), 1)
    }
  } else if (dice < 0.20) {
    const [token] = held.splice(Math.floor(Math.random() * held.length), 1)
    const response = await app.inject({ method: 'POST', url: '/logout', headers: { 'x-session-id': token } })
    counts.logout++
    count(response.statusCode)
  } else if (dice < 0.23) {
    held.splice(Math.floor(Math.random() * held.length), 1)
    counts.abandoned++
  } else {
    const token = held[Math.floor(Math.random() * held.length)]
    const response = await app.inject({ url: '/orders', headers: { 'x-session-id': token } })
    counts.request++
    count(response.statusCode)
    if (response.statusCode === 401) held.splice(held.indexOf(token), 1)
  }
}

// Warm-up: every user logs in once, so the per-user keys (shard tag, index) exist before the first sample and the
// table shows steady state rather than the user population filling in.
for (let first = 0; first < USERS; first += 100) {
  await Promise.all(Array.from({ length: 100 }, (_, k) => app.inject({ method: 'POST', url: '/login', payload: { user: `user${first + k}` } })
    .then((response) => { held.push(response.json().token) })))
}
held.splice(0, held.length - MAX_HELD)

const samples = []
async function sample (elapsedMs) {
  const snapshot = { ...counts, operations: counts.login + counts.request + counts.logout, held: held.length }
  gc()
  const memory = process.memoryUsage()
  const redisMemory = await info(client, 'memory')
  samples.push({
    seconds: Math.round(elapsedMs / 1000),
    ...snapshot,
    heapUsed: memory.heapUsed,
    rss: memory.rss,
    dbsize: await client.dbsize(),
    redisUsed: Number(redisMemory.used_memory)
  })
}

const startedAt = Date.now()
const endAt = startedAt + MINUTES * 60_000
let nextSampleAt = startedAt + SAMPLE_EVERY_MS
let sent = 0
// Paced: each tick sends what the rate owes since the start, so a slow tick does not lower the average rate.
while (Date.now() < endAt) {
  const owed = Math.floor((Date.now() - startedAt) * RATE / 1000) - sent
  for (let n = 0; n < owed && pending.size < 200; n++) {
    sent++
    const running = operation().catch(() => { counts.other++ })
    pending.add(running)
    running.finally(() => pending.delete(running))
  }
  if (Date.now() >= nextSampleAt) {
    await sample(Date.now() - startedAt)
    nextSampleAt += SAMPLE_EVERY_MS
  }
  await new Promise((resolve) => setTimeout(resolve, 10))
}
await Promise.all(pending)
await sample(Date.now() - startedAt)

const mb = (bytes) => (bytes / 1024 / 1024).toFixed(2)
console.log(`soak: ${MINUTES} min at ${RATE} ops/s, ${USERS} users, idle timeout ${IDLE_TIMEOUT}, cleanup every 10 s`)
console.log('| t (s) | operations | logins | requests | logouts | abandoned | 2xx | 401 | other | heapUsed MB | rss MB | DBSIZE | Redis used_memory MB |')
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
for (const s of samples) {
  console.log(`| ${s.seconds} | ${s.operations} | ${s.login} | ${s.request} | ${s.logout} | ${s.abandoned} | ${s.ok} | ${s.unauthorized} | ${s.other} | ${mb(s.heapUsed)} | ${mb(s.rss)} | ${s.dbsize} | ${mb(s.redisUsed)} |`)
}

const third = Math.floor(samples.length / 3)
const mean = (list, field) => list.reduce((sum, s) => sum + s[field], 0) / list.length
const middle = samples.slice(third, 2 * third)
const last = samples.slice(samples.length - third)
let isFlat = third > 0
for (const field of ['heapUsed', 'dbsize', 'redisUsed']) {
  if (third === 0) break
  const before = mean(middle, field)
  const after = mean(last, field)
  const change = (after - before) / before
  const flat = change <= FLAT_TOLERANCE
  isFlat &&= flat
  console.log(`${field}: middle third ${before.toFixed(0)}, last third ${after.toFixed(0)} (${(change * 100).toFixed(1)}%): ${flat ? 'flat' : 'GROWING'}`)
}
const failed = samples.at(-1)?.other ?? 0
console.log(`verdict: ${third === 0 ? 'too short to judge (need 3 samples)' : isFlat && failed === 0 ? 'FLAT' : 'NOT FLAT'}${failed > 0 ? `, ${failed} unexpected answers` : ''}`)

await app.close()
await client.quit()
await redis.stop()
process.exitCode = isFlat && failed === 0 ? 0 : 1
