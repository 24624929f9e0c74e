import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { test, type Test } from 'tap'
import sessionPlugin, { type SessionPluginOptions } from '../lib/index'
import { MemoryStore } from '../lib/store/memory/store'
import { buildApp, BROWSER, login } from './helpers/app'
import { startRedis } from './helpers/redis'
import { commandsProcessed } from './helpers/redis-inspect'

async function redisOptions (t: Test): Promise<{ options: SessionPluginOptions, client: Redis }> {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  return { options: { redis: client }, client }
}

for (const backend of ['redis', 'memory'] as const) {
  test(`the README example works as written (${backend})`, async (t) => {
    const options = backend === 'redis' ? (await redisOptions(t)).options : {}
    const app = await buildApp(t, options)
    const anonymous = await app.inject({ url: '/orders' })
    t.equal(anonymous.statusCode, 401)
    t.same(anonymous.json(), {
      statusCode: 401,
      code: 'FST_SESSION_REQUIRED',
      error: 'Unauthorized',
      message: 'A valid session is required: log in and send the session cookie or the X-Session-ID header'
    })
    const { token, sessionId, cookie } = await login(app, 'alice')
    t.equal(cookie, token, 'the cookie carries the token')
    const byHeader = await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })
    t.equal(byHeader.statusCode, 200)
    t.same(byHeader.json(), { userId: 'alice', check: false, metadata: { plan: 'free' } })
    const byCookie = await app.inject({ url: '/orders', headers: BROWSER, cookies: { session_id: token } })
    t.same(byCookie.json(), { userId: 'alice', check: false, metadata: { plan: 'free' } })
    const profile = await app.inject({ url: '/profile', headers: { 'x-session-id': token } })
    t.same(profile.json(), { userId: 'alice', sessionId })
    t.notMatch(profile.body, token)
  })
}

test('ASVS 5.0 V3.3 cookie setup: login sets an HttpOnly, SameSite=Lax, Secure-on-HTTPS cookie and no-store', async (t) => {
  const app = await buildApp(t)
  const { response } = await login(app, 'bob')
  const cookie = response.cookies[0]
  t.equal(cookie?.name, 'session_id')
  t.equal(cookie?.httpOnly, true)
  t.equal(cookie?.sameSite, 'Lax')
  t.equal(cookie?.path, '/')
  t.notOk(cookie?.secure, 'plain HTTP: no Secure attribute with secure: auto')
  t.equal(cookie?.maxAge, 24 * 3600)
  t.equal(response.headers['cache-control'], 'no-store')
  const https = await app.inject({ method: 'POST', url: '/login', payload: { user: 'bob' }, headers: { 'x-forwarded-proto': 'https' } })
  t.equal(https.cookies[0]?.secure, true, 'HTTPS behind a trusted proxy: Secure')
})

test('ASVS 5.0 V3.3 cookie setup: the __Host- prefix option names the cookie and forces Secure', async (t) => {
  const app = await buildApp(t, { cookie: { hostPrefix: true } })
  const { response } = await login(app, 'bob')
  t.equal(response.cookies[0]?.name, '__Host-session_id')
  t.equal(response.cookies[0]?.secure, true)
  t.equal(response.cookies[0]?.domain, undefined)
})

test('the header wins over the cookie, and a request without a token costs no Redis command', async (t) => {
  const { options, client } = await redisOptions(t)
  const app = await buildApp(t, options)
  const alice = await login(app, 'alice')
  const bob = await login(app, 'bob')
  const both = await app.inject({ url: '/profile', headers: { 'x-session-id': alice.token }, cookies: { session_id: bob.token } })
  t.equal(both.json().userId, 'alice')
  const before = await commandsProcessed(client)
  for (let n = 0; n < 20; n++) t.equal((await app.inject({ url: '/public' })).json().anonymous, true)
  t.equal(await commandsProcessed(client) - before, 1, 'only the INFO that counts')
})

test('an authenticated request costs one Redis command when no touch is due', async (t) => {
  const { options, client } = await redisOptions(t)
  const app = await buildApp(t, options)
  const { token } = await login(app, 'alice')
  await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })
  const before = await commandsProcessed(client)
  for (let n = 0; n < 10; n++) t.equal((await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })).statusCode, 200)
  t.equal(await commandsProcessed(client) - before, 11, 'ten GETs and the INFO')
})

