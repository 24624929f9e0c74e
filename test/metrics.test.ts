import Module from 'node:module'
import Fastify from 'fastify'
import { test, type Test } from 'tap'
import { Redis } from 'ioredis'
import { Registry } from 'prom-client'
import { SessionCleanupService } from '../lib/core/cleanup'
import sessionPlugin from '../lib/index'
import { SessionManager } from '../lib/core/manager'
import { registerMetrics } from '../lib/plugin/metrics'
import { MemoryStore } from '../lib/store/memory/store'
import { RedisStore } from '../lib/store/redis/store'
import { startRedis, type RedisServer } from './helpers/redis'

const MINUTE = 60_000
const DAY = 86_400_000
const METRIC_NAMES = [
  'fastify_session_created_total',
  'fastify_session_invalidated_total',
  'fastify_session_evicted_total',
  'fastify_session_expired_total',
  'fastify_session_suspicious_total',
  'fastify_session_store_errors_total',
  'fastify_session_cleanup_runs_total',
  'fastify_session_cleanup_duration_seconds'
]
/** A well-formed token that opens no session. */
const UNKNOWN_TOKEN = `${'A'.repeat(24)}.${'b'.repeat(43)}`

/** Sum of a metric's samples whose labels include `labels`. */
async function value (registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name)
  if (metric === undefined) throw new Error(`${name} is not registered`)
  const { values } = await metric.get()
  return values
    .filter((sample) => Object.entries(labels).every(([key, label]) => sample.labels[key] === label))
    .reduce((sum, sample) => sum + sample.value, 0)
}

async function histogramCount (registry: Registry, name: string): Promise<number> {
  const { values } = await (registry.getSingleMetric(name) as NonNullable<ReturnType<Registry['getSingleMetric']>>).get()
  return values.find((sample) => (sample as { metricName?: string }).metricName === `${name}_count`)?.value ?? 0
}

function redisManager (t: Test, server: RedisServer, clock: { now: number }): SessionManager {
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  return new SessionManager({ store: new RedisStore({ client, prefix: 'm:' }), now: () => clock.now, maxSessionsPerUser: 2 })
}

type ResolveFilename = (request: string, ...rest: unknown[]) => string

/** Makes `require('prom-client')` fail with `error` while `fn` runs. */
function withoutPromClient (error: Error, fn: () => void): void {
  const loader = Module as unknown as { _resolveFilename: ResolveFilename }
  const original = loader._resolveFilename
  loader._resolveFilename = function (this: unknown, request: string, ...rest: unknown[]) {
    if (request === 'prom-client') throw error
    return original.call(this, request, ...rest)
  }
  try {
    fn()
  } finally {
    loader._resolveFilename = original
  }
}

// First in the file: once lib/plugin/metrics.ts has loaded prom-client, Node answers later requires from its cache.
test('without prom-client installed, registering metrics says to install it', async (t) => {
  const manager = new SessionManager({ store: new MemoryStore() })
  const missing = Object.assign(new Error("Cannot find module 'prom-client'"), { code: 'MODULE_NOT_FOUND' })
  withoutPromClient(missing, () => {
    t.throws(() => registerMetrics(new Registry(), manager), {
      code: 'FST_SESSION_INVALID_OPTION',
      message: 'fastify-distributed-session: option "metrics" needs prom-client, which is not installed: npm install prom-client',
      cause: missing
    })
  })
  const broken = new Error('prom-client failed to initialise')
  withoutPromClient(broken, () => {
    t.throws(() => registerMetrics(new Registry(), manager), broken, 'any other load error is passed on as it is')
  })
  t.equal(manager.listenerCount('audit'), 0, 'nothing was wired')
})

test('the counters follow sessions created, invalidated, evicted and expired', async (t) => {
  const server = await startRedis(t)
  const clock = { now: Date.now() }
  const manager = redisManager(t, server, clock)
  const registry = new Registry()
  registerMetrics(registry, manager)

  const first = await manager.create('u')
  clock.now += 1000
  await manager.create('u')
  clock.now += 1000
  const third = await manager.create('u')
  t.same(third.evicted, [first.session.id])
  t.equal(await value(registry, 'fastify_session_created_total'), 3)
  t.equal(await value(registry, 'fastify_session_evicted_total'), 1)

  await manager.invalidate(third.session.id, { reason: 'logout' })
  await manager.create('v')
  await manager.create('v')
  t.equal(await manager.invalidateAll('v'), 2)
  await manager.create('w')
  t.equal(await manager.forceReauthentication('w', 'stolen laptop'), 1)
  t.equal(await value(registry, 'fastify_session_invalidated_total', { reason: 'logout' }), 1)
  t.equal(await value(registry, 'fastify_session_invalidated_total', { reason: 'invalidate_all' }), 2, 'one per session, the summary event aside')
  t.equal(await value(registry, 'fastify_session_invalidated_total', { reason: 'force_reauthentication' }), 1, 'the free text after the colon is not a label')
  t.equal(await value(registry, 'fastify_session_invalidated_total'), 4)
  t.equal(await value(registry, 'fastify_session_suspicious_total'), 1)

  const x = await manager.create('x')
  clock.now += 31 * MINUTE
  t.equal(await manager.get(x.token), null, 'expired when read')
  t.match(await new SessionCleanupService({ manager, intervalMs: DAY }).runOnce(), { expired: 1 }, "and u's last session by cleanup")
  t.equal(await value(registry, 'fastify_session_expired_total'), 2)
  t.equal(await value(registry, 'fastify_session_created_total'), 7)
})

