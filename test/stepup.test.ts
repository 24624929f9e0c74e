import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { test, type Test } from 'tap'
import sessionPlugin, { requireFreshSession, type SessionPluginOptions } from '../lib/index'
import { BROWSER } from './helpers/app'
import { startRedis, type RedisServer } from './helpers/redis'

const MINUTE = 60_000

interface Clock { now: number }

/** An app with a login, a /verify step-up route, a sensitive route behind requireFreshSession('10m') and /me. */
async function stepupApp (t: Test, server: RedisServer, options: SessionPluginOptions = {}): Promise<{ app: FastifyInstance, clock: Clock }> {
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const clock = { now: Date.now() }
  const app = Fastify({ trustProxy: true })
  await app.register(sessionPlugin, { redis: client, keyPrefix: `s${Math.random().toString(36).slice(2)}:`, cleanup: false, now: () => clock.now, ...options })
  app.post<{ Body: { user: string } }>('/login', async (request, reply) => {
    const { token, session, newDevice } = await reply.startSession(request.body.user)
    return { token, sessionId: session.id, newDevice }
  })
  app.post('/verify', { preHandler: app.requireSession }, async (request, reply) => {
    return { confirmed: await reply.confirmSession({ method: 'password' }), check: request.requiresSecurityCheck }
  })
  app.post('/email', { preHandler: requireFreshSession('10m') }, async () => ({ changed: true }))
  app.get('/me', async (request) => ({
    user: request.session?.userId ?? null,
    check: request.requiresSecurityCheck,
    ended: request.sessionEnded,
    authenticatedAt: request.session?.authenticatedAt.getTime() ?? null
  }))
  t.teardown(() => app.close())
  await app.ready()
  return { app, clock }
}

async function login (app: FastifyInstance, user: string, ip: string, headers: Record<string, string> = BROWSER): Promise<{ token: string, sessionId: string, newDevice: boolean }> {
  const response = await app.inject({ method: 'POST', url: '/login', payload: { user }, headers: { ...headers, 'x-forwarded-for': ip } })
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  return response.json()
}

function as (token: string, ip: string): Record<string, string> {
  return { ...BROWSER, 'x-forwarded-for': ip, 'x-session-id': token }
}

