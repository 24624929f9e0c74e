import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { test, type Test } from 'tap'
import sessionPlugin from '../lib/index'
import type { RedisStore } from '../lib/store/redis/store'
import { addScribbleRoutes, buildApp, BROWSER, login, UNSCRIBBLED } from './helpers/app'
import { startRedis, type RedisServer } from './helpers/redis'
import { commandsProcessed } from './helpers/redis-inspect'

async function client (t: Test, server: RedisServer): Promise<Redis> {
  const redis = new Redis(server.url)
  t.teardown(() => redis.quit())
  return redis
}

/** Waits until the near cache has set up tracking (connections ready, CLIENT TRACKING on). */
async function nearCacheReady (store: RedisStore): Promise<void> {
  // Tracking is set up over real connections: poll.
  for (let n = 0; n < 200 && store.nearCache?.ready !== true; n++) await sleep(10)
  if (store.nearCache?.ready !== true) throw new Error('the near cache did not get ready')
}

test('with the near cache, repeat requests cost no Redis command', async (t) => {
  const server = await startRedis(t)
  const redis = await client(t, server)
  const app = await buildApp(t, { redis, nearCache: true })
  await nearCacheReady(app.sessions.store as RedisStore)
  const { token } = await login(app, 'alice')
  const headers = { ...BROWSER, 'x-session-id': token }
  t.equal((await app.inject({ url: '/orders', headers })).statusCode, 200, 'the first request reads Redis')
  const before = await commandsProcessed(redis)
  for (let n = 0; n < 20; n++) t.equal((await app.inject({ url: '/orders', headers })).statusCode, 200)
  t.equal(await commandsProcessed(redis) - before, 1, 'twenty requests, no command but the INFO')
})

test('a revocation on another instance reaches the cache within milliseconds', async (t) => {
  const server = await startRedis(t)
  const cached = await buildApp(t, { redis: await client(t, server), nearCache: true })
  const other = await buildApp(t, { redis: await client(t, server) })
  await nearCacheReady(cached.sessions.store as RedisStore)
  const delays: number[] = []
  for (let round = 0; round < 5; round++) {
    const { token, sessionId } = await login(other, `bob${round}`)
    const headers = { ...BROWSER, 'x-session-id': token }
    t.equal((await cached.inject({ url: '/orders', headers })).statusCode, 200)
    t.equal((await cached.inject({ url: '/orders', headers })).statusCode, 200, 'served from the cache')
    const revokedAt = performance.now()
    t.equal(await other.sessions.invalidate(sessionId), true, 'revoked on the other instance')
    let status = 200
    while (status === 200 && performance.now() - revokedAt < 2000) {
      status = (await cached.inject({ url: '/orders', headers })).statusCode
      // Measures how long a real invalidation message takes to arrive: poll.
      if (status === 200) await sleep(1)
    }
    t.equal(status, 401, 'the cached instance refuses the revoked token')
    delays.push(performance.now() - revokedAt)
  }
  delays.sort((a, b) => a - b)
  t.ok((delays[delays.length - 1] as number) < 1000, `revocation delays ${delays.map((d) => d.toFixed(1)).join(', ')} ms`)
})

test('with an ioredis keyPrefix and a store prefix, a revocation elsewhere still reaches the cache', async (t) => {
  const server = await startRedis(t)
  const prefixed = async (): Promise<Redis> => {
    const redis = new Redis(server.url, { keyPrefix: 'app1:' })
    t.teardown(() => redis.quit())
    return redis
  }
  const cached = await buildApp(t, { redis: await prefixed(), keyPrefix: 'tenant:', nearCache: true })
  const other = await buildApp(t, { redis: await prefixed(), keyPrefix: 'tenant:' })
  await nearCacheReady(cached.sessions.store as RedisStore)
  const { token, sessionId } = await login(other, 'carol')
  const headers = { ...BROWSER, 'x-session-id': token }
  t.equal((await cached.inject({ url: '/orders', headers })).statusCode, 200)
  t.equal((await cached.inject({ url: '/orders', headers })).statusCode, 200)
  t.equal((cached.sessions.store as RedisStore).nearCache?.size, 1, 'cached')
  t.equal(await other.sessions.invalidate(sessionId), true)
  let status = 200
  const revokedAt = performance.now()
  while (status === 200 && performance.now() - revokedAt < 2000) {
    status = (await cached.inject({ url: '/orders', headers })).statusCode
    // Waits for the real invalidation message: poll.
    if (status === 200) await sleep(1)
  }
  t.equal(status, 401, 'the invalidation, naming the key with both prefixes, dropped the entry')
})

