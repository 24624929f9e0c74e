import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { test, type Test } from 'tap'
import sessionPlugin, { getSession, requireSession, type SessionPluginOptions, type StartSessionData } from '../lib/index'
import { readCookie, serializeCookie } from '../lib/plugin/cookie'
import { BROWSER, clockedApp } from './helpers/app'

const START = Date.UTC(2026, 0, 1)
const MINUTE = 60_000
const DAY = 24 * 60 * MINUTE

/**
 * An app on real Redis with a hand-driven clock. POST /login takes the startSession options in its body (`data`),
 * POST /signout calls reply.endSession(), POST /rotate calls reply.rotateSession().
 */
async function cookieApp (t: Test, options: SessionPluginOptions = {}): Promise<{ app: FastifyInstance, clock: { now: number } }> {
  const { app, clock } = await clockedApp(t, options, START)
  app.post<{ Body: { user: unknown, data?: StartSessionData } }>('/login', async (request, reply) => {
    const { token, session } = await reply.startSession(request.body.user as string, request.body.data)
    return { token, sessionId: session.id }
  })
  app.post('/signout', async (request, reply) => ({ ended: await reply.endSession() }))
  app.post<{ Body: { persistent?: boolean } }>('/rotate', async (request, reply) => {
    const rotated = await reply.rotateSession({ persistent: request.body?.persistent })
    return { token: rotated?.token ?? null }
  })
  app.get('/orders', { preHandler: requireSession }, async (request) => ({ userId: getSession(request).userId }))
  await app.ready()
  return { app, clock }
}

function setCookieLine (response: LightMyRequestResponse): string {
  const header = response.headers['set-cookie']
  const lines = Array.isArray(header) ? header : header === undefined ? [] : [header]
  const line = lines.find((l) => l.startsWith('session_id=') || l.startsWith('__Host-session_id='))
  if (line === undefined) throw new Error(`no session Set-Cookie in ${JSON.stringify(header)}`)
  return line
}

/** The attributes of a Set-Cookie line other than the value, Max-Age and Expires. */
function attributes (line: string): string[] {
  return line.split('; ').slice(1).filter((part) => !part.startsWith('Max-Age=') && !part.startsWith('Expires=')).sort()
}

test("remember-me: startSession(user, { ttl: '30d' }) sets Max-Age to the session's absolute deadline, not the plugin's absoluteTimeout", async (t) => {
  const { app } = await cookieApp(t)
  const remembered = await app.inject({ method: 'POST', url: '/login', payload: { user: 'rita', data: { ttl: '30d' } }, headers: BROWSER })
  t.equal(remembered.statusCode, 200)
  t.match(setCookieLine(remembered), /; Max-Age=2592000;/)
  const usual = await app.inject({ method: 'POST', url: '/login', payload: { user: 'rita' }, headers: BROWSER })
  t.match(setCookieLine(usual), /; Max-Age=86400;/, 'the default follows absoluteTimeout (24 h)')
})

test('a browser-session cookie: startSession(user, { persistent: false }) and rotateSession({ persistent: false }) set no Max-Age', async (t) => {
  const { app } = await cookieApp(t)
  const login = await app.inject({ method: 'POST', url: '/login', payload: { user: 'sam', data: { persistent: false } }, headers: BROWSER })
  const line = setCookieLine(login)
  t.notMatch(line, /Max-Age|Expires/)
  t.match(line, /HttpOnly/)
  const token = login.json().token as string
  t.equal((await app.inject({ url: '/orders', headers: BROWSER, cookies: { session_id: token } })).json().userId, 'sam')
  const rotated = await app.inject({ method: 'POST', url: '/rotate', payload: { persistent: false }, headers: BROWSER, cookies: { session_id: token } })
  t.notMatch(setCookieLine(rotated), /Max-Age/)
  const persistent = await app.inject({ method: 'POST', url: '/rotate', payload: {}, headers: BROWSER, cookies: { session_id: rotated.json().token } })
  t.match(setCookieLine(persistent), /Max-Age=86400/)
  const bad = await app.inject({ method: 'POST', url: '/login', payload: { user: 'sam', data: { persistent: 'no' } }, headers: BROWSER })
  t.equal(bad.json().code, 'FST_SESSION_INVALID_ARGUMENT')
})

test('remember-me: a session started with { ttl: "30d", idleTimeout: "7d" } survives a day without requests, a plain one idles out after 30 minutes', async (t) => {
  const { app, clock } = await cookieApp(t)
  const login = await app.inject({ method: 'POST', url: '/login', payload: { user: 'tess', data: { ttl: '30d', idleTimeout: '7d' } }, headers: BROWSER })
  const token = login.json().token as string
  clock.now += DAY
  t.equal((await app.inject({ url: '/orders', headers: BROWSER, cookies: { session_id: token } })).json().userId, 'tess', 'alive after 24 idle hours')
  const plain = await app.inject({ method: 'POST', url: '/login', payload: { user: 'tess' }, headers: BROWSER })
  clock.now += 31 * MINUTE
  t.equal((await app.inject({ url: '/orders', headers: BROWSER, cookies: { session_id: plain.json().token } })).statusCode, 401, 'a plain session still idles out after 30 minutes')
})

