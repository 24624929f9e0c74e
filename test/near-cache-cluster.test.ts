import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import { Cluster, Redis } from 'ioredis'
import { Cluster as Cluster5 } from 'ioredis5'
import { Cluster as ValkeyCluster } from 'iovalkey'
import { test, type Test } from 'tap'
import sessionPlugin from '../lib/index'
import { sessionIdOfKey, sessionKey } from '../lib/store/redis/keys'
import type { RedisStore } from '../lib/store/redis/store'
import { buildApp, BROWSER, login } from './helpers/app'
import { startRedisCluster } from './helpers/redis'
import { commandsProcessed } from './helpers/redis-inspect'

// Entries never age out within a test: whatever drops one is an invalidation or a reset, never maxAge.
const NEAR_CACHE = { maxAge: '1h' }

function clusterClient (t: Test, startupNodes: Array<{ host: string, port: number }>, options: ConstructorParameters<typeof Cluster>[1] = {}): Cluster {
  const client = new Cluster(startupNodes, options)
  client.on('error', () => {})
  // disconnect, not quit: after a SIGKILL quit would wait for the dead node.
  t.teardown(() => client.disconnect())
  return client
}

async function nearCacheReady (app: FastifyInstance): Promise<void> {
  const store = app.sessions.store as RedisStore
  // Tracking is set up over real connections to every node: poll.
  for (let n = 0; n < 500 && store.nearCache?.ready !== true; n++) await sleep(10)
  if (store.nearCache?.ready !== true) throw new Error('the near cache did not get ready')
}

/** Milliseconds until `app` refuses `token` (polling), or null when it still serves it after `boundMs`. */
async function refusedAfter (app: FastifyInstance, token: string, since: number, boundMs = 2000): Promise<number | null> {
  for (;;) {
    const status = (await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })).statusCode
    if (status === 401) return performance.now() - since
    if (performance.now() - since > boundMs) return null
    // Waits for a real invalidation message from a node: poll.
    await sleep(1)
  }
}

/**
 * Requests with `token` until one is answered from the cache. A read is not cached when an invalidation of its key
 * arrives while it is in flight, and the broadcast of a write that just completed (the login) can arrive then.
 */
async function servedFromCache (app: FastifyInstance, token: string): Promise<boolean> {
  for (let n = 0; n < 50; n++) {
    const hits = app.sessions.cacheStats()?.hits ?? 0
    const status = (await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })).statusCode
    if (status === 200 && app.sessions.cacheStats()?.hits === hits + 1) return true
    // The login's own invalidation arrives over the network: poll.
    await sleep(1)
  }
  return false
}

/** The master port serving `slot`, as the cluster sees it now. */
async function slotOwner (client: Cluster, slot: number): Promise<number | undefined> {
  const ranges = await client.cluster('SLOTS')
  return ranges.find(([first, last]) => slot >= first && slot <= last)?.[2]?.[1]
}

test('session key names, hostile ones included, map to a session id or to nothing', async (t) => {
  const id = 'AbCdEfGhIjKlMnOpQrStUvWx'
  t.equal(sessionIdOfKey(sessionKey('sess:', id)), id)
  t.equal(sessionIdOfKey(`app1:${sessionKey('tenant:', id)}`), id, 'with an ioredis keyPrefix in front')
  for (const other of ['sess:{Ab}:x', 'sess:{Ab}:x7', `sess:{Ab}:a2:u:${id}`, `sess:{Ab}:s:${id}x`, '', '}:s:', `}:s:${id.slice(1)}`]) {
    t.equal(sessionIdOfKey(other), null, JSON.stringify(other))
  }
})

