import { test } from 'tap'
import Fastify from 'fastify'
import { Cluster, Redis } from 'ioredis'
import { SessionManager } from '../lib/core/manager'
import { parseToken } from '../lib/core/token'
import { keySlot } from '../lib/store/redis/keys'
import { RedisStore } from '../lib/store/redis/store'
import { MemoryStore } from '../lib/store/memory/store'
import { sessionPlugin } from '../lib'
import { startRedis, startRedisCluster } from './helpers/redis'

// The store sends the commands of one event-loop turn to a node in one socket write (lib/store/redis/write-batch.ts).

interface Socket {
  writableCorked: number
  _write: (...args: unknown[]) => unknown
  _writev?: (...args: unknown[]) => unknown
}

/** Counts the socket writes (`_write`, `_writev`) a connection makes from now on: what reaches the kernel. */
function countWrites (connection: Redis): () => number {
  const socket = (connection as unknown as { stream: Socket }).stream
  let writes = 0
  const write = socket._write
  const writev = socket._writev
  socket._write = function (...args: unknown[]) { writes++; return write.apply(this, args) }
  if (writev !== undefined) socket._writev = function (...args: unknown[]) { writes++; return writev.apply(this, args) }
  return () => writes
}

/** Redis's own count of the reads it made from its clients (INFO stats), less the read of this INFO. */
async function readsProcessed (probe: Redis): Promise<number> {
  const stats = await probe.info('stats')
  return Number(/total_reads_processed:(\d+)/.exec(stats)?.[1]) - 1
}

async function sessionsOf (manager: SessionManager, count: number): Promise<string[]> {
  const tokens: string[] = []
  for (let n = 0; n < count; n++) tokens.push((await manager.create(`user-${n}`, { ipAddress: '10.0.0.1', userAgent: 'test' })).token)
  return tokens
}

test('keySlot is the slot Redis Cluster computes (CLUSTER KEYSLOT)', async (t) => {
  const server = await startRedis(t, { args: ['--cluster-enabled', 'yes'] })
  const probe = new Redis(server.url)
  t.teardown(() => probe.quit())
  const keys = ['', 'a', 'sess:{u4}:s:u4WOrEGStHNCjHH2MjDdv9c0', 'sess:{u4}:x', '{}', 'a{}b', 'a{}{b}', '{a', 'a}b{', '{{a}}',
    'app{tenant}:sess:{u4}:x', 'clé{é}', '日本{語}', '{😀}', 'x'.repeat(300)]
  for (let n = 0; n < 200; n++) keys.push(`k${n}:{${String.fromCharCode(33 + (n * 7) % 90)}${n}}`)
  for (const key of keys) {
    t.equal(keySlot(key), Number(await probe.cluster('KEYSLOT', key)), JSON.stringify(key))
  }
})

test('standalone: the session reads of one turn leave in one write after the first, and reach Redis together', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  const probe = new Redis(server.url)
  t.teardown(() => Promise.all([client.quit(), probe.quit()]))
  const manager = new SessionManager({ store: new RedisStore({ client }) })
  const tokens = await sessionsOf(manager, 64)

  const writes = countWrites(client)
  const readsBefore = await readsProcessed(probe)
  // One turn: 64 requests read their sessions. The first finds the connection idle and goes out at once; the other
  // 63 find it awaiting an answer and are held until the end of the turn.
  const loads = tokens.map((token) => manager.resolve(token, false))
  const socket = (client as unknown as { stream: Socket }).stream
  t.equal(socket.writableCorked, 1, 'the socket is held while the turn runs')
  const loaded = await Promise.all(loads)
  t.equal(writes(), 2, '64 GETs, two socket writes: the first alone, then the other 63')
  t.ok(await readsProcessed(probe) - readsBefore <= 3, 'and Redis read them together')
  t.same(loaded.map((l) => l?.session?.userId), tokens.map((_, n) => `user-${n}`), 'each request got its own session')
  t.equal(socket.writableCorked, 0, 'the socket is released at the end of the turn')

  // A lone request on an idle connection: sent at once, nothing held, nothing scheduled.
  const lone = countWrites(client)
  const alone = manager.resolve(tokens[3] as string, false)
  t.equal(socket.writableCorked, 0, 'an idle connection is not held')
  t.equal((await alone)?.session?.userId, 'user-3')
  t.equal(lone(), 1)
})

