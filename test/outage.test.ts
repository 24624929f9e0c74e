import { setTimeout as sleep } from 'node:timers/promises'
import v8 from 'node:v8'
import vm from 'node:vm'
import { test, type Test } from 'tap'
import { Redis } from 'ioredis'
import Fastify, { type FastifyInstance, type InjectOptions, type LightMyRequestResponse } from 'fastify'
import { sessionPlugin } from '../lib/plugin/plugin'
import { SessionManager } from '../lib/core/manager'
import { MemoryStore } from '../lib/store/memory/store'
import { RedisStore } from '../lib/store/redis/store'
import { buildApp, BROWSER, login } from './helpers/app'
import { sendCommand, startRedis, type RedisServer } from './helpers/redis'
import { scanKeys } from './helpers/redis-inspect'
import { startProcess } from './helpers/sentinel'

const STORE_TIMEOUT_MS = 500
// The bound every answer is held to while Redis is down or frozen: the timeout plus a generous margin.
const ANSWER_BOUND_MS = STORE_TIMEOUT_MS + 1000
const REQUESTS_WHILE_DOWN = 2000
const CHUNK = 250
const HEAP_GROWTH_BOUND = 32 * 1024 * 1024

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

function heapUsedAfterGc (): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

/**
 * The plugin's client, made to fail fast while Redis is unreachable: a command waits for at most one reconnect
 * attempt (maxRetriesPerRequest: 1, as the plugin's own URL client), reconnect attempts every 100 ms instead of
 * ioredis's growing delay up to 2 s (so a restarted Redis is found at once), and a connect attempt gives up
 * after 500 ms.
 */
function failFastClient (t: Test, server: RedisServer): Redis {
  const client = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100, connectTimeout: 500 })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  return client
}

/** No unhandled rejection anywhere in the process while the test runs. */
function watchRejections (t: Test): unknown[] {
  const seen: unknown[] = []
  const listener = (reason: unknown) => { seen.push(reason) }
  process.on('unhandledRejection', listener)
  t.teardown(() => { process.off('unhandledRejection', listener) })
  return seen
}

/**
 * A redis-server of the test's own that the test may freeze (SIGSTOP; thawed at teardown whatever happens), its
 * fail-fast client, and the unhandled rejections seen while the test runs.
 */
async function freezableRedis (t: Test): Promise<{ rejections: unknown[], server: RedisServer, client: Redis }> {
  const rejections = watchRejections(t)
  const server = await startRedis(t)
  t.teardown(() => server.kill('SIGCONT'))
  return { rejections, server, client: failFastClient(t, server) }
}

/** Thaws a frozen server and waits until the client has reconnected and the commands it held have reached Redis. */
async function thaw (server: RedisServer, client: Redis): Promise<void> {
  server.kill('SIGCONT')
  await sendCommand(server.port, ['PING'])
  while (client.status !== 'ready') await sleep(20)
  await sleep(300)
}

/** What a burst of requests got, without keeping the responses (the heap is measured across bursts). */
interface Tally {
  /** `<status> <code or body>` -> count */
  answers: Map<string, number>
  minMs: number
  maxMs: number
}

function describe (response: LightMyRequestResponse): string {
  return `${response.statusCode} ${response.json().code ?? JSON.stringify(response.json())}`
}

/** Sends `count` requests, CHUNK at a time, and tallies their status and error code (or body). */
async function burst (app: FastifyInstance, count: number, make: (n: number) => InjectOptions): Promise<Tally> {
  const tally: Tally = { answers: new Map(), minMs: Infinity, maxMs: 0 }
  for (let first = 0; first < count; first += CHUNK) {
    await Promise.all(Array.from({ length: Math.min(CHUNK, count - first) }, async (_, k) => {
      const startedAt = Date.now()
      const response = await app.inject(make(first + k))
      const ms = Date.now() - startedAt
      const answer = describe(response)
      tally.answers.set(answer, (tally.answers.get(answer) ?? 0) + 1)
      tally.minMs = Math.min(tally.minMs, ms)
      tally.maxMs = Math.max(tally.maxMs, ms)
    }))
  }
  return tally
}

const only = (tally: Tally) => [...tally.answers.keys()]
const UNAVAILABLE = '503 FST_SESSION_STORE_UNAVAILABLE'

