import fastifyRedis from '@fastify/redis'
import Fastify from 'fastify'
import { Cluster as Cluster6, Redis as Redis6 } from 'ioredis'
import { Cluster as Cluster5, Redis as Redis5 } from 'ioredis5'
import { Cluster as ValkeyCluster, Redis as Valkey } from 'iovalkey'
import { test } from 'tap'
import sessionPlugin from '../lib/index'
import { isCluster, isRedisClient, type RedisClient } from '../lib/store/redis/client'
import { RedisStore } from '../lib/store/redis/store'
import { BROWSER, buildApp, login } from './helpers/app'
import { startRedis } from './helpers/redis'

// The `redis` option takes any ioredis-compatible client, recognised by shape: other copies of ioredis than the one
// this package depends on, iovalkey, and the client @fastify/redis decorates the app with.

const SEED = [{ host: '127.0.0.1', port: 1 }]

test('Cluster clients are told from standalone ones by shape, whichever package copy made them', async (t) => {
  const clients: Array<[string, RedisClient, RedisClient | null]> = [
    ['ioredis 6 Redis', new Redis6({ lazyConnect: true }), null],
    ['ioredis 5 Redis', new Redis5({ lazyConnect: true }), null],
    ['iovalkey Redis', new Valkey({ lazyConnect: true }), null],
    ['ioredis 6 Cluster', new Cluster6(SEED, { lazyConnect: true }), new Cluster6(SEED, { lazyConnect: true, scaleReads: 'slave' })],
    ['ioredis 5 Cluster', new Cluster5(SEED, { lazyConnect: true }), new Cluster5(SEED, { lazyConnect: true, scaleReads: 'all' })],
    ['iovalkey Cluster', new ValkeyCluster(SEED, { lazyConnect: true }), new ValkeyCluster(SEED, { lazyConnect: true, scaleReads: 'slave' })]
  ]
  t.teardown(() => { for (const [, client, replicaReader] of clients) { client.disconnect(); replicaReader?.disconnect() } })
  for (const [name, client, replicaReader] of clients) {
    const clustered = replicaReader !== null
    t.ok(isRedisClient(client), `${name} is accepted as a Redis client`)
    t.equal(isCluster(client), clustered, `${name} ${clustered ? 'is' : 'is not'} a Cluster`)
    if (clustered) {
      // The near cache reads a Cluster of any copy through its broadcast tracking, and refuses one that reads replicas.
      const store = new RedisStore({ client, nearCache: true })
      t.ok(store.nearCache !== null, `the ${name} gets a near cache`)
      await store.nearCache?.close()
      t.throws(() => new RedisStore({ client: replicaReader, nearCache: true }), { code: 'FST_SESSION_INVALID_OPTION', message: /scaleReads/ },
        `nearCache refuses the ${name} that reads replicas`)
    }
  }
  for (const value of [{}, { get () {}, defineCommand () {} }, 'not a client', null, 42]) {
    t.notOk(isRedisClient(value), `${JSON.stringify(value)} is not a Redis client`)
  }
})

test('an object that only looks partly like a Redis client is refused at registration with the option named', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  const halfClient = { get: async () => null, defineCommand () {} } as unknown as RedisClient
  app.register(sessionPlugin, { redis: halfClient })
  await t.rejects(async () => { await app.ready() }, { message: /option "redis"/ })
})

test('an iovalkey client stores sessions through the plugin', async (t) => {
  const server = await startRedis(t)
  const client = new Valkey(server.url)
  t.teardown(() => client.quit())
  const app = await buildApp(t, { redis: client, keyPrefix: 'valkey:' })
  const { token } = await login(app, 'alice')
  const orders = await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })
  t.equal(orders.statusCode, 200)
  t.equal(orders.json().userId, 'alice')
  t.ok((await client.keys('valkey:*')).length > 0, 'the session is in Redis, under the prefix')
})

test("@fastify/redis's app.redis stores sessions through the plugin", async (t) => {
  const server = await startRedis(t)
  const app = Fastify({ trustProxy: true })
  t.teardown(() => app.close())
  await app.register(fastifyRedis, { url: server.url })
  await app.register(sessionPlugin, { redis: app.redis, cleanup: false })
  app.post('/login', async (request, reply) => (await reply.startSession('bob', { metadata: { plan: 'free' } })).token)
  app.get('/me', { preHandler: app.requireSession }, async (request) => ({ userId: request.session?.userId }))
  await app.ready()
  const token = (await app.inject({ method: 'POST', url: '/login', headers: BROWSER })).body
  const me = await app.inject({ url: '/me', headers: { ...BROWSER, 'x-session-id': token } })
  t.equal(me.statusCode, 200)
  t.same(me.json(), { userId: 'bob' })
  t.ok((await app.redis.keys('sess:*')).length > 0, 'the session is in the Redis of @fastify/redis')
})
