import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import { Cluster, Redis } from 'ioredis'
import { Cluster as Cluster5 } from 'ioredis5'
import { Cluster as ValkeyCluster } from 'iovalkey'
import { test, type Test } from 'tap'
import sessionPlugin from '../lib/index'
import { sessionIdOfKey, sessionKey } from '../lib/store/redis/keys'
import { clusterNodes } from '../lib/store/redis/near-cache'
import type { RedisStore } from '../lib/store/redis/store'
import { buildApp, BROWSER, login } from './helpers/app'
import { startRedisCluster } from './helpers/redis'
import { commandCalls } from './helpers/redis-inspect'

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
  // Tracking is set up over real connections to every node (after a node died, once the cluster has failed it): poll.
  for (let n = 0; n < 1000 && store.nearCache?.ready !== true; n++) await sleep(10)
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

/** Where a session lives: its slot, the port of the master serving it and of that master's replica. */
async function placeOf (client: Cluster, sessionId: string): Promise<{ slot: number, port: number, replicaPort: number }> {
  const slot = await client.cluster('KEYSLOT', sessionKey('sess:', sessionId)) as number
  const port = await slotOwner(client, slot)
  const nodes = (await client.cluster('NODES') as string).trim().split('\n').map((line) => line.split(' '))
  const masterId = nodes.find((fields) => (fields[1] ?? '').startsWith(`127.0.0.1:${String(port)}@`))?.[0]
  const replicaPort = Number(nodes.find((fields) => fields[3] === masterId)?.[1]?.split(':')[1]?.split('@')[0])
  if (port === undefined || !(replicaPort > 0)) throw new Error(`no master and replica for slot ${slot}`)
  return { slot, port, replicaPort }
}

/** A cluster of its own, an instance with the near cache (ready) and one without, for a test that breaks a node. */
async function brokenNodeSetup (t: Test, storeTimeout: number): Promise<{ cluster: Awaited<ReturnType<typeof startRedisCluster>>, client: Cluster, cached: FastifyInstance, otherClient: Cluster, other: FastifyInstance }> {
  const cluster = await startRedisCluster(t)
  const client = clusterClient(t, cluster.startupNodes)
  const cached = await buildApp(t, { redis: client, nearCache: NEAR_CACHE, storeTimeout })
  await nearCacheReady(cached)
  const otherClient = clusterClient(t, cluster.startupNodes)
  const other = await buildApp(t, { redis: otherClient })
  return { cluster, client, cached, otherClient, other }
}