test('Redis killed: fail-closed answers 503 in time, fail-open serves anonymously, memory stays bounded; a restart on the same port needs no app restart', async (t) => {
  const rejections = watchRejections(t)
  const server = await startRedis(t)
  const client = failFastClient(t, server)
  const closed = await buildApp(t, { redis: client, storeTimeout: STORE_TIMEOUT_MS })
  const open = await buildApp(t, { redis: client, storeTimeout: STORE_TIMEOUT_MS, onStoreError: 'fail-open' })
  const users = await Promise.all(Array.from({ length: 20 }, (_, n) => login(closed, `user${n}`)))
  const tokenOf = (n: number) => (users[n % users.length] as { token: string }).token

  server.kill('SIGKILL')
  // Let the client see the real connection drop (a network event, not a clock).
  await sleep(50)
  const orders = (n: number) => ({ url: '/orders', headers: { ...BROWSER, 'x-session-id': tokenOf(n) } })
  t.same(only(await burst(closed, 200, orders)), [UNAVAILABLE], 'warm-up burst: 503')
  const heapBefore = heapUsedAfterGc()

  const failClosed = await burst(closed, REQUESTS_WHILE_DOWN, orders)
  t.same(only(failClosed), [UNAVAILABLE], `fail-closed: all ${REQUESTS_WHILE_DOWN} requests with a token answered 503`)
  t.ok(failClosed.maxMs <= ANSWER_BOUND_MS, `fail-closed: answered in ${failClosed.minMs}..${failClosed.maxMs} ms (bound ${ANSWER_BOUND_MS} ms)`)

  const failOpen = await burst(open, REQUESTS_WHILE_DOWN, (n) => ({ url: n % 2 === 0 ? '/public' : '/orders', headers: { 'x-session-id': tokenOf(n) } }))
  t.same(failOpen.answers, new Map([['200 {"anonymous":true}', REQUESTS_WHILE_DOWN / 2], ['401 FST_SESSION_REQUIRED', REQUESTS_WHILE_DOWN / 2]]),
    'fail-open: served as anonymous (/public answers, /orders asks for a session)')
  t.ok(failOpen.maxMs <= ANSWER_BOUND_MS, `fail-open: answered in ${failOpen.minMs}..${failOpen.maxMs} ms`)

  const anonymous = await burst(closed, 200, () => ({ url: '/public' }))
  t.same(only(anonymous), ['200 {"anonymous":true}'], 'a request without a token needs no store')
  t.same(only(await burst(closed, 50, (n) => ({ method: 'POST', url: '/login', payload: { user: `late${n}` } }))), [UNAVAILABLE], 'a login answers 503 too')

  const heapGrowth = heapUsedAfterGc() - heapBefore
  const requestsWhileDown = 2 * REQUESTS_WHILE_DOWN + 250
  t.ok(heapGrowth < HEAP_GROWTH_BOUND, `heapUsed grew by ${(heapGrowth / 1024 / 1024).toFixed(2)} MB over ${requestsWhileDown} requests while down`)
  t.comment(`down: fail-closed ${failClosed.minMs}..${failClosed.maxMs} ms, fail-open ${failOpen.minMs}..${failOpen.maxMs} ms, ` +
    `heap growth ${(heapGrowth / 1024).toFixed(0)} KB over ${requestsWhileDown} requests`)

  // Redis comes back on the same port, empty (no persistence): the old tokens are unknown, new logins work.
  const restartedAt = Date.now()
  await startProcess(t, server.port, [])
  let status = 503
  while (status === 503 && Date.now() - restartedAt < 5000) {
    status = (await closed.inject({ url: '/orders', headers: { 'x-session-id': tokenOf(0) } })).statusCode
    // The client reconnects to the restarted server over the network: poll.
    if (status === 503) await sleep(20)
  }
  const recoveryMs = Date.now() - restartedAt
  t.equal(status, 401, 'the old token is unknown to the restarted Redis')
  t.ok(recoveryMs < 2000, `answering again ${recoveryMs} ms after the restart (bound 2000 ms)`)
  t.comment(`restart: answering again ${recoveryMs} ms after redis-server was started`)
  const fresh = await login(closed, 'user0')
  t.equal((await closed.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': fresh.token } })).statusCode, 200, 'a new login works')
  t.same(rejections, [], 'no unhandled rejection')
})

test('Redis frozen (SIGSTOP): every request is answered within the bound; after SIGCONT all is well', async (t) => {
  const { rejections, server, client } = await freezableRedis(t)
  const closed = await buildApp(t, { redis: client, storeTimeout: STORE_TIMEOUT_MS })
  const open = await buildApp(t, { redis: client, storeTimeout: STORE_TIMEOUT_MS, onStoreError: 'fail-open' })
  const { token } = await login(closed, 'frozen')

  server.kill('SIGSTOP')
  const failClosed = await burst(closed, 300, () => ({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } }))
  t.same(only(failClosed), [UNAVAILABLE], 'fail-closed: 503')
  t.ok(failClosed.maxMs <= ANSWER_BOUND_MS, `fail-closed: answered in ${failClosed.minMs}..${failClosed.maxMs} ms (bound ${ANSWER_BOUND_MS} ms)`)
  t.ok(failClosed.minMs >= STORE_TIMEOUT_MS - 50, 'a frozen server is only given up on at storeTimeout')
  const failOpen = await burst(open, 300, () => ({ url: '/public', headers: { 'x-session-id': token } }))
  t.same(only(failOpen), ['200 {"anonymous":true}'], 'fail-open: anonymous')
  t.ok(failOpen.maxMs <= ANSWER_BOUND_MS, `fail-open: answered in ${failOpen.minMs}..${failOpen.maxMs} ms`)
  t.comment(`frozen: fail-closed answered in ${failClosed.minMs}..${failClosed.maxMs} ms, fail-open in ${failOpen.minMs}..${failOpen.maxMs} ms`)

  server.kill('SIGCONT')
  const thawedAt = Date.now()
  let status = 503
  while (status !== 200 && Date.now() - thawedAt < 2000) {
    status = (await closed.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })).statusCode
  }
  t.equal(status, 200, `the session works again ${Date.now() - thawedAt} ms after SIGCONT`)
  t.equal((await login(closed, 'thawed')).sessionId.length, 24, 'a new login works')
  t.same(rejections, [], 'no unhandled rejection')
})

