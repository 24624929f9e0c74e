import Fastify from 'fastify'
import { test } from 'tap'
import sessionPlugin, { MemoryStore } from '../lib/index'
import { hashSecret, newSecret, VerifiedSecrets } from '../lib/core/token'
import { BROWSER } from './helpers/app'

test('a remembered secret opens its session only while it is the one whose hash is stored', async (t) => {
  const secrets = new VerifiedSecrets(2)
  const secret = newSecret()
  const stored = hashSecret(secret)
  t.equal(secrets.matches('s1', secret, stored), true, 'verified by hashing, then remembered')
  t.equal(secrets.size, 1)
  t.equal(secrets.matches('s1', secret, stored), true, 'verified from memory')
  const guess = secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A')
  t.equal(secrets.matches('s1', guess, stored), false, 'a secret one character off is refused')
  t.equal(secrets.matches('s1', secret, stored), true, 'a refused guess does not displace the remembered secret')
  const rotated = newSecret()
  t.equal(secrets.matches('s1', secret, hashSecret(rotated)), false, 'after a rotation the old secret no longer matches')
  t.equal(secrets.matches('s1', rotated, hashSecret(rotated)), true, 'the new one does')
  t.equal(secrets.matches('s2', secret, stored), true)
  t.equal(secrets.matches('s3', secret, stored), true)
  t.equal(secrets.size, 2, 'bounded: the oldest entry made room')
  t.equal(secrets.matches('s2', '', stored), false, 'an empty secret is refused')
})

test('the request path answers without a promise when the store can, and the same whether it can or not', async (t) => {
  // The same store, once with its loadNow (the synchronous path) and once without (the store read path).
  for (const isSync of [true, false]) {
    const store = new MemoryStore()
    if (!isSync) Object.assign(store, { loadNow: undefined })
    let reads = 0
    const load = store.load.bind(store)
    store.load = async (sessionId) => { reads++; return await load(sessionId) }
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(sessionPlugin, { store, cleanup: false })
    app.post('/login', async (_request, reply) => await reply.startSession('erin'))
    app.get('/me', { preHandler: app.requireSession }, async (request) => ({ user: request.session?.userId }))
    await app.ready()
    const { token } = (await app.inject({ method: 'POST', url: '/login', headers: BROWSER })).json() as { token: string }
    const label = isSync ? 'loadNow' : 'load'
    t.same((await app.inject({ url: '/me', headers: { ...BROWSER, 'x-session-id': token } })).json(), { user: 'erin' }, `${label}: served`)
    t.equal((await app.inject({ url: '/me', headers: { ...BROWSER, 'x-session-id': token.slice(0, -1) + 'x' } })).statusCode, 401, `${label}: a wrong secret is refused`)
    t.equal((await app.inject({ url: '/me', headers: BROWSER })).statusCode, 401, `${label}: no token`)
    t.equal(reads, isSync ? 0 : 2, isSync ? 'no store read went through load' : 'every read went through load')
  }
})

test('a store whose loadNow or load throws (instead of rejecting) is a store failure: 503 with the documented code, or anonymous under fail-open', async (t) => {
  for (const [failOpen, broken] of [[false, 'loadNow'], [true, 'loadNow'], [false, 'load'], [true, 'load']] as const) {
    const store = new MemoryStore()
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(sessionPlugin, { store, cleanup: false, onStoreError: failOpen ? 'fail-open' : 'fail-closed' })
    app.post('/login', async (_request, reply) => await reply.startSession('fred'))
    app.get('/me', async (request) => ({ anonymous: request.session === null }))
    await app.ready()
    const { token } = (await app.inject({ method: 'POST', url: '/login', headers: BROWSER })).json() as { token: string }
    if (broken === 'loadNow') {
      store.loadNow = () => { throw new Error('the cache is broken') }
    } else {
      Object.assign(store, { loadNow: undefined })
      store.load = () => { throw new Error('the cache is broken') }
    }
    const response = await app.inject({ url: '/me', headers: { ...BROWSER, 'x-session-id': token } })
    if (failOpen) {
      t.same(response.json(), { anonymous: true }, `${broken} throws, fail-open: served anonymously`)
    } else {
      t.equal(response.statusCode, 503, `${broken} throws: 503`)
      t.equal(response.json().code, 'FST_SESSION_STORE_UNAVAILABLE')
      t.notMatch(response.body, /the cache is broken/, 'the cause stays in the log')
    }
  }
})