test('the near cache on Redis Cluster', async (t) => {
  const cluster = await startRedisCluster(t)
  const client = clusterClient(t, cluster.startupNodes)
  const lines: string[] = []
  const cached = await buildApp(t, { redis: client, nearCache: NEAR_CACHE }, { logger: { level: 'warn', stream: { write: (line: string) => { lines.push(line) } } } })
  const other = await buildApp(t, { redis: clusterClient(t, cluster.startupNodes) })
  await nearCacheReady(cached)
  // The client's pool changes at start (the seed nodes, then the slot map's): nothing to report.
  t.same(lines, [], 'a normal start logs nothing')

  await t.test('repeat requests cost no command on any node', async (t) => {
    const { token } = await login(other, 'alice')
    const headers = { ...BROWSER, 'x-session-id': token }
    t.ok(await servedFromCache(cached, token), 'cached after the first reads')
    const nodes = cluster.nodes.map((node) => new Redis({ host: node.host, port: node.port }))
    t.teardown(() => { for (const node of nodes) node.disconnect() })
    const before = await Promise.all(nodes.map(commandsProcessed))
    for (let n = 0; n < 20; n++) t.equal((await cached.inject({ url: '/orders', headers })).statusCode, 200)
    const after = await Promise.all(nodes.map(commandsProcessed))
    t.same(after.map((count, k) => count - (before[k] as number)), nodes.map(() => 1), 'twenty requests, no command but each node\'s INFO')
    t.ok((cached.sessions.cacheStats()?.hits ?? 0) >= 20, 'counted as hits')
  })

  await t.test('a revocation on another instance reaches the cache within milliseconds, on every master', async (t) => {
    const delays: number[] = []
    const masters = new Set<number>()
    for (let round = 0; round < 9; round++) {
      const { token, sessionId } = await login(other, `bob${round}`)
      masters.add(await slotOwner(client, await client.cluster('KEYSLOT', sessionKey('sess:', sessionId)) as number) ?? 0)
      t.ok(await servedFromCache(cached, token), 'served from the cache')
      const revokedAt = performance.now()
      t.equal(await other.sessions.invalidate(sessionId), true, 'revoked on the other instance')
      const delay = await refusedAfter(cached, token, revokedAt)
      t.not(delay, null, 'the cached instance refuses the revoked token')
      delays.push(delay ?? Infinity)
    }
    t.ok(masters.size > 1, `sessions on ${masters.size} masters`)
    t.ok(Math.max(...delays) < 1000, `revocation delays ${delays.map((d) => d.toFixed(1)).join(', ')} ms`)
  })

  await t.test('updates on another instance are seen; writes of other keys under the prefix leave entries alone', async (t) => {
    const { token, sessionId } = await login(other, 'carol')
    const headers = { ...BROWSER, 'x-session-id': token }
    t.ok(await servedFromCache(cached, token), 'cached')
    const size = (cached.sessions.store as RedisStore).nearCache?.size ?? 0
    // Another user's login writes its session, its user index and audit keys under the same prefix.
    await login(other, 'carol-neighbour')
    await sleep(50)
    t.equal((cached.sessions.store as RedisStore).nearCache?.size, size, 'no entry dropped by other keys\' changes')
    t.equal(await other.sessions.update(sessionId, { metadata: { plan: 'pro' } }), true)
    let metadata: unknown = null
    const since = performance.now()
    while (performance.now() - since < 2000) {
      metadata = (await cached.inject({ url: '/orders', headers })).json().metadata
      if ((metadata as { plan?: string }).plan === 'pro') break
      // The update's invalidation arrives over the network: poll.
      await sleep(1)
    }
    t.same(metadata, { plan: 'pro' }, 'the update is visible')
  })

  await t.test('with an ioredis keyPrefix and a store prefix, revocations still arrive', async (t) => {
    const prefixed = { keyPrefix: 'app1:' }
    const cachedPrefixed = await buildApp(t, { redis: clusterClient(t, cluster.startupNodes, prefixed), keyPrefix: 'tenant:', nearCache: NEAR_CACHE })
    const otherPrefixed = await buildApp(t, { redis: clusterClient(t, cluster.startupNodes, prefixed), keyPrefix: 'tenant:' })
    await nearCacheReady(cachedPrefixed)
    const { token, sessionId } = await login(otherPrefixed, 'dave')
    t.ok(await servedFromCache(cachedPrefixed, token), 'cached')
    // The same session id under the unprefixed layout is not this store's key: its change must not matter, and the
    // broadcast for 'app1:tenant:' never reports it.
    await client.set(sessionKey('sess:', sessionId), 'x')
    await sleep(50)
    t.equal((cachedPrefixed.sessions.store as RedisStore).nearCache?.size, 1, 'a key outside the prefix is not reported')
    await client.del(sessionKey('sess:', sessionId))
    const revokedAt = performance.now()
    t.equal(await otherPrefixed.sessions.invalidate(sessionId), true)
    t.not(await refusedAfter(cachedPrefixed, token, revokedAt), null, 'the revocation, naming the key with both prefixes, dropped the entry')
  })

  await t.test('ioredis 5 and iovalkey Cluster clients get the same near cache', async (t) => {
    for (const [name, make] of [['ioredis 5', () => new Cluster5(cluster.startupNodes)], ['iovalkey', () => new ValkeyCluster(cluster.startupNodes)]] as const) {
      const copy = make()
      copy.on('error', () => {})
      t.teardown(() => copy.disconnect())
      const app = await buildApp(t, { redis: copy, nearCache: NEAR_CACHE })
      await nearCacheReady(app)
      const { token, sessionId } = await login(other, `gina-${name}`)
      t.ok(await servedFromCache(app, token), `${name}: served from the cache`)
      const revokedAt = performance.now()
      t.equal(await other.sessions.invalidate(sessionId), true)
      t.not(await refusedAfter(app, token, revokedAt), null, `${name}: the revocation reaches the cache`)
    }
  })

  await t.test('after a manual failover, a revocation through the new master reaches the cache', async (t) => {
    const { token, sessionId } = await login(other, 'erin')
    t.ok(await servedFromCache(cached, token), 'cached')
    const slot = await client.cluster('KEYSLOT', sessionKey('sess:', sessionId)) as number
    const port = await slotOwner(client, slot)
    const master = cluster.nodes.find((node) => node.port === port)
    if (master === undefined) throw new Error(`no master for slot ${slot}`)
    // Its replica takes over; the old master stays up, as a replica.
    const nodes = (await client.cluster('NODES') as string).trim().split('\n').map((line) => line.split(' '))
    const masterId = nodes.find((fields) => (fields[1] ?? '').startsWith(`127.0.0.1:${port}@`))?.[0]
    const replicaAddress = nodes.find((fields) => fields[3] === masterId)?.[1]
    if (replicaAddress === undefined) throw new Error('no replica found')
    const replicaPort = Number(replicaAddress.split(':')[1]?.split('@')[0])
    const replica = new Redis({ host: '127.0.0.1', port: replicaPort })
    t.teardown(() => replica.disconnect())
    await replica.cluster('FAILOVER')
    for (let n = 0; n < 200 && await slotOwner(client, slot) !== replicaPort; n++) await sleep(25) // a real failover: poll
    t.equal(await slotOwner(client, slot), replicaPort, 'the replica is the master now')
    // An instance that learned the new layout first: its write goes straight to the new master.
    const fresh = await buildApp(t, { redis: clusterClient(t, cluster.startupNodes) })
    const revokedAt = performance.now()
    t.equal(await fresh.sessions.invalidate(sessionId), true, 'revoked through the new master')
    const delay = await refusedAfter(cached, token, revokedAt)
    t.not(delay, null, `the cached instance refuses it (${delay?.toFixed(1) ?? 'never'} ms)`)
    await nearCacheReady(cached)
    const again = await login(other, 'erin')
    t.ok(await servedFromCache(cached, again.token), 'and caches again')
  })
})