test('updates, touches and rotation are seen through the cache', async (t) => {
  let clock = Date.now()
  const server = await startRedis(t)
  const app = await buildApp(t, { redis: await client(t, server), nearCache: true, touchInterval: '1m', now: () => clock })
  await nearCacheReady(app.sessions.store as RedisStore)
  const { token, sessionId } = await login(app, 'carol')
  const headers = { ...BROWSER, 'x-session-id': token }
  await app.inject({ url: '/orders', headers })
  t.equal(await app.sessions.update(sessionId, { metadata: { plan: 'pro' } }), true)
  // Here and below: the invalidation arrives from Redis over the network, not on a clock.
  await sleep(20)
  t.same((await app.inject({ url: '/orders', headers })).json().metadata, { plan: 'pro' }, 'the update is visible')
  clock += 61_000
  t.equal((await app.sessions.get(token))?.lastActivity.getTime(), clock, 'a due touch is written')
  await sleep(20)
  t.equal((await app.sessions.get(token, { touch: false }))?.lastActivity.getTime(), clock, 'and read back, not the cached record')
  const rotated = await app.sessions.rotate(token)
  await sleep(20)
  t.equal((await app.inject({ url: '/orders', headers })).statusCode, 401, 'the old token is dead at once')
  t.equal((await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': rotated?.token } })).statusCode, 200)
})

test('a lost invalidation connection empties the cache and nothing stale is served', async (t) => {
  const server = await startRedis(t)
  const redis = await client(t, server)
  const app = await buildApp(t, { redis, nearCache: true })
  const store = app.sessions.store as RedisStore
  await nearCacheReady(store)
  const { token, sessionId } = await login(app, 'dave')
  const headers = { ...BROWSER, 'x-session-id': token }
  await app.inject({ url: '/orders', headers })
  t.equal(store.nearCache?.size, 1)
  await redis.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  // The dropped connection is noticed over the network: poll.
  for (let n = 0; n < 100 && store.nearCache?.size !== 0; n++) await sleep(10)
  t.equal(store.nearCache?.size, 0, 'emptied when the listener dropped')
  // Revoked while the listener reconnects: whatever the timing, the next request must not be served from memory.
  await redis.del(`sess:{${sessionId.slice(0, 2)}}:s:${sessionId}`)
  t.equal((await app.inject({ url: '/orders', headers })).statusCode, 401)
  await nearCacheReady(store)
  const again = await login(app, 'dave')
  await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': again.token } })
  t.equal(store.nearCache?.size, 1, 'caching again once tracking is set up anew')
  await redis.flushall()
  // The flush's invalidation arrives over the network.
  await sleep(50)
  t.equal(store.nearCache?.size, 0, 'a flush empties it')
})

test('a set-up that Redis refuses on live connections is tried again: caching starts once it is allowed', async (t) => {
  const server = await startRedis(t)
  const admin = await client(t, server)
  await admin.acl('SETUSER', 'app', 'on', '>app-password', '~*', '&*', '+@all', '-client|tracking')
  const redis = new Redis(server.url, { username: 'app', password: 'app-password' })
  t.teardown(() => redis.quit())
  const lines: string[] = []
  const app = await buildApp(t, { redis, nearCache: true }, { logger: { level: 'warn', stream: { write: (line: string) => { lines.push(line) } } } })
  const store = app.sessions.store as RedisStore
  const { token } = await login(app, 'gus')
  const headers = { ...BROWSER, 'x-session-id': token }
  // The set-up runs over real connections and is refused there: give it time to try.
  await sleep(200)
  t.equal(store.nearCache?.ready, false, 'not caching while CLIENT TRACKING is refused')
  for (let n = 0; n < 3; n++) t.equal((await app.inject({ url: '/orders', headers })).statusCode, 200, 'requests are served from Redis')
  t.equal(app.sessions.cacheStats()?.hits, 0)
  const refusals = lines.filter((line) => line.includes('near cache is off, it could not set up Redis tracking'))
  t.equal(refusals.length, 1, 'the refusal is logged, once (at most one line a minute)')
  t.match(refusals[0], /"level":50.*NOPERM/, 'as an error, with Redis\'s reason')
  await admin.acl('SETUSER', 'app', '+client|tracking')
  // No connection drops or comes back: only the retry (every second) can turn caching on.
  for (let n = 0; n < 300 && store.nearCache?.ready !== true; n++) await sleep(10)
  t.equal(store.nearCache?.ready, true, 'caching starts once Redis allows the tracking')
  await app.inject({ url: '/orders', headers })
  await app.inject({ url: '/orders', headers })
  t.equal(app.sessions.cacheStats()?.hits, 1, 'and a repeat request is a hit')
})

test('the near cache is refused where it cannot work', async (t) => {
  const app = Fastify()
  app.register(sessionPlugin, { nearCache: true })
  await t.rejects(async () => { await app.ready() }, /option "nearCache" needs the `redis` option/)
  await app.close()
})

test('a change made on this instance is never answered from its own cache', async (t) => {
  const server = await startRedis(t)
  const redis = await client(t, server)
  const app = await buildApp(t, { redis, nearCache: true })
  await nearCacheReady(app.sessions.store as RedisStore)
  for (let round = 0; round < 20; round++) {
    const { token } = await login(app, `erin${round}`)
    const headers = { ...BROWSER, 'x-session-id': token }
    await app.inject({ url: '/orders', headers })
    t.equal((await app.inject({ method: 'POST', url: '/logout', headers })).statusCode, 200)
    // No wait for Redis's invalidation message: the logout itself dropped the record here.
    t.equal((await app.inject({ url: '/orders', headers })).statusCode, 401, `round ${round}: dead at once`)
  }
  const { token } = await login(app, 'frank')
  await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })
  const rotated = await app.sessions.rotate(token)
  t.equal((await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })).statusCode, 401, 'a rotated token at once')
  t.equal((await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': rotated?.token } })).statusCode, 200)
})