test('the clearing Set-Cookie carries the Secure, SameSite, Path, Domain and Partitioned attributes of the setting one', async (t) => {
  const configs: Array<[string, SessionPluginOptions['cookie'], Record<string, string>]> = [
    ['sameSite none over HTTPS', { sameSite: 'none' }, { 'x-forwarded-proto': 'https' }],
    ['partitioned, path and domain', { sameSite: 'none', partitioned: true, path: '/app', domain: 'example.com' }, { 'x-forwarded-proto': 'https' }],
    ['__Host- prefix', { hostPrefix: true, sameSite: 'strict' }, {}],
    ['plain HTTP, lax', {}, {}]
  ]
  for (const [name, cookie, headers] of configs) {
    const { app } = await cookieApp(t, { cookie })
    const login = await app.inject({ method: 'POST', url: '/login', payload: { user: 'una' }, headers: { ...BROWSER, ...headers } })
    const set = setCookieLine(login)
    const token = login.json().token as string
    const cookieName = set.slice(0, set.indexOf('='))
    const out = await app.inject({ method: 'POST', url: '/signout', headers: { ...BROWSER, ...headers }, cookies: { [cookieName]: token } })
    const cleared = setCookieLine(out)
    t.match(cleared, new RegExp(`^${cookieName}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT;`), `${name}: cleared`)
    t.same(attributes(cleared), attributes(set), `${name}: same attributes (${attributes(set).join('; ')})`)
    if (name !== 'plain HTTP, lax') t.ok(attributes(cleared).includes('Secure'), `${name}: Secure`)
  }
})

test('every response that hands out a token has Cache-Control: no-store, with and without the cookie transport', async (t) => {
  for (const cookie of [undefined, false] as const) {
    const { app } = await cookieApp(t, cookie === false ? { cookie: false } : {})
    const login = await app.inject({ method: 'POST', url: '/login', payload: { user: 'vic' }, headers: BROWSER })
    t.equal(login.headers['cache-control'], 'no-store', `login, cookie ${String(cookie)}`)
    const rotated = await app.inject({ method: 'POST', url: '/rotate', payload: {}, headers: { ...BROWSER, 'x-session-id': login.json().token } })
    t.type(rotated.json().token, 'string')
    t.equal(rotated.headers['cache-control'], 'no-store', `rotate, cookie ${String(cookie)}`)
    if (cookie === false) t.equal(login.headers['set-cookie'], undefined, 'no cookie with cookie: false')
  }
})

test('a failed login leaves the device signed in: a bad user id or bad metadata is refused before the previous session is touched', async (t) => {
  const { app } = await cookieApp(t)
  const first = await app.inject({ method: 'POST', url: '/login', payload: { user: 'walt' }, headers: BROWSER })
  const token = first.json().token as string
  const cases: Array<[unknown, StartSessionData | undefined, string]> = [
    ['', undefined, 'FST_SESSION_INVALID_USER_ID'],
    ['bad\u0000id', undefined, 'FST_SESSION_INVALID_USER_ID'],
    ['walt', { metadata: { __proto__x: 1, constructor: 2 } as Record<string, unknown> }, 'FST_SESSION_INVALID_METADATA'],
    ['walt', { metadata: { big: 'x'.repeat(10_000) } }, 'FST_SESSION_METADATA_TOO_LARGE']
  ]
  for (const [user, data, code] of cases) {
    const failed = await app.inject({ method: 'POST', url: '/login', payload: { user, data }, headers: BROWSER, cookies: { session_id: token } })
    t.equal(failed.json().code, code, `${JSON.stringify(user)}: ${code}`)
    t.equal(failed.headers['set-cookie'], undefined, 'no cookie change')
    t.equal((await app.inject({ url: '/orders', headers: BROWSER, cookies: { session_id: token } })).json().userId, 'walt', 'still signed in')
  }
})

test('the Cookie header is read the way @fastify/cookie reads it: first value, quotes removed, percent-decoded', async (t) => {
  t.equal(readCookie('a=1; session_id=tok; session_id=other', 'session_id'), 'tok', 'the first value wins')
  t.equal(readCookie('xsession_id=no; session_id="quoted"', 'session_id'), 'quoted', 'a longer name is another cookie')
  t.equal(readCookie('session_id=a%2Bb%3D', 'session_id'), 'a+b=', 'percent-encoded (signed values hold + and =)')
  t.equal(readCookie('session_id=%E0%A4%A', 'session_id'), '%E0%A4%A', 'broken encoding: the raw value, which no token matches')
  t.equal(readCookie('other=1; broken; =x; xsession_id=1', 'session_id'), undefined)
  t.equal(readCookie(undefined, 'session_id'), undefined)
  t.equal(serializeCookie('s', 'a+b=', { path: '/', domain: undefined, httpOnly: true, sameSite: 'lax', secure: false, partitioned: false }), 's=a%2Bb%3D; Path=/; HttpOnly; SameSite=Lax')
})

