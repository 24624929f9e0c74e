import Fastify, { type FastifyInstance } from 'fastify'
import { test, type Test } from 'tap'
import sessionPlugin, { getSession, MemoryStore, requireSession, type SessionPluginOptions } from '../lib/index'
import { BROWSER, clockedApp, login } from './helpers/app'

const START = Date.UTC(2026, 0, 1)
const MINUTE = 60_000

function from (ip: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...BROWSER, 'x-forwarded-for': ip, ...extra }
}

/**
 * A deny-policy app on real Redis with a hand-driven clock; POST /signout ends the session with reply.endSession(),
 * POST /verify is a step-up route that confirms the session.
 */
async function denyApp (t: Test, security: SessionPluginOptions['security'] = { rapidCreationWindow: 0 }): Promise<{ app: FastifyInstance, clock: { now: number } }> {
  const { app, clock } = await clockedApp(t, { touchInterval: '1m', security: { ...security, onSuspicious: 'deny' } }, START)
  app.post<{ Body: { user: string } }>('/login', async (request, reply) => {
    const { token, session } = await reply.startSession(request.body.user)
    return { token, sessionId: session.id }
  })
  app.post('/signout', async (request, reply) => ({ ended: await reply.endSession() }))
  app.get('/orders', { preHandler: requireSession }, async (request) => ({ userId: getSession(request).userId }))
  app.get('/public', async (request) => ({ anonymous: request.session === null, flagged: request.requiresSecurityCheck }))
  app.post('/verify', { config: { session: 'step-up' }, preHandler: requireSession }, async (request, reply) => {
    const flagged = request.requiresSecurityCheck
    return { flagged, confirmed: await reply.confirmSession({ method: 'password' }) }
  })
  await app.ready()
  return { app, clock }
}

test("onSuspicious 'deny': a denied request answers 403 on protected routes, is anonymous elsewhere, and never moves lastActivity", async (t) => {
  const { app, clock } = await denyApp(t)
  const { token, sessionId } = await login(app, 'frank', from('10.0.0.1'))
  clock.now += 5 * MINUTE
  const denied = await app.inject({ url: '/orders', headers: from('10.9.9.9', { 'x-session-id': token }) })
  t.equal(denied.statusCode, 403)
  t.equal(denied.json().code, 'FST_SESSION_SUSPICIOUS')
  t.same((await app.inject({ url: '/public', headers: from('10.9.9.9', { 'x-session-id': token }) })).json(), { anonymous: true, flagged: true })
  t.equal((await app.inject({ url: '/profile', headers: from('10.9.9.9', { 'x-session-id': token }) })).statusCode, 403, 'built-in routes too')
  const [listed] = await app.sessions.list('frank')
  t.equal(listed?.id, sessionId)
  t.equal(listed?.lastActivity.getTime(), START, 'denied requests did not touch the session')
  const allowed = await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': token }) })
  t.equal(allowed.statusCode, 200, 'the device it was created on still works')
  t.equal((await app.sessions.list('frank'))[0]?.lastActivity.getTime(), clock.now, 'an allowed request touches as usual')
})