test('a near-cache hit is counted, parsed once, and hands each request its own metadata', async (t) => {
  const server = await startRedis(t)
  const redis = await client(t, server)
  const app = Fastify({ trustProxy: true })
  t.teardown(() => app.close())
  await app.register(sessionPlugin, { redis, nearCache: true, cleanup: false })
  addScribbleRoutes(app)
  await app.ready()
  await nearCacheReady(app.sessions.store as RedisStore)
  t.same(app.sessions.cacheStats(), { hits: 0, misses: 0, hitRatio: 0 }, 'nothing read yet')
  const { token } = (await app.inject({ method: 'POST', url: '/login', headers: BROWSER })).json() as { token: string }
  const headers = { ...BROWSER, 'x-session-id': token }
  for (let n = 0; n < 5; n++) {
    t.same((await app.inject({ url: '/scribble', headers })).json(), UNSCRIBBLED, `request ${n + 1} reads the stored metadata`)
  }
  const stats = app.sessions.cacheStats()
  t.same(stats, { hits: 4, misses: 1, hitRatio: 0.8 }, 'the first read went to Redis, the next four were hits')
})

test('without a near cache, cacheStats() is null', async (t) => {
  const server = await startRedis(t)
  const app = await buildApp(t, { redis: await client(t, server) })
  t.equal(app.sessions.cacheStats(), null)
  const memory = await buildApp(t, {})
  t.equal(memory.sessions.cacheStats(), null)
})
