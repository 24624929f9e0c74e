import fastifyCookie from '@fastify/cookie'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { test, type Test } from 'tap'
import sessionPlugin, { getSession, requireSession } from '../lib/index'
import { BROWSER, buildApp, login } from './helpers/app'
import { startRedis } from './helpers/redis'
import { commandsProcessed } from './helpers/redis-inspect'

const NOT_REGISTERED = {
  statusCode: 500,
  code: 'FST_SESSION_NOT_REGISTERED',
  error: 'Internal Server Error',
  message: 'fastify-distributed-session is not registered for this route: register the plugin on the root instance (or in a parent of the context that declares this route) before the routes that use requireSession'
}

function closing (t: Test, app: FastifyInstance): FastifyInstance {
  t.teardown(() => app.close())
  return app
}

test('requireSession refuses with 500 FST_SESSION_NOT_REGISTERED in a sibling context of the plugin, never lets the request through', async (t) => {
  const app = closing(t, Fastify())
  let ordersServed = 0
  await app.register(async function accounts (scope) {
    await scope.register(sessionPlugin, { cleanup: false })
    scope.post<{ Body: { user: string } }>('/login', async (request, reply) => (await reply.startSession(request.body.user)))
    scope.get('/me', { preHandler: requireSession }, async (request) => ({ userId: getSession(request).userId }))
  })
  await app.register(async function shop (scope) {
    scope.get('/orders', { preHandler: requireSession }, async () => {
      ordersServed++
      return { orders: ['secret'] }
    })
    scope.get('/cart', async (request) => ({ userId: getSession(request).userId }))
  })
  await app.ready()
  const anonymous = await app.inject({ url: '/orders' })
  t.equal(anonymous.statusCode, 500)
  t.same(anonymous.json(), NOT_REGISTERED)
  const { token } = (await app.inject({ method: 'POST', url: '/login', payload: { user: 'ann' } })).json() as { token: string }
  const withToken = await app.inject({ url: '/orders', headers: { 'x-session-id': token } })
  t.same(withToken.json(), NOT_REGISTERED, 'a valid token does not open a route the plugin does not guard')
  t.same((await app.inject({ url: '/cart', headers: { 'x-session-id': token } })).json(), NOT_REGISTERED, 'getSession refuses the same way')
  t.equal(ordersServed, 0)
  t.same((await app.inject({ url: '/me', headers: { 'x-session-id': token } })).json(), { userId: 'ann' }, 'the context that registered it works')
  t.equal((await app.inject({ url: '/me' })).json().code, 'FST_SESSION_REQUIRED')
})

test('the named requireSession and getSession work in child contexts of the plugin, and app.requireSession is the same hook', async (t) => {
  const app = closing(t, Fastify())
  await app.register(sessionPlugin, { cleanup: false })
  t.equal(app.requireSession, requireSession)
  app.post<{ Body: { user: string } }>('/login', async (request, reply) => (await reply.startSession(request.body.user)))
  await app.register(async function child (scope) {
    scope.get('/inner', { preHandler: requireSession }, async (request) => {
      const session = getSession(request)
      return { userId: session.userId }
    })
    scope.get('/soft', async (request) => {
      try {
        return { userId: getSession(request).userId }
      } catch (error) {
        return { code: (error as { code: string }).code, statusCode: (error as { statusCode: number }).statusCode }
      }
    })
  }, { prefix: '/child' })
  await app.ready()
  const { token } = (await app.inject({ method: 'POST', url: '/login', payload: { user: 'bea' } })).json() as { token: string }
  t.same((await app.inject({ url: '/child/inner', headers: { 'x-session-id': token } })).json(), { userId: 'bea' })
  t.equal((await app.inject({ url: '/child/inner' })).statusCode, 401)
  t.same((await app.inject({ url: '/child/soft' })).json(), { code: 'FST_SESSION_REQUIRED', statusCode: 401 })
})

test('registering the plugin twice fails at ready() naming the plugin', async (t) => {
  const app = closing(t, Fastify())
  app.register(sessionPlugin, { cleanup: false })
  app.register(sessionPlugin, { cleanup: false })
  await t.rejects(async () => { await app.ready() }, {
    code: 'FST_SESSION_ALREADY_REGISTERED',
    message: 'fastify-distributed-session is already registered in this context or a parent of it: register it once, on the root instance'
  })
})

test("an app route on a built-in route's path fails at ready() naming the plugin and routes.prefix / routes: false, before or after the plugin", async (t) => {
  const before = closing(t, Fastify())
  before.get('/profile', async () => ({ mine: true }))
  before.register(sessionPlugin, { cleanup: false })
  await t.rejects(async () => { await before.ready() }, {
    code: 'FST_SESSION_INVALID_OPTION',
    message: 'fastify-distributed-session: option "routes" adds GET /profile, which the app declares too: move the plugin\'s routes with routes: { prefix: \'/auth\' } or leave them out with routes: false'
  })
  const after = closing(t, Fastify())
  await after.register(sessionPlugin, { cleanup: false })
  t.throws(() => after.get('/profile', async () => ({ mine: true })), { code: 'FST_SESSION_INVALID_OPTION', message: /option "routes" adds GET \/profile.*routes: \{ prefix: '\/auth' \}.*routes: false/ })
  const moved = closing(t, Fastify())
  moved.get('/profile', async () => ({ mine: true }))
  await moved.register(sessionPlugin, { cleanup: false, routes: { prefix: '/auth' } })
  moved.post('/logout', async () => ({ mine: true }))
  await t.resolves(async () => { await moved.ready() }, 'routes: { prefix } fixes it')
  t.same((await moved.inject({ url: '/profile' })).json(), { mine: true })
})