test("onSuspicious 'deny': a denied session can log out with POST /logout, which ends it and clears the cookie", async (t) => {
  const { app } = await denyApp(t)
  const { token } = await login(app, 'gina', from('10.0.0.1'))
  const out = await app.inject({ method: 'POST', url: '/logout', headers: from('10.9.9.9'), cookies: { session_id: token } })
  t.equal(out.statusCode, 200)
  t.equal(out.cookies.find((c) => c.name === 'session_id')?.value, '', 'the cookie is cleared')
  t.equal((await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': token }) })).statusCode, 401, 'the session is ended everywhere')
})

test("onSuspicious 'deny': reply.endSession() ends a denied session; other session routes stay refused", async (t) => {
  const { app } = await denyApp(t)
  const { token } = await login(app, 'hugo', from('10.0.0.1'))
  const others = await app.inject({ method: 'DELETE', url: '/sessions', headers: from('10.9.9.9', { 'x-session-id': token }) })
  t.equal(others.statusCode, 403, 'DELETE /sessions is refused')
  const out = await app.inject({ method: 'POST', url: '/signout', headers: from('10.9.9.9'), cookies: { session_id: token } })
  t.same(out.json(), { ended: true })
  t.equal(out.cookies.find((c) => c.name === 'session_id')?.maxAge, 0, 'the cookie is cleared')
  t.same(await app.sessions.list('hugo'), [], 'the session is gone')
})

test("onSuspicious 'deny': a denied session can log in again; the new session works and replaces the denied one", async (t) => {
  const { app } = await denyApp(t)
  const first = await login(app, 'iris', from('10.0.0.1'))
  const again = await app.inject({ method: 'POST', url: '/login', payload: { user: 'iris' }, headers: from('10.9.9.9'), cookies: { session_id: first.token } })
  t.equal(again.statusCode, 200, 'login answers 200, not 403')
  const { token } = again.json() as { token: string }
  t.equal((await app.inject({ url: '/orders', headers: from('10.9.9.9', { 'x-session-id': token }) })).statusCode, 200, 'the new session is served')
  t.equal((await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': first.token }) })).statusCode, 401, 'the denied session was ended by the login (replace)')
})

test("onSuspicious 'deny': when the touching read of an allowed request fails, the session just read is served", async (t) => {
  const store = new MemoryStore()
  const clock = { now: START }
  const app = Fastify({ trustProxy: true })
  t.teardown(() => app.close())
  await app.register(sessionPlugin, { store, cleanup: false, now: () => clock.now, touchInterval: '1m', security: { onSuspicious: 'deny' } })
  app.post('/login', async (request, reply) => await reply.startSession('jack'))
  app.get('/orders', { preHandler: requireSession }, async (request) => ({ userId: getSession(request).userId }))
  await app.ready()
  const { token } = (await app.inject({ method: 'POST', url: '/login', headers: from('10.0.0.1') })).json() as { token: string }
  clock.now += 2 * MINUTE
  // The memory store answers reads without I/O (loadNow): the request path reads through it.
  const loadNow = store.loadNow.bind(store)
  let reads = 0
  store.loadNow = (sessionId) => {
    reads++
    if (reads === 2) throw new Error('connection reset')
    return loadNow(sessionId)
  }
  const response = await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': token }) })
  t.same(response.json(), { userId: 'jack' })
  t.equal(reads, 2, 'a first read without the touch, a second with it')
})

test("onSuspicious 'deny': an account flagged by its other sessions is not a trap: a step-up route serves the flagged session, and confirming it lets the user in", async (t) => {
  const { app, clock } = await denyApp(t, {})
  // Four logins from four networks two minutes apart: every session sees more than two other IPs (and a burst).
  const tokens: string[] = []
  for (let n = 1; n <= 4; n++) {
    clock.now += 2 * MINUTE
    tokens.push((await login(app, 'ivy', from(`10.0.${n}.1`))).token)
  }
  const last = tokens[3] as string
  t.equal((await app.inject({ url: '/orders', headers: from('10.0.4.1', { 'x-session-id': last }) })).statusCode, 403, 'denied by its siblings')
  const verified = await app.inject({ method: 'POST', url: '/verify', headers: from('10.0.4.1', { 'x-session-id': last }) })
  t.equal(verified.statusCode, 200, 'the step-up route serves the flagged session')
  t.same(verified.json(), { flagged: true, confirmed: true })
  t.equal((await app.inject({ url: '/orders', headers: from('10.0.4.1', { 'x-session-id': last }) })).statusCode, 200, 'confirmed: served again')
  t.equal((await app.inject({ url: '/verify', method: 'POST', headers: from('10.0.4.1') })).statusCode, 401, 'a step-up route still needs a session')
})