interface Shape { sessions: Map<string, string>, index: Set<string>, queue: Set<string>, created: Set<string>, timedOut: Set<string> }

/**
 * Every session (owner read through the store), index entry, expiry-queue entry and 'created' audit event (read
 * through the manager) under the prefix, each as `<sid><uid>`. Key names: docs/design.md.
 */
async function shapeOf (client: Redis, manager: SessionManager, prefix: string): Promise<Shape> {
  const shape: Shape = { sessions: new Map(), index: new Set(), queue: new Set(), created: new Set(), timedOut: new Set() }
  const reader = new RedisStore({ client, prefix })
  const keys = await scanKeys(client, `${prefix}{*`)
  const users = new Set<string>()
  for (const key of keys) {
    const [, kind, rest] = /^[^{]*\{..\}:([sux])(?::(.*))?$/.exec(key) ?? []
    if (kind === 's') {
      const stored = await reader.load(rest as string)
      // An ended session's tombstone (why it ended) is not a session.
      if (stored !== null && stored !== 'corrupt' && 'ended' in stored) continue
      const owner = stored === null || stored === 'corrupt' ? '?' : stored.userId
      shape.sessions.set(rest as string, owner)
      users.add(owner)
    }
    // The index also holds the user's known devices ('~' + device key): only its sessions are entries.
    if (kind === 'u') for (const sid of await client.zrange(key, '0', '-1')) if (!sid.startsWith('~')) shape.index.add(`${sid}${rest}`)
    if (kind === 'x') for (const member of await client.zrange(key, '0', '-1')) shape.queue.add(member)
  }
  for (const entry of [...shape.index, ...shape.queue]) users.add(entry.slice(24))
  for (const user of users) {
    if (user === '?') continue
    for (const event of await manager.auditLog(user, { limit: 10_000 })) {
      if (event.type === 'created') shape.created.add(`${event.sessionId}${user}`)
      if (event.type === 'invalidated' && event.data.reason === 'login_timed_out') shape.timedOut.add(`${event.sessionId}${user}`)
    }
  }
  return shape
}

test('a create cut off by a frozen Redis and a dropped connection leaves each session whole or absent', async (t) => {
  const { rejections, server, client } = await freezableRedis(t)
  const app = await buildApp(t, { redis: client, storeTimeout: 200, maxSessionsPerUser: 100 })
  const users = Array.from({ length: 20 }, (_, n) => `cut${n}`)
  // Half the users have logged in before (their index and known device exist), half have not.
  await Promise.all(users.slice(0, 10).map((user) => login(app, user)))

  server.kill('SIGSTOP')
  const attempts = await Promise.all(users.flatMap((user) => [1, 2, 3].map(() =>
    app.inject({ method: 'POST', url: '/login', payload: { user } }))))
  t.ok(attempts.every((a) => a.statusCode === 503), `all ${attempts.length} logins answered 503`)
  // Drop the connection while the commands sit unread in the frozen server's socket buffer; the client
  // reconnects on its own (and, by ioredis default, sends again the commands that got no reply).
  client.disconnect(true)
  // After SIGSTOP/SIGCONT the real client reconnects on its own: poll, then let its queued commands drain.
  await thaw(server, client)

  const shape = await shapeOf(client, app.sessions, 'sess:')
  const everySid = new Set([...shape.sessions.keys()].map((sid) => `${sid}${shape.sessions.get(sid)}`))
  for (const set of [shape.index, shape.queue, shape.created]) for (const entry of set) everySid.add(entry)
  let whole = 0
  let ended = 0
  for (const entry of everySid) {
    const sid = entry.slice(0, 24)
    const parts = [shape.sessions.get(sid) === entry.slice(24), shape.index.has(entry), shape.queue.has(entry), shape.created.has(entry)]
    if (parts.every(Boolean)) whole++
    // A create applied after its login answered 503 is ended at once: created, then invalidated, nothing left.
    else if (parts.join() === 'false,false,false,true' && shape.timedOut.has(entry)) ended++
    else t.fail(`session ${sid} is half there: key, index, queue, audit = ${parts.join(', ')}`)
  }
  t.equal(whole + ended, everySid.size, `${whole} sessions whole (key, index entry, expiry entry, 'created' event), ${ended} created late and ended`)
  t.equal(whole, 10, 'exactly the sessions created before the freeze are alive: no login answered 503 left a session')
  t.comment(`cut-off creates: ${ended} of ${attempts.length} logins answered 503 were applied anyway, then ended`)
  t.equal((await login(app, 'cut0')).sessionId.length, 24, 'logins work again')
  t.same(rejections, [], 'no unhandled rejection')
})

/** Requests `url` with `token` until the near cache answers one (its tracking is set up after connecting): true once it does, false after 3 s. */
async function servedFromNearCache (app: FastifyInstance, url: string, token: string): Promise<boolean> {
  const startedAt = Date.now()
  while (Date.now() - startedAt < 3000) {
    const hits = app.sessions.cacheStats()?.hits ?? 0
    await app.inject({ url, headers: { ...BROWSER, 'x-session-id': token } })
    if ((app.sessions.cacheStats()?.hits ?? 0) > hits) return true
    await sleep(20)
  }
  return false
}

test('a login answered 503 that reaches Redis later changes nothing: it evicts no session and ends no previous one', async (t) => {
  const { rejections, server, client } = await freezableRedis(t)
  // With the near cache, the device's session is read from memory while Redis is frozen, so its login reaches
  // startSession (without it, loading the session would answer 503 first).
  const app = await buildApp(t, { redis: client, storeTimeout: 200, maxSessionsPerUser: 3, nearCache: true })
  const full = await Promise.all([1, 2, 3].map(() => login(app, 'at-limit')))
  const device = await login(app, 'device')
  t.ok(await servedFromNearCache(app, '/orders', device.token), "the device's session is in the near cache")
  const evictions: string[] = []
  app.sessions.on('audit', (event) => { if (event.type === 'evicted' || event.type === 'invalidated') evictions.push(`${event.type} ${event.userId}`) })

  server.kill('SIGSTOP')
  const [atLimit, again] = await Promise.all([
    // A fourth login of a user at the limit would evict the oldest session ('evict-oldest')...
    app.inject({ method: 'POST', url: '/login', payload: { user: 'at-limit' } }),
    // ...and a new login on a signed-in device would end its previous session.
    app.inject({ method: 'POST', url: '/login', payload: { user: 'device' }, headers: { ...BROWSER, 'x-session-id': device.token } })
  ])
  t.same([atLimit.statusCode, again.statusCode], [503, 503], 'both logins answered 503')
  await sleep(300)
  // The client's commands reach Redis now, after their deadline.
  await thaw(server, client)

  t.equal((await app.sessions.list('at-limit')).length, 3, 'the user at the limit still has their 3 sessions')
  for (const [n, session] of full.entries()) {
    t.equal((await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': session.token } })).statusCode, 200, `session ${n + 1} still works`)
  }
  t.equal((await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': device.token } })).statusCode, 200, "the device's previous session still works")
  t.same((await app.sessions.list('device')).map((s) => s.id), [device.sessionId], 'the device has only its previous session')
  t.same(evictions, [], 'nothing was evicted or ended')
  t.same(rejections, [], 'no unhandled rejection')
})

test('manager.create with notAfter: a deadline already past changes nothing; a store clock ahead is named in the cause', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.disconnect())
  const manager = new SessionManager({ store: new RedisStore({ client }), maxSessionsPerUser: 1 })
  t.teardown(() => manager.close())
  const first = await manager.create('late-user')

  const late = await manager.create('late-user', {}, { notAfter: Date.now() - 1000 }).catch((error: Error) => error)
  t.match(late, { code: 'FST_SESSION_STORE_UNAVAILABLE', statusCode: 503 }, 'a create past its deadline fails with 503')
  t.match((late as Error).cause, { message: /reached the store \d+ ms after its deadline/ }, 'the cause says it came late')
  t.same((await manager.list('late-user')).map((s) => s.id), [first.session.id], 'and evicted nothing (the limit is 1)')

  // This instance's clock 10 s behind Redis's: by its clock the deadline is 2 s away, by Redis's it is past.
  const realNow = Date.now
  Date.now = () => realNow() - 10_000
  let skewed: unknown
  try {
    skewed = await manager.create('late-user', {}, { notAfter: Date.now() + 2000 }).catch((error: Error) => error)
  } finally {
    Date.now = realNow
  }
  t.match(skewed, { code: 'FST_SESSION_STORE_UNAVAILABLE' }, 'a skewed clock fails the create with 503...')
  t.match((skewed as Error).cause, { message: /store's clock is at least \d+ ms ahead of this instance's; synchronize the clocks/ }, '...and the cause says what to fix')
  t.same((await manager.list('late-user')).map((s) => s.id), [first.session.id], 'nothing changed')

  t.ok((await manager.create('late-user', {}, { notAfter: Date.now() + 5000 })).token, 'a create within its deadline works')
  const held = await manager.create('rotating-user')
  const lateRotation = await manager.rotate(held.token, { notAfter: Date.now() - 1000 }).catch((error: Error) => error)
  t.match(lateRotation, { code: 'FST_SESSION_STORE_UNAVAILABLE' }, 'a rotation past its deadline fails with 503')
  t.match((lateRotation as Error).cause, { message: /the rotation reached the store \d+ ms after its deadline/ }, 'the cause says it came late')
  t.equal((await manager.get(held.token))?.id, held.session.id, 'and the token still opens its session')
  t.ok(await manager.rotate(held.token, { notAfter: Date.now() + 5000 }), 'a rotation within its deadline works')
  await t.rejects(manager.rotate(held.token, { notAfter: 'soon' as unknown as number }), { code: 'FST_SESSION_INVALID_ARGUMENT' }, 'a notAfter that is no integer is refused')
  for (const notAfter of [1.5, '1', Number.NaN]) {
    await t.rejects(manager.create('late-user', {}, { notAfter: notAfter as number }), { code: 'FST_SESSION_INVALID_ARGUMENT', statusCode: 400 }, `notAfter ${String(notAfter)} is refused`)
  }
  const memory = new SessionManager({ store: new MemoryStore() })
  t.teardown(() => memory.close())
  t.ok((await memory.create('u', {}, { notAfter: Date.now() - 1000 })).token, 'the memory store applies a create at once and ignores notAfter')
})

test('a rotation answered 503 that reaches Redis later leaves the token the client holds working', async (t) => {
  const { rejections, server, client } = await freezableRedis(t)
  const app = Fastify()
  t.teardown(() => app.close())
  // The near cache serves the session while Redis is frozen, so the request reaches reply.rotateSession().
  await app.register(sessionPlugin, { redis: client, storeTimeout: 200, nearCache: true, cleanup: false })
  app.post<{ Body: { user: string } }>('/login', async (request, reply) => ({ token: (await reply.startSession(request.body.user)).token }))
  app.post('/rotate', { preHandler: app.requireSession }, async (request, reply) => ({ token: (await reply.rotateSession())?.token }))
  await app.ready()
  const { token } = (await app.inject({ method: 'POST', url: '/login', payload: { user: 'rotating' } })).json() as { token: string }
  t.ok(await servedFromNearCache(app, '/profile', token), 'the session is in the near cache')

  server.kill('SIGSTOP')
  const rotate = await app.inject({ method: 'POST', url: '/rotate', headers: { 'x-session-id': token } })
  t.equal(rotate.statusCode, 503, 'the rotation answered 503')
  await sleep(300)
  await thaw(server, client)
  const after = await app.inject({ url: '/profile', headers: { 'x-session-id': token } })
  t.equal(after.statusCode, 200, 'the token the client still holds works (the late rotation changed nothing)')
  const rotated = await app.inject({ method: 'POST', url: '/rotate', headers: { 'x-session-id': token } })
  t.equal(rotated.statusCode, 200, 'a rotation in time works')
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': (rotated.json() as { token: string }).token } })).statusCode, 200, 'with its new token')
  t.same(rejections, [], 'no unhandled rejection')
})