test('@fastify/cookie registered before or after the plugin, or parsing on preHandler or not at all, never loses the session', async (t) => {
  const setups: Array<[string, (app: FastifyInstance) => Promise<void>]> = [
    ['without @fastify/cookie', async (app) => { await app.register(sessionPlugin, { cleanup: false }) }],
    ['before', async (app) => { await app.register(fastifyCookie); await app.register(sessionPlugin, { cleanup: false }) }],
    ['after', async (app) => { await app.register(sessionPlugin, { cleanup: false }); await app.register(fastifyCookie) }],
    ["hook: 'preHandler'", async (app) => { await app.register(fastifyCookie, { hook: 'preHandler' }); await app.register(sessionPlugin, { cleanup: false }) }],
    ['hook: false', async (app) => { await app.register(fastifyCookie, { hook: false }); await app.register(sessionPlugin, { cleanup: false }) }]
  ]
  for (const [name, setup] of setups) {
    const app = closing(t, Fastify())
    await setup(app)
    app.post<{ Body: { user: string } }>('/login', async (request, reply) => {
      if (typeof reply.setCookie === 'function') reply.setCookie('theme', 'dark')
      return await reply.startSession(request.body.user)
    })
    app.get('/orders', { preHandler: requireSession }, async (request) => ({ userId: getSession(request).userId }))
    await app.ready()
    const response = await app.inject({ method: 'POST', url: '/login', payload: { user: 'cat' }, headers: BROWSER })
    t.equal(response.statusCode, 200, `${name}: login`)
    const cookie = response.cookies.find((c) => c.name === 'session_id')?.value ?? ''
    t.not(cookie, '', `${name}: the session cookie is set`)
    if (name !== 'without @fastify/cookie') t.ok(response.cookies.some((c) => c.name === 'theme'), `${name}: the app's own cookie is kept`)
    const orders = await app.inject({ url: '/orders', headers: BROWSER, cookies: { session_id: cookie, theme: 'dark' } })
    t.same(orders.json(), { userId: 'cat' }, `${name}: the next request is signed in`)
  }
})

test('an empty, "undefined" or "null" session header counts as no header: the cookie still signs the request in', async (t) => {
  const app = await buildApp(t)
  const { cookie } = await login(app, 'dan')
  for (const value of ['', 'undefined', 'null', ' undefined ']) {
    const response = await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': value }, cookies: { session_id: cookie } })
    t.equal(response.json().userId, 'dan', `header ${JSON.stringify(value)}`)
  }
  const bogus = await app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': 'nope' }, cookies: { session_id: cookie } })
  t.equal(bogus.statusCode, 401, 'any other header value still wins over the cookie')
})

test('a request that matches no route, or a route with config: { session: false }, costs no store call', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const app = closing(t, Fastify())
  await app.register(sessionPlugin, { redis: client, cleanup: false })
  app.post<{ Body: { user: string } }>('/login', async (request, reply) => (await reply.startSession(request.body.user)))
  app.get('/static/app.js', { config: { session: false } }, async (request) => ({ session: request.session }))
  app.get('/orders', { preHandler: requireSession }, async (request) => ({ userId: getSession(request).userId }))
  await app.ready()
  const { token } = (await app.inject({ method: 'POST', url: '/login', payload: { user: 'eve' } })).json() as { token: string }
  const before = await commandsProcessed(client)
  for (let n = 0; n < 20; n++) {
    t.equal((await app.inject({ url: '/favicon.ico', cookies: { session_id: token } })).statusCode, 404)
    t.same((await app.inject({ url: '/static/app.js', cookies: { session_id: token } })).json(), { session: null })
  }
  t.equal(await commandsProcessed(client) - before, 1, 'only the INFO that counts')
  t.equal((await app.inject({ url: '/orders', cookies: { session_id: token } })).json().userId, 'eve')
  t.equal(await commandsProcessed(client) - before, 3, 'a routed request loads its session: one GET (and the INFO)')
})

test('requireSession used as an onRequest hook that runs before the plugin\'s refuses with FST_SESSION_HOOK_TOO_EARLY', async (t) => {
  const app = closing(t, Fastify())
  app.addHook('onRequest', requireSession)
  await app.register(sessionPlugin, { cleanup: false })
  app.get('/orders', async () => ({ orders: ['secret'] }))
  await app.ready()
  const response = await app.inject({ url: '/orders' })
  t.same(response.json(), {
    statusCode: 500,
    code: 'FST_SESSION_HOOK_TOO_EARLY',
    error: 'Internal Server Error',
    message: 'requireSession ran before fastify-distributed-session loaded the session: use it as a preValidation or preHandler hook, or as an onRequest hook added after the plugin'
  })
  const later = closing(t, Fastify())
  await later.register(sessionPlugin, { cleanup: false })
  later.addHook('onRequest', requireSession)
  later.get('/orders', async () => ({ orders: ['secret'] }))
  await later.ready()
  t.equal((await later.inject({ url: '/orders' })).json().code, 'FST_SESSION_REQUIRED', 'an onRequest hook added after the plugin works')
})
