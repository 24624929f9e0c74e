import { execFile } from 'node:child_process'
import path from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { test, type Test } from 'tap'
import sessionPlugin, { type SessionPluginOptions } from '../lib/index'
import { sendCommand, startRedis, type RedisServer } from './helpers/redis'

const CHECK_FAILED = 'FST_SESSION_STORE_CHECK_FAILED'
const PREFIX = 'fastify-distributed-session: the session store failed the startup check: '

/** Sockets and timers of the process: what keeps it alive. */
function liveHandles (): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'TCPSocketWrap' || kind === 'Timeout').length
}

/**
 * Waits until the process holds no more sockets and timers than `baseline`, for at most 2 s: a destroyed socket leaves
 * the active resources once its close has been processed, a few event-loop turns later (polling, not a fixed sleep).
 * A client still reconnecting never gets there.
 */
async function handlesBackTo (baseline: number): Promise<number> {
  const deadline = Date.now() + 2000
  while (liveHandles() > baseline && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  return liveHandles()
}

/** Not async: a Fastify instance is a thenable, and an async function would await its boot. */
function registering (t: Test, options: SessionPluginOptions): FastifyInstance {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(sessionPlugin, { cleanup: false, ...options })
  return app
}

async function withPassword (t: Test, password: string): Promise<RedisServer> {
  const server = await startRedis(t)
  t.equal(await sendCommand(server.port, ['CONFIG', 'SET', 'requirepass', password]), 'OK')
  return server
}

test('app.ready() rejects naming a wrong password, a missing password and a database index the server lacks', async (t) => {
  const server = await withPassword(t, 'sekrit')
  const wrong = registering(t, { redis: `redis://:nope@127.0.0.1:${server.port}` })
  await t.rejects(async () => { await wrong.ready() }, { code: CHECK_FAILED, statusCode: 500, message: new RegExp(`^${PREFIX}Redis refused the credentials \\(wrong password or username\\): WRONGPASS`) })
  const missing = registering(t, { redis: `redis://127.0.0.1:${server.port}` })
  await t.rejects(async () => { await missing.ready() }, { code: CHECK_FAILED, message: new RegExp(`^${PREFIX}Redis requires a password and none was given: NOAUTH`) })
  const db = registering(t, { redis: `redis://:sekrit@127.0.0.1:${server.port}/99` })
  await t.rejects(async () => { await db.ready() }, {
    code: CHECK_FAILED,
    message: `${PREFIX}Redis has no database 99 (SELECT 99: ERR DB index is out of range); the server's 'databases' setting bounds the index (option "startupCheck": false starts without it)`
  })
  const good = registering(t, { redis: `redis://:sekrit@127.0.0.1:${server.port}/3` })
  await t.resolves(async () => { await good.ready() }, 'the right password and an existing database pass')
})

test('app.ready() rejects a Redis user who may not run scripts, naming the problem', async (t) => {
  const server = await startRedis(t)
  t.equal(await sendCommand(server.port, ['ACL', 'SETUSER', 'reader', 'on', '>pw', '~*', '+@read', '+ping', '+hello', '+select', '+client', '+info']), 'OK')
  const reader = registering(t, { redis: `redis://reader:pw@127.0.0.1:${server.port}` })
  await t.rejects(async () => { await reader.ready() }, { code: CHECK_FAILED, message: new RegExp(`^${PREFIX}the Redis user may not run what the store needs .*NOPERM`) })
})

test('app.ready() rejects naming an unreachable Redis, and a failed registration releases the client it opened', async (t) => {
  const gone = await startRedis(t)
  await gone.stop()
  const baseline = liveHandles()
  const app = registering(t, { redis: gone.url })
  await t.rejects(async () => { await app.ready() }, { code: CHECK_FAILED, message: new RegExp(`^${PREFIX}Redis is unreachable: connect ECONNREFUSED`) })
  t.ok(await handlesBackTo(baseline) <= baseline, 'no socket or reconnect timer left: the process can exit')
})

test('a registration failing on an option after the client was opened closes that client', async (t) => {
  const server = await startRedis(t)
  const app = registering(t, { redis: server.url, audit: { retention: '36500d' } })
  await t.rejects(async () => { await app.ready() }, {
    code: 'FST_SESSION_INVALID_OPTION',
    message: 'fastify-distributed-session: option "audit.retention" must be a duration from 0 ms to 365 days (milliseconds, or a string such as \'500ms\', \'30s\', \'30m\', \'24h\', \'7d\'), got "36500d"'
  })
  // Polled (a reason for waiting: the server drops a closed connection a moment after the client closes it). A leaked
  // client stays connected (and reconnects), so the server never gets back to one client: the INFO connection itself.
  const clients = async (): Promise<number> => Number(/connected_clients:(\d+)/.exec(await sendCommand(server.port, ['INFO', 'clients']))?.[1])
  const pause = (): Promise<unknown> => new Promise((resolve) => setTimeout(resolve, 20))
  let count = await clients()
  for (const until = Date.now() + 1000; count !== 1 && Date.now() < until; count = await clients()) await pause()
  t.equal(count, 1, 'the plugin\'s client is closed')
  let most = count
  for (const until = Date.now() + 300; Date.now() < until; most = Math.max(most, await clients())) await pause()
  t.equal(most, 1, 'and it does not reconnect')
})

test('a client the app passed in is checked but never closed by a failed registration', async (t) => {
  const server = await withPassword(t, 'sekrit')
  const client = new Redis(server.url, { maxRetriesPerRequest: 1, lazyConnect: true })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const app = registering(t, { redis: client })
  await t.rejects(async () => { await app.ready() }, { code: CHECK_FAILED, message: /NOAUTH/ })
  t.not(client.status, 'end', 'the app\'s client is the app\'s to close')
})

test('a frozen Redis fails the check after startupCheck.timeout; startupCheck: false starts and answers 503 until Redis is back', async (t) => {
  const server = await startRedis(t)
  server.kill('SIGSTOP')
  t.teardown(() => server.kill('SIGCONT'))
  const started = Date.now()
  const app = registering(t, { redis: server.url, startupCheck: { timeout: 300 } })
  await t.rejects(async () => { await app.ready() }, { code: CHECK_FAILED, message: `${PREFIX}the store did not answer within 300 ms (option "startupCheck.timeout") (option "startupCheck": false starts without it)` })
  t.ok(Date.now() - started < 2000, `gave up after ${Date.now() - started} ms`)
  const unchecked = registering(t, { redis: server.url, startupCheck: false, storeTimeout: 200 })
  unchecked.get('/orders', { preHandler: unchecked.requireSession }, async () => ({ ok: true }))
  await t.resolves(async () => { await unchecked.ready() }, 'starts while Redis does not answer')
  const response = await unchecked.inject({ url: '/orders', headers: { 'x-session-id': `${'A'.repeat(24)}.${'b'.repeat(43)}` } })
  t.equal(response.json().code, 'FST_SESSION_STORE_UNAVAILABLE')
})

test('the memory store passes the startup check', async (t) => {
  const app = registering(t, {})
  await t.resolves(async () => { await app.ready() })
})

test('the demo exits with the reason and never says "open http://..." when its Redis is unreachable', async (t) => {
  const gone = await startRedis(t)
  await gone.stop()
  const result = await new Promise<{ code: number | null, stdout: string, stderr: string }>((resolve) => {
    execFile(process.execPath, [path.join(__dirname, '..', 'examples', 'server.mjs')], {
      env: { ...process.env, REDIS_URL: gone.url, PORT: '0', LOG_LEVEL: 'silent' },
      timeout: 15_000
    }, (error, stdout, stderr) => { resolve({ code: error === null ? 0 : (error as { code?: number }).code ?? null, stdout, stderr }) })
  })
  t.equal(result.code, 1)
  t.notMatch(result.stdout, /open http/)
  t.match(result.stderr, /^Session demo not started: fastify-distributed-session: the session store failed the startup check: Redis is unreachable: connect ECONNREFUSED/)
})
