import { Redis } from 'ioredis'
import { test, type Test } from 'tap'
import { buildApp, BROWSER, login } from './helpers/app'
import { startRedis, type RedisServer } from './helpers/redis'

const STORE_TIMEOUT_MS = 300

/** Log lines of an app, parsed. */
function logSink (): { lines: Array<Record<string, unknown>>, stream: { write: (line: string) => void } } {
  const lines: Array<Record<string, unknown>> = []
  return { lines, stream: { write: (line: string) => { lines.push(JSON.parse(line) as Record<string, unknown>) } } }
}

/** Fails the test on any uncaught exception or unhandled rejection while it runs (a throwing listener must not crash). */
function watchCrashes (t: Test): unknown[] {
  const seen: unknown[] = []
  const listener = (reason: unknown): void => { seen.push(reason) }
  process.on('unhandledRejection', listener)
  process.prependListener('uncaughtException', listener)
  t.teardown(() => {
    process.off('unhandledRejection', listener)
    process.off('uncaughtException', listener)
  })
  return seen
}

function fastFailingClient (t: Test, server: RedisServer): Redis {
  const client = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100, connectTimeout: 300 })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  return client
}

test("a throwing 'storeError' listener fired by the store-timeout timer (frozen Redis) crashes nothing, changes no response, and is logged once", async (t) => {
  const crashes = watchCrashes(t)
  const server = await startRedis(t)
  t.teardown(() => server.kill('SIGCONT'))
  const log = logSink()
  const app = await buildApp(t, { redis: fastFailingClient(t, server), storeTimeout: STORE_TIMEOUT_MS }, { logger: { level: 'warn', stream: log.stream } })
  const { token } = await login(app, 'lena')
  let thrown = 0
  app.sessions.on('storeError', () => {
    thrown++
    throw new Error('listener bug')
  })
  server.kill('SIGSTOP')
  const responses = await Promise.all(Array.from({ length: 5 }, () => app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })))
  for (const response of responses) t.equal(response.json().code, 'FST_SESSION_STORE_UNAVAILABLE', 'answered 503 as without the listener')
  t.equal(thrown, 5, 'the listener ran for each timeout')
  const listenerLines = log.lines.filter((line) => String(line.msg).includes("a listener of the 'storeError' event threw"))
  t.equal(listenerLines.length, 5, 'one log line per throw')
  t.match(listenerLines[0], { level: 50, event: 'storeError', err: { message: 'listener bug' } })
  const unavailable = log.lines.filter((line) => (line.err as { code?: string } | undefined)?.code === 'FST_SESSION_STORE_UNAVAILABLE')
  t.ok(unavailable.length >= 1, 'the 503 is logged')
  t.match(unavailable[0], { err: { message: /store call timed out after 300 ms/ } }, 'the 503 log line carries its cause')
  server.kill('SIGCONT')
  t.same(crashes, [])
})

test("a throwing 'storeError' listener with Redis refusing connections leaves no request unanswered", async (t) => {
  const crashes = watchCrashes(t)
  const server = await startRedis(t)
  const log = logSink()
  const app = await buildApp(t, { redis: fastFailingClient(t, server), storeTimeout: 2000 }, { logger: { level: 'warn', stream: log.stream } })
  const { token } = await login(app, 'milo')
  app.sessions.on('storeError', () => { throw new Error('listener bug') })
  await server.stop()
  const started = Date.now()
  const responses = await Promise.all(Array.from({ length: 5 }, () => app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })))
  t.same(responses.map((response) => response.statusCode), [503, 503, 503, 503, 503])
  t.ok(Date.now() - started < 2000, `answered in ${Date.now() - started} ms, before the store timeout`)
  const unavailable = log.lines.find((line) => (line.err as { code?: string } | undefined)?.code === 'FST_SESSION_STORE_UNAVAILABLE')
  t.match(unavailable, { err: { message: /ECONNREFUSED|max retries|Connection is closed/ } }, 'the 503 log line carries the Redis error')
  t.same(crashes, [])
})

test("a throwing 'security' listener changes no response of the request path (invalid-token burst)", async (t) => {
  const crashes = watchCrashes(t)
  const log = logSink()
  const app = await buildApp(t, { security: { invalidTokenThreshold: 2 } }, { logger: { level: 'warn', stream: log.stream } })
  let thrown = 0
  app.sessions.on('security', () => {
    thrown++
    throw new Error('listener bug')
  })
  const statuses: number[] = []
  for (let n = 0; n < 5; n++) statuses.push((await app.inject({ url: '/orders', headers: { 'x-session-id': `${'A'.repeat(24)}.${'b'.repeat(43)}` } })).statusCode)
  t.same(statuses, [401, 401, 401, 401, 401])
  t.equal(thrown, 1, 'the burst was reported once')
  t.equal(log.lines.filter((line) => String(line.msg).includes("a listener of the 'security' event threw")).length, 1)
  t.same(crashes, [])
})

test("a throwing 'security' or 'audit' listener changes no response when a suspicious session is reported", async (t) => {
  const crashes = watchCrashes(t)
  const log = logSink()
  const app = await buildApp(t, {}, { logger: { level: 'warn', stream: log.stream } })
  const { token } = await login(app, 'nina', { ...BROWSER, 'x-forwarded-for': '10.0.0.1' })
  app.sessions.on('security', () => { throw new Error('security listener bug') })
  app.sessions.on('audit', () => { throw new Error('audit listener bug') })
  const response = await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-forwarded-for': '10.9.9.9', 'x-session-id': token } })
  t.equal(response.statusCode, 200)
  t.match(response.json(), { userId: 'nina', check: true })
  // The report is recorded after the response path moved on: wait for its log line (no fixed sleep).
  for (let n = 0; n < 100 && !log.lines.some((line) => String(line.msg).includes('security event')); n++) await new Promise((resolve) => setImmediate(resolve))
  t.ok(log.lines.some((line) => String(line.msg).includes('security event')), 'the security event is logged')
  t.same(crashes, [])
})