test('the near cache on Redis Cluster: the SIGKILL of a master empties it, and nothing stale is served after the failover', async (t) => {
  const cluster = await startRedisCluster(t)
  const client = clusterClient(t, cluster.startupNodes)
  await client.ping()
  const cached = await buildApp(t, { redis: client, nearCache: NEAR_CACHE, storeTimeout: 1000 })
  await nearCacheReady(cached)
  const otherClient = clusterClient(t, cluster.startupNodes)
  const other = await buildApp(t, { redis: otherClient })
  const { token, sessionId } = await login(other, 'frank')
  const headers = { ...BROWSER, 'x-session-id': token }
  t.ok(await servedFromCache(cached, token), 'cached')
  const store = cached.sessions.store as RedisStore
  const slot = await client.cluster('KEYSLOT', sessionKey('sess:', sessionId)) as number
  const port = await slotOwner(client, slot)
  const master = cluster.nodes.find((node) => node.port === port)
  const connection = client.nodes('master').find((node) => node.options.port === port)
  if (master === undefined || connection === undefined) throw new Error(`no master for slot ${slot}`)
  t.equal(await connection.wait(1, 5000), 1, 'the session is on the replica before its master dies')
  master.kill('SIGKILL')
  // The dropped connections are noticed over the network: poll.
  for (let n = 0; n < 200 && store.nearCache?.size !== 0; n++) await sleep(10)
  t.equal(store.nearCache?.size, 0, 'the cache is emptied when a node\'s connections drop')
  // After the failover (cluster-node-timeout 1 s), a revocation through the new master.
  let owner = port
  for (let n = 0; n < 600 && owner === port; n++) {
    owner = await slotOwner(otherClient, slot).catch(() => port) ?? port
    await sleep(25) // a real failover: poll
  }
  t.not(owner, port, 'the replica was promoted')
  let revoked = false
  for (let n = 0; n < 200 && !revoked; n++) {
    revoked = await other.sessions.invalidate(sessionId).catch(() => false)
    if (!revoked) await sleep(25) // the other instance's client finds the new master: poll
  }
  t.ok(revoked, 'revoked through the new master')
  const answers: number[] = []
  for (let n = 0; n < 200; n++) {
    const status = (await cached.inject({ url: '/orders', headers })).statusCode
    answers.push(status)
    if (status === 401) break
    await sleep(25) // the cached instance's client finds the new master: poll
  }
  t.equal(answers.at(-1), 401, 'the revoked session is refused')
  t.ok(answers.every((status) => status === 401 || status === 503), `never served after its revocation (${[...new Set(answers)].join(', ')})`)
  await nearCacheReady(cached)
  const again = await login(other, 'frank')
  t.ok(await servedFromCache(cached, again.token), 'caching again once every known node is tracked')
})

test('the near cache is refused on a Cluster client that reads from replicas', async (t) => {
  for (const scaleReads of ['slave', 'all'] as const) {
    const cluster = new Cluster([{ host: '127.0.0.1', port: 1 }], { lazyConnect: true, scaleReads })
    const app = Fastify()
    app.register(sessionPlugin, { redis: cluster, nearCache: true })
    await t.rejects(async () => { await app.ready() }, { code: 'FST_SESSION_INVALID_OPTION', message: new RegExp(`scaleReads: 'master'.*'${scaleReads}'`) })
    await app.close()
    cluster.disconnect()
  }
})