test('an unknown, expired or malformed token is anonymous and its cookie is cleared', async (t) => {
  let clock = Date.now()
  const app = await buildApp(t, { idleTimeout: '10m', now: () => clock })
  const { token } = await login(app, 'carol')
  for (const bad of ['nope', `${'A'.repeat(24)}.${'B'.repeat(43)}`]) {
    const response = await app.inject({ url: '/public', cookies: { session_id: bad } })
    t.equal(response.json().anonymous, true)
    const cleared = response.cookies.find((c) => c.name === 'session_id')
    t.equal(cleared?.value, '', 'the cookie is cleared')
    t.ok((cleared?.expires?.getTime() ?? Infinity) <= Date.now(), 'with a past expiry')
  }
  clock += 11 * 60_000
  const expired = await app.inject({ url: '/orders', cookies: { session_id: token } })
  t.equal(expired.statusCode, 401)
  t.equal(expired.cookies[0]?.value, '')
})

test('ASVS 7.4.1: logout ends the session server-side for every instance and clears the cookie', async (t) => {
  const app = await buildApp(t)
  const { token } = await login(app, 'dave')
  const out = await app.inject({ method: 'POST', url: '/logout', cookies: { session_id: token } })
  t.equal(out.statusCode, 200)
  t.same(out.json(), { message: 'Successfully logged out' })
  t.equal(out.cookies[0]?.value, '')
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': token } })).statusCode, 401)
})