test('step-up', async (t) => {
  const server = await startRedis(t)

  t.test('ASVS 7.5.3: confirmSession clears the flag of an IP change until the IP changes again', async (t) => {
    const { app } = await stepupApp(t, server)
    const { token } = await login(app, 'ann', '203.0.113.7')
    t.equal((await app.inject({ url: '/me', headers: as(token, '203.0.113.7') })).json().check, false)
    t.equal((await app.inject({ url: '/me', headers: as(token, '198.51.100.23') })).json().check, true, 'a phone moving to mobile data is flagged')
    const verified = await app.inject({ method: 'POST', url: '/verify', headers: as(token, '198.51.100.23') })
    t.same(verified.json(), { confirmed: true, check: false })
    for (let n = 0; n < 3; n++) {
      t.equal((await app.inject({ url: '/me', headers: as(token, '198.51.100.23') })).json().check, false, 'and it stays clear')
    }
    t.equal((await app.inject({ url: '/me', headers: as(token, '192.0.2.1') })).json().check, true, 'another change flags again')
    const anonymous = await app.inject({ method: 'POST', url: '/verify' })
    t.equal(anonymous.statusCode, 401)
  })

  t.test('ASVS 7.5.3: confirmSession clears a burst-of-logins flag until the next login', async (t) => {
    const { app } = await stepupApp(t, server)
    const ip = '203.0.113.7'
    await login(app, 'bob', ip)
    await login(app, 'bob', ip)
    const third = await login(app, 'bob', ip)
    t.equal((await app.inject({ url: '/me', headers: as(third.token, ip) })).json().check, true)
    await app.inject({ method: 'POST', url: '/verify', headers: as(third.token, ip) })
    t.equal((await app.inject({ url: '/me', headers: as(third.token, ip) })).json().check, false)
    await login(app, 'bob', ip)
    t.equal((await app.inject({ url: '/me', headers: as(third.token, ip) })).json().check, true, 'a new login is something new')
  })

  t.test('ASVS 7.5.1: requireFreshSession answers 403 FST_SESSION_REAUTH_REQUIRED past maxAge; confirmSession makes the session fresh', async (t) => {
    const { app, clock } = await stepupApp(t, server, { idleTimeout: '1h' })
    const ip = '203.0.113.7'
    const { token } = await login(app, 'cid', ip)
    const loginTime = clock.now
    t.same((await app.inject({ method: 'POST', url: '/email', headers: as(token, ip) })).json(), { changed: true })
    clock.now += 10 * MINUTE
    t.equal((await app.inject({ method: 'POST', url: '/email', headers: as(token, ip) })).statusCode, 200, 'exactly maxAge is still fresh')
    clock.now += 1
    const stale = await app.inject({ method: 'POST', url: '/email', headers: as(token, ip) })
    t.equal(stale.statusCode, 403)
    t.match(stale.json(), { code: 'FST_SESSION_REAUTH_REQUIRED', message: 'This action needs a recent authentication: confirm your password or second factor first' })
    t.equal((await app.inject({ url: '/me', headers: as(token, ip) })).json().authenticatedAt, loginTime, 'authenticatedAt is the login time')
    await app.inject({ method: 'POST', url: '/verify', headers: as(token, ip) })
    t.equal((await app.inject({ url: '/me', headers: as(token, ip) })).json().authenticatedAt, clock.now, 'moved by the confirmation')
    t.equal((await app.inject({ method: 'POST', url: '/email', headers: as(token, ip) })).statusCode, 200)
    t.equal((await app.inject({ method: 'POST', url: '/email' })).json().code, 'FST_SESSION_REQUIRED', 'no session: 401')
    t.throws(() => requireFreshSession('soon'), { code: 'FST_SESSION_INVALID_ARGUMENT' })
    t.throws(() => requireFreshSession(0), { code: 'FST_SESSION_INVALID_ARGUMENT' })
  })

  t.test('requireFreshSession refuses the request when the plugin is not registered', async (t) => {
    const bare = Fastify()
    bare.get('/x', { preHandler: requireFreshSession('5m') }, async () => 'through')
    t.teardown(() => bare.close())
    const response = await bare.inject({ url: '/x' })
    t.equal(response.statusCode, 500)
    t.equal(response.json().code, 'FST_SESSION_NOT_REGISTERED', 'refused like requireSession, with what to fix')
  })

  t.test('a flagged, unconfirmed session cannot end other sessions (403 FST_SESSION_SUSPICIOUS) but can end itself', async (t) => {
    const { app } = await stepupApp(t, server)
    const home = '203.0.113.7'
    const owner = await login(app, 'dee', home)
    const thief = await login(app, 'dee', home)
    const stolen = '192.0.2.66'
    for (const request of [{ method: 'DELETE' as const, url: '/sessions' }, { method: 'DELETE' as const, url: `/sessions/${owner.sessionId}` }]) {
      const refused = await app.inject({ ...request, headers: as(thief.token, stolen) })
      t.equal(refused.statusCode, 403)
      t.equal(refused.json().code, 'FST_SESSION_SUSPICIOUS')
    }
    t.equal((await app.inject({ url: '/me', headers: as(owner.token, home) })).json().user, 'dee', 'the real user is still signed in')
    const ownEnd = await app.inject({ method: 'DELETE', url: `/sessions/${thief.sessionId}`, headers: as(thief.token, stolen) })
    t.same(ownEnd.json(), { revoked: 1 }, 'ending itself always works')

    const again = await login(app, 'dee', home)
    const moved = '198.51.100.4'
    t.equal((await app.inject({ method: 'DELETE', url: '/sessions', headers: as(again.token, moved) })).statusCode, 403)
    await app.inject({ method: 'POST', url: '/verify', headers: as(again.token, moved) })
    t.same((await app.inject({ method: 'DELETE', url: '/sessions', headers: as(again.token, moved) })).json(), { revoked: 1 }, 'once confirmed it can')
  })

  t.test('request.sessionEnded says why a token stopped working: signed out, revoked elsewhere, expired; null for a stranger', async (t) => {
    const { app, clock } = await stepupApp(t, server, { idleTimeout: '30m' })
    const ip = '203.0.113.7'
    const laptop = await login(app, 'eve', ip)
    const phone = await login(app, 'eve', ip)
    await app.inject({ method: 'DELETE', url: `/sessions/${phone.sessionId}`, headers: as(laptop.token, ip) })
    const cookie = await app.inject({ url: '/me', cookies: { session_id: phone.token }, headers: { ...BROWSER, 'x-forwarded-for': ip } })
    t.same(cookie.json(), { user: null, check: false, ended: { reason: 'revoked', at: new Date(clock.now).toISOString() }, authenticatedAt: null })
    t.ok(cookie.cookies.some((c) => c.name === 'session_id' && c.value === ''), 'the dead cookie is cleared')

    await app.inject({ method: 'POST', url: '/logout', headers: as(laptop.token, ip) })
    t.match((await app.inject({ url: '/me', headers: as(laptop.token, ip) })).json(), { ended: { reason: 'signed_out' } })

    const idle = await login(app, 'eve', ip)
    clock.now += 31 * MINUTE
    t.match((await app.inject({ url: '/me', headers: as(idle.token, ip) })).json(), { user: null, ended: { reason: 'expired' } })
    const forged = `${idle.sessionId}.${'x'.repeat(43)}`
    t.same((await app.inject({ url: '/me', headers: as(forged, ip) })).json().ended, null, 'a token without the secret learns nothing')
    t.same((await app.inject({ url: '/me' })).json().ended, null)
  })

  t.test('startSession returns newDevice, and GET /sessions shows the names of devices', async (t) => {
    const { app } = await stepupApp(t, server)
    const first = await login(app, 'fay', '203.0.113.7')
    t.equal(first.newDevice, false, 'the first device of a user is not news')
    t.equal((await login(app, 'fay', '203.0.113.8')).newDevice, false)
    const iphone = { ...BROWSER, 'user-agent': 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1' }
    const phone = await login(app, 'fay', '198.51.100.23', iphone)
    t.equal(phone.newDevice, true)
    t.ok(await app.sessions.rename(phone.sessionId, { userId: 'fay', name: 'Fay’s iPhone' }))
    const list = await app.inject({ url: '/sessions', headers: as(first.token, '203.0.113.7') })
    const names = new Map(list.json().sessions.map((s: { id: string, name: string | null }) => [s.id, s.name]))
    t.equal(names.size, 3)
    t.equal(names.get(phone.sessionId), 'Fay’s iPhone')
    t.equal(names.get(first.sessionId), null)
  })

  t.test('security.knownDevices is validated at registration; false is accepted', async (t) => {
    const bad = Fastify()
    bad.register(sessionPlugin, { security: { knownDevices: 'forever' as unknown as string } })
    await t.rejects(async () => { await bad.ready() }, /knownDevices/)
    const off = Fastify()
    t.teardown(() => off.close())
    await off.register(sessionPlugin, { cleanup: false, security: { knownDevices: false } })
    await off.ready()
    t.equal(off.sessions.knownDevicesMs, 0)
  })
})