test('batchWrites: false sends each command as it comes; anything but a boolean is refused', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const manager = new SessionManager({ store: new RedisStore({ client, batchWrites: false }) })
  const tokens = await sessionsOf(manager, 16)
  const writes = countWrites(client)
  const loads = tokens.map((token) => manager.resolve(token, false))
  t.equal((client as unknown as { stream: Socket }).stream.writableCorked, 0, 'nothing is held')
  t.same((await Promise.all(loads)).map((l) => l?.session?.userId), tokens.map((_, n) => `user-${n}`))
  t.ok(writes() > 1, `16 GETs in ${writes()} socket writes`)
  const circular: Record<string, unknown> = {}
  circular.self = circular
  for (const batchWrites of ['yes', 1, null, 10n, circular]) {
    t.throws(() => new RedisStore({ client, batchWrites: batchWrites as unknown as boolean }),
      { code: 'FST_SESSION_INVALID_OPTION', message: /"batchWrites": expected true or false/ }, String(batchWrites))
  }
})

test('the plugin option batchWrites reaches the store it builds; it needs redis and no store of its own', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  for (const batchWrites of [undefined, true, false]) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(sessionPlugin, { redis: client, cleanup: false, ...(batchWrites === undefined ? {} : { batchWrites }) })
    await app.ready()
    const tokens = await sessionsOf(app.sessions, 16)
    const writes = countWrites(client)
    const loads = tokens.map((token) => app.sessions.resolve(token, false))
    t.same((await Promise.all(loads)).map((l) => l?.session?.userId), tokens.map((_, n) => `user-${n}`))
    if (batchWrites === false) t.ok(writes() > 2, `batchWrites false: 16 GETs in ${writes()} socket writes`)
    else t.equal(writes(), 2, `batchWrites ${String(batchWrites)}: 16 GETs in 2 socket writes`)
  }
  const refusals: Array<[Record<string, unknown>, RegExp]> = [
    [{ batchWrites: 'no', redis: client }, /"batchWrites" must be true or false, got "no"/],
    [{ batchWrites: true }, /"batchWrites" needs the `redis` option: set `redis` or remove `batchWrites`/],
    [{ batchWrites: true, redis: client, store: new MemoryStore() }, /"batchWrites" applies to the store the plugin builds from `redis`, not to a custom `store`: remove `batchWrites`/],
    [{ batchWrites: false, store: new MemoryStore() }, /"batchWrites" applies to the store the plugin builds/]
  ]
  for (const [options, message] of refusals) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(sessionPlugin, options) }, { code: 'FST_SESSION_INVALID_OPTION', message }, JSON.stringify(Object.keys(options)))
  }
  // Like nearCache: false, batchWrites: false asks for nothing, so it is accepted without Redis (the memory store).
  const memory = Fastify({ logger: false })
  t.teardown(() => memory.close())
  await memory.register(sessionPlugin, { batchWrites: false, cleanup: false })
  await memory.ready()
  t.equal((await memory.sessions.create('user-0', { ipAddress: '10.0.0.1', userAgent: 'test' })).session.userId, 'user-0')
})

test('a faked setImmediate (test tools that fake timers) cannot keep a connection held', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const manager = new SessionManager({ store: new RedisStore({ client }) })
  const tokens = await sessionsOf(manager, 8)
  const real = globalThis.setImmediate
  // What Vitest's or Sinon's fake timers do: the global is replaced, and its callbacks run only when the test says so.
  globalThis.setImmediate = (() => ({})) as unknown as typeof setImmediate
  let outcome: unknown
  try {
    outcome = await Promise.race([
      Promise.all(tokens.map((token) => manager.resolve(token, false))),
      new Promise((resolve) => setTimeout(resolve, 2000, 'held'))
    ])
  } finally {
    globalThis.setImmediate = real
  }
  t.not(outcome, 'held', 'the reads of a held turn are answered')
  t.same((outcome as Array<{ session: { userId: string } | null } | null>).map((l) => l?.session?.userId), tokens.map((_, n) => `user-${n}`))
  t.equal(await client.ping(), 'PONG', 'and the connection is not left held')
})