test('startSession refuses a ttl or idleTimeout outside the documented bounds before the previous session is touched', async (t) => {
  const { app } = await cookieApp(t)
  const first = await app.inject({ method: 'POST', url: '/login', payload: { user: 'xena' }, headers: BROWSER })
  const token = first.json().token as string
  const cases: Array<[StartSessionData, string]> = [
    [{ ttl: '36500d' }, 'fastify-distributed-session: option "ttl" must be a duration from 1 second to 400 days (milliseconds, or a string such as \'500ms\', \'30s\', \'30m\', \'24h\', \'7d\'), got "36500d"'],
    [{ ttl: 0 }, 'fastify-distributed-session: option "ttl" must be a duration from 1 second to 400 days (milliseconds, or a string such as \'500ms\', \'30s\', \'30m\', \'24h\', \'7d\'), got 0'],
    [{ idleTimeout: '30 minutes' }, 'fastify-distributed-session: option "idleTimeout" must be a duration from 1 second to 365 days (milliseconds, or a string such as \'500ms\', \'30s\', \'30m\', \'24h\', \'7d\'), got "30 minutes"']
  ]
  for (const [data, message] of cases) {
    const failed = await app.inject({ method: 'POST', url: '/login', payload: { user: 'xena', data }, headers: BROWSER, cookies: { session_id: token } })
    t.same(failed.json(), { statusCode: 500, code: 'FST_SESSION_INVALID_OPTION', error: 'Internal Server Error', message })
    t.equal((await app.inject({ url: '/orders', headers: BROWSER, cookies: { session_id: token } })).json().userId, 'xena', 'still signed in')
  }
})

test('a request still carrying the cookie of a rotated or replaced session does not clear the newer cookie; one of a revoked session does', async (t) => {
  const { app } = await cookieApp(t, { cookie: { secure: false } })
  const loggedIn = await app.inject({ method: 'POST', url: '/login', payload: { user: 'uma' }, headers: BROWSER })
  const oldCookie = setCookieLine(loggedIn).split(';')[0] as string
  await app.inject({ method: 'POST', url: '/rotate', payload: {}, headers: { ...BROWSER, cookie: oldCookie } })
  // A request sent before the rotation's answer arrived, answered after it.
  const late = await app.inject({ url: '/orders', headers: { ...BROWSER, cookie: oldCookie } })
  t.equal(late.statusCode, 401)
  t.equal(late.headers['set-cookie'], undefined, 'no clearing cookie after a rotation')
  const again = await app.inject({ method: 'POST', url: '/login', payload: { user: 'uma' }, headers: BROWSER })
  const revokedCookie = setCookieLine(again).split(';')[0] as string
  // Revoke the new login's own session (both of uma's sessions have the same last activity on the fixed clock).
  await app.sessions.invalidate((again.json() as { sessionId: string }).sessionId, { userId: 'uma', reason: 'revoked' })
  const revoked = await app.inject({ url: '/orders', headers: { ...BROWSER, cookie: revokedCookie } })
  t.match(setCookieLine(revoked), /^session_id=; Max-Age=0/, 'a revoked session\'s cookie is cleared')
})

test('cookie options that would make browsers drop or split the cookie are refused or made Secure', async (t) => {
  const { app } = await cookieApp(t, { cookie: { sameSite: 'none', partitioned: true } })
  const loggedIn = await app.inject({ method: 'POST', url: '/login', payload: { user: 'vic' }, headers: BROWSER })
  t.match(setCookieLine(loggedIn), /; Secure/, 'SameSite=None and Partitioned are always Secure, even over plain HTTP')
  for (const [cookie, name] of [[{ path: '/a;b' }, 'cookie.path'], [{ domain: 'a.com; Secure' }, 'cookie.domain']] as const) {
    const bad = Fastify()
    t.teardown(() => bad.close())
    await t.rejects(async () => { await bad.register(sessionPlugin, { cookie, cleanup: false }) }, { code: 'FST_SESSION_INVALID_OPTION', message: new RegExp(`option "${name.replace('.', '\\.')}"`) }, name)
  }
  const header = Fastify()
  t.teardown(() => header.close())
  await t.rejects(async () => { await header.register(sessionPlugin, { header: 'Cookie', cleanup: false }) }, { code: 'FST_SESSION_INVALID_OPTION', message: /option "header" must not be a header/ })
})

test('the built-in routes answer with Cache-Control: no-store: they show ids, IPs and devices', async (t) => {
  const { app } = await cookieApp(t)
  const { token } = (await app.inject({ method: 'POST', url: '/login', payload: { user: 'wes' }, headers: BROWSER })).json() as { token: string }
  for (const url of ['/profile', '/sessions']) {
    const response = await app.inject({ url, headers: { ...BROWSER, 'x-session-id': token } })
    t.equal(response.statusCode, 200, url)
    t.equal(response.headers['cache-control'], 'no-store', url)
  }
  t.equal((await app.inject({ url: '/sessions' })).headers['cache-control'], 'no-store', 'the 401 too')
})