test('a custom store whose load returns a thenable rather than a promise still serves the session', async (t) => {
  const store = new MemoryStore()
  Object.assign(store, { loadNow: undefined })
  const load = store.load.bind(store)
  // A thenable that is not a native promise, as some promise libraries return.
  store.load = ((sessionId: string) => ({ then: (resolve: (value: unknown) => unknown, reject: (error: unknown) => unknown) => load(sessionId).then(resolve, reject) })) as unknown as typeof store.load
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sessionPlugin, { store, cleanup: false })
  app.post('/login', async (_request, reply) => await reply.startSession('hana'))
  app.get('/me', { preHandler: app.requireSession }, async (request) => ({ user: request.session?.userId }))
  await app.ready()
  const { token } = (await app.inject({ method: 'POST', url: '/login', headers: BROWSER })).json() as { token: string }
  t.same((await app.inject({ url: '/me', headers: { ...BROWSER, 'x-session-id': token } })).json(), { user: 'hana' })
})

test('a suspicious-session handler runs on either path, plain or async, and its throw or rejection is the response', async (t) => {
  const kinds = ['plain', 'async', 'throws', 'rejects without an error', 'throws null'] as const
  // isSync: the memory store answers at once; otherwise the same store without loadNow (the store read path).
  for (const isSync of [true, false]) {
    for (const kind of kinds) {
      const calls: string[] = []
      const store = new MemoryStore()
      if (!isSync) Object.assign(store, { loadNow: undefined })
      const app = Fastify({ trustProxy: true })
      t.teardown(() => app.close())
      const policies = {
        plain: (_request: unknown, report: { reasons: string[] }) => { calls.push(report.reasons.join()) },
        async: async (_request: unknown, report: { reasons: string[] }) => { await new Promise((resolve) => setImmediate(resolve)); calls.push(report.reasons.join()) },
        throws: () => { throw Object.assign(new Error('step up first'), { statusCode: 403 }) },
        // A falsy rejection must not read as success: the request would be served.
        'rejects without an error': async () => { await Promise.resolve(); throw undefined }, // eslint-disable-line no-throw-literal -- the case under test
        'throws null': () => { throw null } // eslint-disable-line no-throw-literal -- the case under test
      }
      await app.register(sessionPlugin, { store, cleanup: false, security: { onSuspicious: policies[kind] } })
      app.post('/login', async (_request, reply) => await reply.startSession('gina'))
      app.get('/me', async (request) => ({ check: request.requiresSecurityCheck, calls: calls.length }))
      await app.ready()
      const { token } = (await app.inject({ method: 'POST', url: '/login', headers: { ...BROWSER, 'x-forwarded-for': '10.0.0.1' } })).json() as { token: string }
      const response = await app.inject({ url: '/me', headers: { ...BROWSER, 'x-forwarded-for': '192.0.2.9', 'x-session-id': token } })
      const path = isSync ? 'synchronous path' : 'store read path'
      if (kind === 'throws') {
        t.equal(response.statusCode, 403, `${path}, throws: its error is the response`)
      } else if (kind === 'rejects without an error' || kind === 'throws null') {
        t.equal(response.statusCode, 500, `${path}, ${kind}: refused, not served`)
        t.notMatch(response.body, /check/, `${path}, ${kind}: the handler did not run`)
      } else {
        t.same(response.json(), { check: true, calls: 1 }, `${path}, ${kind}: ran before the handler, once`)
        t.match(calls[0], /ip/, `${path}, ${kind}: the report names the IP change`)
      }
    }
  }
})

test('onStoreError fail-open: a failed store read serves the request as anonymous even when the logger throws', async (t) => {
  const store = new MemoryStore()
  Object.assign(store, { loadNow: undefined })
  const app = Fastify({ logger: { level: 'warn', stream: { write () { throw new Error('the log sink is down') } } } })
  t.teardown(() => app.close())
  await app.register(sessionPlugin, { store, cleanup: false, onStoreError: 'fail-open' })
  app.post('/login', async (_request, reply) => await reply.startSession('ivy'))
  app.get('/me', async (request) => ({ user: request.session?.userId ?? null }))
  await app.ready()
  const { token } = (await app.inject({ method: 'POST', url: '/login', headers: BROWSER })).json() as { token: string }
  store.load = async () => { throw new Error('connection lost') }
  const response = await app.inject({ url: '/me', headers: { ...BROWSER, 'x-session-id': token } })
  t.equal(response.statusCode, 200)
  t.same(response.json(), { user: null }, 'anonymous: the throwing logger did not turn it into a 500')
})