test('store errors on the request path are counted', async (t) => {
  const registry = new Registry()
  const store = new MemoryStore()
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sessionPlugin, { store, metrics: { registry }, cleanup: false, routes: false, storeTimeout: 50 })
  app.get('/', async () => 'ok')
  await app.ready()

  // Without its synchronous read, every request reads through the failing load below.
  Object.assign(store, { loadNow: undefined })
  store.load = async () => { throw new Error('connection refused') }
  t.equal((await app.inject({ url: '/', headers: { 'x-session-id': UNKNOWN_TOKEN } })).statusCode, 503)
  store.load = () => new Promise(() => {})
  t.equal((await app.inject({ url: '/', headers: { 'x-session-id': UNKNOWN_TOKEN } })).statusCode, 503, 'a timeout')
  t.equal(await value(registry, 'fastify_session_store_errors_total'), 2)
})

test('cleanup runs are counted by result and timed', async (t) => {
  const server = await startRedis(t)
  const clock = { now: Date.now() }
  const registry = new Registry()
  const a = redisManager(t, server, clock)
  const b = redisManager(t, server, clock)
  registerMetrics(registry, a)
  registerMetrics(registry, b)
  const holder = new SessionCleanupService({ manager: a, intervalMs: DAY })
  const other = new SessionCleanupService({ manager: b, intervalMs: DAY })
  await holder.runOnce()
  await other.runOnce()
  a.store.cleanup = async () => { throw new Error('boom') }
  await t.rejects(holder.runOnce())
  t.equal(await value(registry, 'fastify_session_cleanup_runs_total', { result: 'ok' }), 1)
  t.equal(await value(registry, 'fastify_session_cleanup_runs_total', { result: 'skipped' }), 1, 'the instance that found the interval taken')
  t.equal(await value(registry, 'fastify_session_cleanup_runs_total', { result: 'error' }), 1)
  t.equal(await histogramCount(registry, 'fastify_session_cleanup_duration_seconds'), 1, 'only runs that cleaned are timed')
})

test('the exposition text names every metric', async (t) => {
  const registry = new Registry()
  const manager = new SessionManager({ store: new MemoryStore() })
  registerMetrics(registry, manager)
  await manager.create('y')
  const text = await registry.metrics()
  for (const name of METRIC_NAMES) t.match(text, `# TYPE ${name} `, name)
  t.match(text, /^fastify_session_created_total 1$/m)
})

test('the reason label takes at most 50 values; later reasons count as other', async (t) => {
  const registry = new Registry()
  const manager = new SessionManager({ store: new MemoryStore(), maxSessionsPerUser: 100 })
  registerMetrics(registry, manager)
  const { session } = await manager.create('z')
  await manager.invalidate(session.id, { reason: '' })
  manager.emit('audit', { type: 'invalidated', timestamp: new Date(), userId: 'z', sessionId: session.id, data: {} })
  for (let n = 0; n < 60; n++) {
    const { session } = await manager.create('z')
    await manager.invalidate(session.id, { reason: `reason ${n}` })
  }
  const { values } = await (registry.getSingleMetric('fastify_session_invalidated_total') as NonNullable<ReturnType<Registry['getSingleMetric']>>).get()
  t.equal(values.length, 51, '50 reasons and other')
  t.equal(await value(registry, 'fastify_session_invalidated_total', { reason: 'unknown' }), 2, 'no reason, or an empty one')
  t.equal(await value(registry, 'fastify_session_invalidated_total', { reason: 'reason 48' }), 1)
  t.equal(await value(registry, 'fastify_session_invalidated_total', { reason: 'other' }), 11)
  t.equal(await value(registry, 'fastify_session_invalidated_total'), 62)
})

test('with the near cache, its hits, misses and hit ratio are exported at scrape time', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const registry = new Registry()
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sessionPlugin, { redis: client, nearCache: true, cleanup: false, metrics: { registry } })
  app.post('/login', async (_request, reply) => await reply.startSession('dora'))
  app.get('/me', { preHandler: app.requireSession }, async (request) => ({ id: request.session?.id }))
  await app.ready()
  const store = app.sessions.store as RedisStore
  for (let n = 0; n < 200 && store.nearCache?.ready !== true; n++) await new Promise((resolve) => setTimeout(resolve, 10))
  const { token } = (await app.inject({ method: 'POST', url: '/login' })).json() as { token: string }
  for (let n = 0; n < 4; n++) t.equal((await app.inject({ url: '/me', headers: { 'x-session-id': token } })).statusCode, 200)
  t.equal(await value(registry, 'fastify_session_near_cache_misses_total'), 1)
  t.equal(await value(registry, 'fastify_session_near_cache_hits_total'), 3)
  t.equal(await value(registry, 'fastify_session_near_cache_hit_ratio'), 0.75)
  t.equal((await app.inject({ url: '/me', headers: { 'x-session-id': token } })).statusCode, 200)
  t.equal(await value(registry, 'fastify_session_near_cache_hits_total'), 4, 'a second scrape adds only what happened since the first')
  t.equal(await value(registry, 'fastify_session_near_cache_misses_total'), 1)
})

test('without a near cache, no near-cache metric is registered', async (t) => {
  const registry = new Registry()
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sessionPlugin, { store: new MemoryStore(), cleanup: false, metrics: { registry } })
  await app.ready()
  t.equal(registry.getSingleMetric('fastify_session_near_cache_hits_total'), undefined)
})
