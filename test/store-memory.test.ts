import { test } from 'tap'
import Fastify from 'fastify'
import { sessionPlugin } from '../lib'
import { MemoryStore } from '../lib/store/memory/store'
import { addScribbleRoutes, UNSCRIBBLED } from './helpers/app'
import { storeContract } from './helpers/contract'

test('store contract: memory', async (t) => {
  storeContract(t, { make: async () => new MemoryStore() })
})

test('the memory store always grants its lock: every instance cleans its own sessions', async (t) => {
  const store = new MemoryStore()
  t.equal(await store.tryLock('cleanup', 'owner-a', 1000), true)
  t.equal(await store.tryLock('cleanup', 'owner-b', 1000), true)
  t.equal(await store.release('cleanup', 'owner-b'), true)
})

test('the memory store hands each request its own metadata: a handler changing it changes nothing stored', async (t) => {
  // touchInterval 0: every request is also touched, the path that serves the session after the touch.
  for (const touchInterval of ['1m', 0]) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(sessionPlugin, { store: new MemoryStore(), cleanup: false, touchInterval })
    addScribbleRoutes(app)
    await app.ready()
    const { token, session } = (await app.inject({ method: 'POST', url: '/login' })).json() as { token: string, session: { id: string } }
    const headers = { 'x-session-id': token }
    for (let n = 0; n < 3; n++) {
      t.same((await app.inject({ url: '/scribble', headers })).json(), UNSCRIBBLED, `touchInterval ${touchInterval}: request ${n + 1} reads the stored metadata`)
    }
    t.equal(await app.sessions.update(session.id, { metadata: { plan: 'team' } }), true)
    t.same((await app.inject({ url: '/scribble', headers })).json(), { theme: 'dark', plan: 'team', added: null }, `touchInterval ${touchInterval}: an update is read at once`)
    t.same((await app.sessions.list('carol'))[0]?.metadata, { prefs: { theme: 'dark' }, plan: 'team' }, 'the stored metadata is unchanged by the handlers')
  }
})

test('a property added to Object.prototype does not become a key of the metadata a request gets', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sessionPlugin, { store: new MemoryStore(), cleanup: false })
  app.post('/login', async (_request, reply) => await reply.startSession('carol', { metadata: { plan: 'pro' } }))
  app.get('/keys', { preHandler: app.requireSession }, async (request) => ({ keys: Object.keys(request.session?.metadata ?? {}) }))
  await app.ready()
  const { token } = (await app.inject({ method: 'POST', url: '/login' })).json() as { token: string }
  const polluted = Object.prototype as Record<string, unknown>
  polluted.isAdmin = true
  try {
    t.same((await app.inject({ url: '/keys', headers: { 'x-session-id': token } })).json(), { keys: ['plan'] }, 'own keys only')
  } finally {
    delete polluted.isAdmin
  }
})