test('ASVS 7.5.2: /sessions lists the caller\'s sessions with the current one marked and no token', async (t) => {
  let clock = Date.now()
  const app = await buildApp(t, { now: () => clock })
  const first = await login(app, 'erin')
  clock += 1000
  const second = await login(app, 'erin')
  await login(app, 'someone-else')
  const response = await app.inject({ url: '/sessions', headers: { 'x-session-id': second.token } })
  t.equal(response.statusCode, 200)
  const { sessions } = response.json() as { sessions: Array<{ id: string, current: boolean, createdAt: string }> }
  t.same(sessions.map((s) => [s.id, s.current]), [[second.sessionId, true], [first.sessionId, false]])
  t.match(sessions[0]?.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  t.notMatch(response.body, first.token.split('.')[1] as string)
  t.notMatch(response.body, second.token.split('.')[1] as string)
})

test('ASVS 7.5.2: DELETE /sessions/:id revokes only the caller\'s own sessions; anything else is a 404 that reveals nothing', async (t) => {
  const app = await buildApp(t)
  const mine = await login(app, 'frank')
  const other = await login(app, 'frank')
  const stranger = await login(app, 'grace')
  const foreign = await app.inject({ method: 'DELETE', url: `/sessions/${stranger.sessionId}`, headers: { ...BROWSER, 'x-session-id': mine.token } })
  const unknown = await app.inject({ method: 'DELETE', url: `/sessions/${'Z'.repeat(24)}`, headers: { ...BROWSER, 'x-session-id': mine.token } })
  t.equal(foreign.statusCode, 404)
  t.same(foreign.json(), unknown.json(), 'another user\'s id and an unknown id answer the same')
  t.equal(foreign.json().code, 'FST_SESSION_NOT_FOUND')
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': stranger.token } })).statusCode, 200)
  // From the device that logged in: a request from another device is flagged and may not end other sessions (test/stepup.test.ts).
  const revoked = await app.inject({ method: 'DELETE', url: `/sessions/${other.sessionId}`, headers: { ...BROWSER, 'x-session-id': mine.token } })
  t.same(revoked.json(), { revoked: 1 })
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': other.token } })).statusCode, 401)
  const bad = await app.inject({ method: 'DELETE', url: '/sessions/..%2F..', headers: { 'x-session-id': mine.token } })
  t.equal(bad.statusCode, 400)
  const anonymous = await app.inject({ method: 'DELETE', url: '/sessions/..%2F..' })
  t.equal(anonymous.statusCode, 401, 'an anonymous request is refused before its parameters are looked at')
})

test('ASVS 7.4.3 / 7.5.2: DELETE /sessions revokes every other session of the caller', async (t) => {
  // Three logins in a row are a burst (flagged): that rule and its step-up are tested in test/stepup.test.ts.
  const app = await buildApp(t, { security: { rapidCreationWindow: 0 } })
  const a = await login(app, 'heidi')
  const b = await login(app, 'heidi')
  const c = await login(app, 'heidi')
  const response = await app.inject({ method: 'DELETE', url: '/sessions', headers: { ...BROWSER, 'x-session-id': c.token } })
  t.same(response.json(), { revoked: 2 })
  for (const gone of [a, b]) t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': gone.token } })).statusCode, 401)
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': c.token } })).statusCode, 200)
})

test('ASVS 7.2.4, OWASP session fixation: startSession ends the session the request already had', async (t) => {
  const app = await buildApp(t)
  const before = await login(app, 'ivan')
  const again = await app.inject({ method: 'POST', url: '/login', payload: { user: 'ivan' }, cookies: { session_id: before.token } })
  t.equal(again.statusCode, 200)
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': before.token } })).statusCode, 401, 'the pre-login session is dead')
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': again.json().token } })).statusCode, 200)
})

test('OWASP session id anomalies: a tampered signed cookie is anonymous and cleared; rotated secrets still verify', async (t) => {
  const oldSecret = 'o'.repeat(32)
  const newSecret = 'n'.repeat(32)
  const oldApp = await buildApp(t, { cookie: { signed: true, secret: oldSecret } })
  const { cookie } = await login(oldApp, 'judy')
  t.match(cookie, /^[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9+/]+$/, 'signed value')
  const app = await buildApp(t, { store: (oldApp.sessions.store), cookie: { signed: true, secret: [newSecret, oldSecret] } })
  const ok = await app.inject({ url: '/profile', cookies: { session_id: cookie } })
  t.equal(ok.statusCode, 200, 'a cookie signed with the previous secret verifies')
  const tampered = cookie.slice(0, -2) + (cookie.endsWith('AA') ? 'BB' : 'AA')
  const bad = await app.inject({ url: '/profile', cookies: { session_id: tampered } })
  t.equal(bad.statusCode, 401)
  t.equal(bad.cookies[0]?.value, '', 'cleared')
  const unsignedToken = cookie.slice(0, cookie.lastIndexOf('.'))
  t.equal((await app.inject({ url: '/profile', cookies: { session_id: unsignedToken } })).statusCode, 401, 'an unsigned cookie is refused')
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': unsignedToken } })).statusCode, 200, 'the header carries the bare token')
})

test('ASVS 7.2.1: hostile headers and cookies are verified server-side and never cause a 500', async (t) => {
  const app = await buildApp(t)
  const { token } = await login(app, 'kim')
  const values = ['', ' ', 'a'.repeat(10 * 1024), '\u00e9\u00e9\u00e9', `${token}x`, token.toUpperCase(), `${token},${token}`,
    'null', '{"$ne":null}', '../../etc/passwd', `${token.slice(0, 24)}`, '%00', token.replace('.', '%2E')]
  for (const value of values) {
    for (const url of ['/orders', '/public', '/sessions', '/profile']) {
      const byHeader = await app.inject({ url, headers: { 'x-session-id': value } })
      t.ok(byHeader.statusCode < 500, `header ${JSON.stringify(value.slice(0, 20))} on ${url}: ${byHeader.statusCode}`)
      const byCookie = await app.inject({ url, cookies: { session_id: value } })
      t.ok(byCookie.statusCode < 500, `cookie ${JSON.stringify(value.slice(0, 20))} on ${url}: ${byCookie.statusCode}`)
    }
  }
  const repeated = await app.inject({ url: '/orders', headers: { 'x-session-id': [token, token] as unknown as string } })
  t.equal(repeated.statusCode, 401, 'a repeated header is not a token')
  const rawCookie = await app.inject({ url: '/public', headers: { cookie: 'session_id=%E0%A4%A; session_id=x; ;;=;' } })
  t.equal(rawCookie.statusCode, 200)
})

test('options are validated at registration with a message naming the option', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ idleTimeout: -1 }, /option "idleTimeout"/],
    [{ idleTimeout: '30 minutes' }, /option "idleTimeout"/],
    [{ maxSessionsPerUser: 0 }, /option "maxSessionsPerUser"/],
    [{ limitPolicy: 'lru' }, /option "limitPolicy"/],
    [{ cookie: { sameSite: 'sideways' } }, /option "cookie.sameSite"/],
    [{ cookie: { signed: true } }, /option "cookie.secret" is required/],
    [{ cookie: { secret: 'short' } }, /option "cookie.secret"/],
    [{ cookie: { hostPrefix: true, domain: 'example.com' } }, /option "cookie.hostPrefix"/],
    [{ routes: { prefix: 'no-slash' } }, /option "routes.prefix"/],
    [{ redis: 42 }, /option "redis"/],
    [{ redis: 'http://localhost' }, /option "redis"/],
    [{ store: {} }, /option "store"/],
    [{ onStoreError: 'ignore' }, /option "onStoreError"/],
    [{ security: { onSuspicious: 'panic' } }, /option "security.onSuspicious"/],
    [{ security: { fingerprintTolerance: 2 } }, /option "security.fingerprintTolerance"/],
    [{ typo: true }, /option "typo"|option "\(root\)"/],
    [{ storeTimeout: 0 }, /option "storeTimeout"/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    app.register(sessionPlugin, options as SessionPluginOptions)
    await t.rejects(async () => { await app.ready() }, message, JSON.stringify(options))
    await app.close()
  }
  const app = Fastify()
  app.register(sessionPlugin, { idleTimeout: '30m', absoluteTimeout: 86_400_000, touchInterval: '30s', cleanup: false })
  await t.resolves(async () => { await app.ready() }, 'durations as strings and numbers')
  await app.close()
})