test('standalone: the app\'s own commands on the same client keep their order in a held turn', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const store = new RedisStore({ client })
  const manager = new SessionManager({ store })
  const [token] = await sessionsOf(manager, 1)
  const sessionId = parseToken(token)?.sessionId as string
  const results = await Promise.all([
    client.set('app:counter', '1'),
    manager.resolve(token as string, false),
    client.incr('app:counter'),
    client.get('app:counter'),
    manager.invalidate(sessionId, { reason: 'test' }),
    manager.resolve(token as string, false)
  ])
  t.equal(results[0], 'OK')
  t.equal((results[1] as Awaited<ReturnType<SessionManager['resolve']>>)?.session?.id, sessionId)
  t.equal(results[2], 2)
  t.equal(results[3], '2', 'a read after a write of the same turn sees it')
  t.equal(results[4], true)
  t.equal((results[5] as { session: unknown } | null)?.session ?? null, null, 'a read after a revocation of the same turn sees it')
})

test('standalone: a connection dropped while its writes are held: held commands are sent or resent as unheld ones are', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url, { maxRetriesPerRequest: 1 })
  t.teardown(() => client.disconnect())
  const manager = new SessionManager({ store: new RedisStore({ client }) })
  const [token] = await sessionsOf(manager, 1)

  // The connection goes away in the same turn, before the held write leaves, and ioredis reconnects: it sends the
  // unanswered command again on the new connection (autoResendUnfulfilledCommands).
  const resent = manager.resolve(token as string, false)
  client.disconnect(true)
  t.equal((await resent)?.session?.userId, 'user-0', 'the held read is answered on the new connection')
  t.equal((client as unknown as { stream: Socket }).stream.writableCorked, 0, 'the new socket is not left held')
  t.equal((await manager.resolve(token as string, false))?.session?.userId, 'user-0', 'and serves the next turn')

  // Closed for good in the same turn: closing the socket sends what it held first (as an unheld write was already
  // sent), so the read is answered before the connection ends, as without batching; a later one fails.
  const held = manager.resolve(token as string, false)
  client.disconnect()
  t.equal((await held)?.session?.userId, 'user-0', 'the held read was sent before the close')
  await t.rejects(manager.resolve(token as string, false), /Connection is closed/, 'a read after the close fails at once')
})

test('Cluster: the reads of one turn leave in one write per master, after the first', async (t) => {
  const cluster = await startRedisCluster(t)
  const client = new Cluster(cluster.startupNodes, { keyPrefix: 'app:' })
  t.teardown(() => client.quit())
  await client.ping()
  const manager = new SessionManager({ store: new RedisStore({ client }) })
  const tokens = await sessionsOf(manager, 60)
  const masters = client.nodes('master')
  t.equal(masters.length, 3)
  const counters = masters.map((node) => countWrites(node))
  const loaded = await Promise.all(tokens.map((token) => manager.resolve(token, false)))
  t.same(loaded.map((l) => l?.session?.userId), tokens.map((_, n) => `user-${n}`), 'each request got its own session')
  // 60 sessions over 3 masters: on each, the first read goes out at once (idle connection), the rest in one write.
  t.same(counters.map((writes) => writes()), [2, 2, 2], 'two writes per master')

  // A socket whose uncork throws (broken) must not crash the process or keep the other masters' writes held.
  const broken = (masters[0] as unknown as { stream: { uncork: () => void } }).stream
  const uncork = broken.uncork
  broken.uncork = function (this: unknown) {
    uncork.call(this)
    broken.uncork = uncork
    throw new Error('a broken socket')
  }
  const again = await Promise.all(tokens.map((token) => manager.resolve(token, false)))
  t.same(again.map((l) => l?.session?.userId), tokens.map((_, n) => `user-${n}`), 'every read answered, on every master')
  t.equal(broken.uncork, uncork, 'the throwing uncork ran')
})