/** After a node broke: the cache gets ready again and caches a new session. */
async function cachesAgain (t: Test, cached: FastifyInstance, other: FastifyInstance, user: string): Promise<void> {
  await nearCacheReady(cached)
  const again = await login(other, user)
  t.ok(await servedFromCache(cached, again.token), 'caching again once every node is tracked')
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

test('CLUSTER NODES: the nodes to track, failed and handshaking ones left out, natMap applied', async (t) => {
  const text = [
    'a1 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460',
    'b2 10.0.0.2:7001@17001,node-b.example master - 0 0 2 connected 5461-10922',
    'c3 10.0.0.3:7002@17002 slave a1 0 0 1 connected',
    'd4 10.0.0.4:7003@17003 master,fail - 0 0 3 disconnected',
    'e5 10.0.0.5:7004@17004 handshake - 0 0 0 connected',
    'f6 :0@0 slave,noaddr a1 0 0 1 disconnected',
    'g7 ::1:7005@17005 slave,fail? b2 0 0 2 connected',
    ''
  ].join('\n')
  const { healthy, failed } = clusterNodes(text)
  t.same([...healthy.keys()], ['10.0.0.1:7000', '10.0.0.2:7001', '10.0.0.3:7002', '::1:7005'])
  t.same([...failed], ['10.0.0.4:7003'], 'the failed one, kept apart (not tracked even while the client routes to it)')
  const mapped = clusterNodes(text, { '10.0.0.1:7000': { host: 'public-a', port: 30000 } }).healthy
  t.same(mapped.get('public-a:30000'), { key: 'public-a:30000', host: 'public-a', port: 30000 }, 'a natMap object')
  const byFunction = clusterNodes(text, (key: string) => key === '10.0.0.3:7002' ? { host: 'public-c', port: 30002 } : null).healthy
  t.ok(byFunction.has('public-c:30002') && byFunction.has('10.0.0.1:7000'), 'a natMap function, unmapped nodes kept as listed')
  const byHostname = clusterNodes(text, undefined, new Set(['node-b.example'])).healthy
  t.ok(byHostname.has('node-b.example:7001') && !byHostname.has('10.0.0.2:7001') && byHostname.has('10.0.0.1:7000'),
    'hostname endpoints: a node that announces a hostname is named by it, as the client names it')
  const garbage = clusterNodes('garbage\n\n  \nx y z')
  t.same([garbage.healthy.size, garbage.failed.size], [0, 0], 'lines that name no address')
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

  await t.test('repeat requests send no GET to any node', async (t) => {
    const { token } = await login(other, 'alice')
    const headers = { ...BROWSER, 'x-session-id': token }
    t.ok(await servedFromCache(cached, token), 'cached after the first reads')
    const nodes = cluster.nodes.map((node) => new Redis({ host: node.host, port: node.port }))
    t.teardown(() => { for (const node of nodes) node.disconnect() })
    const gets = async (): Promise<number> => (await Promise.all(nodes.map(async (node) => await commandCalls(node, 'get')))).reduce((a, b) => a + b, 0)
    const before = await gets()
    for (let n = 0; n < 20; n++) t.equal((await cached.inject({ url: '/orders', headers })).statusCode, 200)
    t.equal(await gets() - before, 0, 'twenty requests, no GET')
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

  await t.test('the client\'s own connection to a master dropping (a -node, the master alive) empties the cache', async (t) => {
    const { token, sessionId } = await login(other, 'ivy')
    t.ok(await servedFromCache(cached, token), 'cached')
    const port = await slotOwner(client, await client.cluster('KEYSLOT', sessionKey('sess:', sessionId)) as number)
    const connection = client.nodes('master').find((node) => node.options.port === port)
    const localPort = (connection as unknown as { stream?: { localPort?: number } } | undefined)?.stream?.localPort
    if (connection === undefined || localPort === undefined) throw new Error(`no pool connection to ${String(port)}`)
    // Read in the event itself (the plugin's listener runs first): before the client can add the node back.
    const removed = new Promise<number | undefined>((resolve) => { client.once('-node', () => { resolve((cached.sessions.store as RedisStore).nearCache?.size) }) })
    const admin = new Redis({ host: '127.0.0.1', port })
    t.teardown(() => admin.disconnect())
    t.equal(await admin.client('KILL', 'ADDR', `127.0.0.1:${localPort}`), 1, 'the pool\'s connection is killed, the master lives on')
    t.equal(await removed, 0, 'emptied the moment the node leaves the pool')
    const revokedAt = performance.now()
    t.equal(await other.sessions.invalidate(sessionId), true)
    const delay = await refusedAfter(cached, token, revokedAt)
    t.ok(delay !== null && delay < 1000, `the revocation is refused (${delay?.toFixed(1) ?? 'not within 2 s'} ms)`)
  })

  await t.test('after a manual failover, a revocation through the new master reaches the cache', async (t) => {
    const { token, sessionId } = await login(other, 'erin')
    t.ok(await servedFromCache(cached, token), 'cached')
    // Its replica takes over; the old master stays up, as a replica.
    const { slot, replicaPort } = await placeOf(client, sessionId)
    const replica = new Redis({ host: '127.0.0.1', port: replicaPort })
    t.teardown(() => replica.disconnect())
    // A manual failover that has not finished in 5 s is abandoned by Redis, and on a loaded machine one can be (once in
    // six runs of the suite here, in a run beside a busy loop): ask again, as an operator would, for up to 20 s in all.
    const deadline = performance.now() + 20_000
    let owner = await slotOwner(client, slot)
    let attempts = 0
    while (owner !== replicaPort && performance.now() < deadline) {
      attempts++
      await replica.cluster('FAILOVER')
      const abandonedAt = performance.now() + 5_000
      // A real failover: poll.
      while ((owner = await slotOwner(client, slot)) !== replicaPort && performance.now() < abandonedAt) await sleep(25)
    }
    t.equal(owner, replicaPort, `the replica is the master now (${attempts} CLUSTER FAILOVER)`)
    // An instance that learned the new layout first: its write goes straight to the new master.
    const fresh = await buildApp(t, { redis: clusterClient(t, cluster.startupNodes) })
    const revokedAt = performance.now()
    t.equal(await fresh.sessions.invalidate(sessionId), true, 'revoked through the new master')
    const delay = await refusedAfter(cached, token, revokedAt)
    t.not(delay, null, `the cached instance refuses it (${delay?.toFixed(1) ?? 'never'} ms)`)
    await cachesAgain(t, cached, other, 'erin')
  })
})

test('the near cache on Redis Cluster: the SIGKILL of a master empties it, and nothing stale is served after the failover', async (t) => {
  const { cluster, client, cached, otherClient, other } = await brokenNodeSetup(t, 1000)
  const { token, sessionId } = await login(other, 'frank')
  const headers = { ...BROWSER, 'x-session-id': token }
  t.ok(await servedFromCache(cached, token), 'cached')
  const store = cached.sessions.store as RedisStore
  const { slot, port } = await placeOf(client, sessionId)
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
  for (let n = 0; n < 800 && owner === port; n++) {
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
  await cachesAgain(t, cached, other, 'frank')

  // A replica dies: no event of the client's pool (it lists no replica), only the cluster's word that it failed.
  const another = await login(other, 'frank-again')
  const { replicaPort } = await placeOf(otherClient, another.sessionId)
  const replica = cluster.nodes.find((node) => node.port === replicaPort)
  if (replica === undefined) throw new Error('no replica')
  replica.kill('SIGKILL')
  for (let n = 0; n < 200 && store.nearCache?.ready !== false; n++) await sleep(10) // its connections drop: poll
  t.equal(store.nearCache?.ready, false, 'caching stops when a replica\'s connections drop')
  await cachesAgain(t, cached, other, 'frank-later')
})

test('the near cache on Redis Cluster: a frozen master fails over to its replica, tracked before it was promoted', async (t) => {
  const { cluster, client, cached, other } = await brokenNodeSetup(t, 300)
  const { token, sessionId } = await login(other, 'jack')
  t.ok(await servedFromCache(cached, token), 'cached')
  const { slot, port, replicaPort } = await placeOf(client, sessionId)
  const master = cluster.nodes.find((node) => node.port === port)
  if (master === undefined) throw new Error(`no master for slot ${slot}`)
  t.comment(`the client's pool ${client.nodes('all').some((node) => node.options.port === replicaPort) ? 'lists' : 'does not list'} the replica`)
  const connection = client.nodes('master').find((node) => node.options.port === port)
  t.equal(await connection?.wait(1, 5000), 1, 'the session is on the replica before its master freezes')
  // Frozen, not dead: no connection to it closes, so no event says anything changed.
  master.kill('SIGSTOP')
  const replica = new Redis({ host: '127.0.0.1', port: replicaPort })
  t.teardown(() => replica.disconnect())
  let role = ''
  // An election that misses votes is retried by Redis after 4 s here (four times cluster-node-timeout): 20 s covers a few.
  for (let n = 0; n < 800 && role !== 'master'; n++) {
    role = String((await replica.role())[0])
    if (role !== 'master') await sleep(25) // the cluster's failover runs on real time: poll
  }
  t.equal(role, 'master', 'the replica took over')
  // Every node still answering must know it before a new client reads the slot map from one of them (a node that
  // had not heard yet would send it to the frozen master).
  const live = cluster.nodes.filter((node) => node.port !== port).map((node) => new Redis({ host: '127.0.0.1', port: node.port }))
  t.teardown(() => { for (const connection of live) connection.disconnect() })
  const owners = async (): Promise<Array<number | undefined>> => await Promise.all(live.map(async (connection) =>
    (await connection.cluster('SLOTS')).find(([first, last]) => slot >= first && slot <= last)?.[2]?.[1]))
  for (let n = 0; n < 800 && !(await owners()).every((owner) => owner === replicaPort); n++) await sleep(25) // gossip: poll
  t.same(new Set(await owners()), new Set([replicaPort]), 'every live node sees the new master')
  // An instance that only knows the nodes still answering: its write goes to the new master.
  const fresh = await buildApp(t, { redis: clusterClient(t, cluster.startupNodes.filter((node) => node.port !== port)) })
  const revokedAt = performance.now()
  t.equal(await fresh.sessions.invalidate(sessionId), true, 'revoked through the new master')
  let status = 200
  while (status === 200 && performance.now() - revokedAt < 2000) {
    status = (await cached.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })).statusCode
    // The new master's report arrives over the network: poll.
    if (status === 200) await sleep(1)
  }
  const delay = performance.now() - revokedAt
  t.not(status, 200, `no longer served ${delay.toFixed(1)} ms after the revocation (answered ${status})`)
  t.ok(delay < 1000, 'within a second, not at maxAge')
  // The frozen node answers nothing: once the cluster has failed it, caching goes on without it. (Reads of its old
  // slots still go to it until this instance's client learns the new slot map: that is the client's routing.)
  await nearCacheReady(cached)
  t.equal((cached.sessions.store as RedisStore).nearCache?.ready, true, 'caching is on again without the frozen node')
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