test('routes can be moved under a prefix or turned off', async (t) => {
  const prefixed = await buildApp(t, { routes: { prefix: '/auth' } })
  const { token } = await login(prefixed, 'leo')
  t.equal((await prefixed.inject({ url: '/auth/profile', headers: { 'x-session-id': token } })).statusCode, 200)
  t.equal((await prefixed.inject({ url: '/profile', headers: { 'x-session-id': token } })).statusCode, 404)
  const none = await buildApp(t, { routes: false })
  t.equal((await none.inject({ url: '/profile' })).statusCode, 404)
})

test('a Redis client passed in is never closed; one created from a URL is', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const app = Fastify()
  await app.register(sessionPlugin, { redis: client, cleanup: false })
  await app.close()
  t.equal(await client.ping(), 'PONG', 'still usable after app.close()')
  const owned = Fastify()
  await owned.register(sessionPlugin, { redis: server.url, cleanup: false })
  await owned.ready()
  const store = owned.sessions.store as unknown as { client: Redis }
  await store.client.ping()
  await owned.close()
  for (let n = 0; n < 50 && store.client.status !== 'end'; n++) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(store.client.status, 'end', 'the plugin closed the client it created')
})

test('the memory store is used with a warning when no Redis is configured', async (t) => {
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { lines.push(line) } } } })
  await app.register(sessionPlugin, { cleanup: false })
  await app.ready()
  t.ok(app.sessions.store instanceof MemoryStore)
  t.ok(lines.some((line) => line.includes('in-memory store')))
  await app.close()
})

test('the store is down: fail-closed answers 503 within the timeout, fail-open serves anonymously', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const closed = await buildApp(t, { redis: client, storeTimeout: 500 })
  const open = await buildApp(t, { redis: client, storeTimeout: 500, onStoreError: 'fail-open' })
  const { token } = await login(closed, 'mia')
  server.kill('SIGSTOP')
  t.teardown(() => server.kill('SIGCONT'))
  const started = Date.now()
  const frozen = await closed.inject({ url: '/orders', headers: { 'x-session-id': token } })
  t.equal(frozen.statusCode, 503)
  t.same(frozen.json(), { statusCode: 503, code: 'FST_SESSION_STORE_UNAVAILABLE', error: 'Service Unavailable', message: 'The session store is unavailable: try again shortly' })
  t.ok(Date.now() - started < 1500, 'answered within the bound')
  const anonymous = await open.inject({ url: '/public', headers: { 'x-session-id': token } })
  t.same(anonymous.json(), { anonymous: true })
  t.equal((await closed.inject({ url: '/public' })).statusCode, 200, 'a request without a token needs no store')
  server.kill('SIGCONT')
  let recovered = 0
  for (let n = 0; n < 40 && recovered !== 200; n++) {
    recovered = (await closed.inject({ url: '/orders', headers: { 'x-session-id': token } })).statusCode
    if (recovered !== 200) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.equal(recovered, 200, 'served again once Redis is back')
})

test('reply.endSession and reply.rotateSession serve apps with their own logout and privilege-change routes', async (t) => {
  const app = Fastify()
  await app.register(sessionPlugin, { cleanup: false, routes: false })
  app.post<{ Body: { user: string } }>('/signin', async (request, reply) => (await reply.startSession(request.body.user)).token)
  app.post('/elevate', async (_request, reply) => {
    const rotated = await reply.rotateSession()
    return { token: rotated?.token ?? null }
  })
  app.post('/signout', async (_request, reply) => ({ ended: await reply.endSession() }))
  app.get('/me', async (request) => ({ userId: request.session?.userId ?? null }))
  t.teardown(() => app.close())
  const token = (await app.inject({ method: 'POST', url: '/signin', payload: { user: 'nora' } })).body
  const elevated = await app.inject({ method: 'POST', url: '/elevate', cookies: { session_id: token } })
  const newToken = elevated.json().token as string
  t.not(newToken, token)
  t.equal(elevated.cookies[0]?.value, newToken, 'the cookie carries the new token')
  t.same((await app.inject({ url: '/me', cookies: { session_id: token } })).json(), { userId: null }, 'the old token is dead')
  t.same((await app.inject({ url: '/me', cookies: { session_id: newToken } })).json(), { userId: 'nora' })
  t.same((await app.inject({ method: 'POST', url: '/elevate' })).json(), { token: null }, 'nothing to rotate without a session')
  const out = await app.inject({ method: 'POST', url: '/signout', cookies: { session_id: newToken } })
  t.same(out.json(), { ended: true })
  t.equal(out.cookies[0]?.value, '', 'cleared')
  t.same((await app.inject({ url: '/me', cookies: { session_id: newToken } })).json(), { userId: null })
  t.same((await app.inject({ method: 'POST', url: '/signout' })).json(), { ended: false })
})

test('option errors say what the value must be', async (t) => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ idleTimeout: '30 minutes' }, 'fastify-distributed-session: option "idleTimeout" must be milliseconds (an integer >= 0) or a duration string such as \'30m\', \'24h\', \'500ms\', got "30 minutes"'],
    [{ limitPolicy: 'lru' }, 'fastify-distributed-session: option "limitPolicy" must be one of "evict-oldest", "deny", got "lru"'],
    [{ cookie: { sameSite: 'sideways' } }, 'fastify-distributed-session: option "cookie.sameSite" must be one of "lax", "strict", "none", got "sideways"']
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    app.register(sessionPlugin, options as SessionPluginOptions)
    await t.rejects(async () => { await app.ready() }, { message })
    await app.close()
  }
  const app = Fastify()
  await app.register(sessionPlugin)
  await t.resolves(async () => { await app.ready() }, 'the defaults (hourly cleanup included) are valid')
  await app.close()
})

test('a logout the store could not carry out answers 503 and keeps the cookie, so the client can retry', async (t) => {
  const store = new MemoryStore()
  const app = await buildApp(t, { store })
  const { token } = await login(app, 'oscar')
  const invalidate = store.invalidate.bind(store)
  store.invalidate = async () => { throw new Error('connection reset') }
  const failed = await app.inject({ method: 'POST', url: '/logout', cookies: { session_id: token } })
  t.equal(failed.statusCode, 503)
  t.equal(failed.cookies.length, 0, 'no Set-Cookie')
  store.invalidate = invalidate
  const retried = await app.inject({ method: 'POST', url: '/logout', cookies: { session_id: token } })
  t.equal(retried.statusCode, 200)
  t.equal(retried.cookies[0]?.value, '', 'cleared once the session is ended')
})
