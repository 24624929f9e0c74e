import { test } from 'tap'
import { Cluster } from 'ioredis'
import { buildApp, BROWSER, login } from './helpers/app'
import { startRedisCluster } from './helpers/redis'

test('the plugin on Redis Cluster', async (t) => {
  const cluster = await startRedisCluster(t)
  const client = new Cluster(cluster.startupNodes)
  t.teardown(() => client.quit())
  await client.ping()
  let n = 0
  const app = () => buildApp(t, { redis: client, keyPrefix: `p${n++}:` })

  t.test('login, then the token works by header and by cookie', async (t) => {
    const server = await app()
    t.equal((await server.inject({ url: '/orders' })).statusCode, 401)
    const { token, sessionId, cookie } = await login(server, 'alice')
    t.equal(cookie, token)
    const byHeader = await server.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } })
    t.same(byHeader.json(), { userId: 'alice', check: false, metadata: { plan: 'free' } })
    const byCookie = await server.inject({ url: '/orders', headers: BROWSER, cookies: { session_id: token } })
    t.same(byCookie.json(), { userId: 'alice', check: false, metadata: { plan: 'free' } })
    t.same((await server.inject({ url: '/profile', headers: { 'x-session-id': token } })).json(), { userId: 'alice', sessionId })
  })

  t.test('sessions of many users land on every master and each one works', async (t) => {
    const server = await app()
    const users = Array.from({ length: 40 }, (_, k) => `user${k}`)
    const logins = await Promise.all(users.map((user) => login(server, user)))
    const answers = await Promise.all(logins.map(({ token }) => server.inject({ url: '/profile', headers: { 'x-session-id': token } })))
    answers.forEach((answer, k) => t.equal(answer.json().userId, users[k]))
    const counts = await Promise.all(client.nodes('master').map((node) => node.dbsize()))
    t.ok(counts.every((count) => count > 0), `keys on every master: ${counts.join(', ')}`)
  })

  t.test('/sessions lists the caller\'s sessions, current one first', async (t) => {
    const server = await app()
    const first = await login(server, 'bob')
    await new Promise((resolve) => setTimeout(resolve, 5)) // distinct activity times: the order is by activity
    const second = await login(server, 'bob')
    await login(server, 'carol')
    const response = await server.inject({ url: '/sessions', headers: { 'x-session-id': second.token } })
    t.equal(response.statusCode, 200)
    const { sessions } = response.json() as { sessions: Array<{ id: string, current: boolean }> }
    t.same(sessions.map((s) => [s.id, s.current]), [[second.sessionId, true], [first.sessionId, false]])
    t.notMatch(response.body, first.token.split('.')[1] as string)
  })

  t.test('revoking one session ends it and only it; another user\'s id is a 404', async (t) => {
    const server = await app()
    const mine = await login(server, 'dave')
    const other = await login(server, 'dave')
    const stranger = await login(server, 'erin')
    const foreign = await server.inject({ method: 'DELETE', url: `/sessions/${stranger.sessionId}`, headers: { ...BROWSER, 'x-session-id': mine.token } })
    t.equal(foreign.statusCode, 404)
    t.equal((await server.inject({ url: '/profile', headers: { 'x-session-id': stranger.token } })).statusCode, 200)
    const revoked = await server.inject({ method: 'DELETE', url: `/sessions/${other.sessionId}`, headers: { ...BROWSER, 'x-session-id': mine.token } })
    t.same(revoked.json(), { revoked: 1 })
    t.equal((await server.inject({ url: '/profile', headers: { 'x-session-id': other.token } })).statusCode, 401)
    t.equal((await server.inject({ url: '/profile', headers: { 'x-session-id': mine.token } })).statusCode, 200)
  })

  t.test('revoking all other sessions leaves only the caller\'s', async (t) => {
    // Three logins in a row are a burst (flagged), which may not end other sessions: see test/stepup.test.ts.
    const server = await buildApp(t, { redis: client, keyPrefix: `p${n++}:`, security: { rapidCreationWindow: 0 } })
    const others = [await login(server, 'frank'), await login(server, 'frank')]
    const keep = await login(server, 'frank')
    const response = await server.inject({ method: 'DELETE', url: '/sessions', headers: { ...BROWSER, 'x-session-id': keep.token } })
    t.same(response.json(), { revoked: 2 })
    for (const gone of others) t.equal((await server.inject({ url: '/profile', headers: { 'x-session-id': gone.token } })).statusCode, 401)
    const listed = await server.inject({ url: '/sessions', headers: { 'x-session-id': keep.token } })
    t.same(listed.json().sessions.map((s: { id: string }) => s.id), [keep.sessionId])
  })

  t.test('logout ends the session everywhere and clears the cookie', async (t) => {
    const server = await app()
    const peer = await app()
    const { token } = await login(server, 'grace')
    t.equal((await peer.inject({ url: '/profile', headers: { 'x-session-id': token } })).statusCode, 401, 'another prefix is another namespace')
    const out = await server.inject({ method: 'POST', url: '/logout', cookies: { session_id: token } })
    t.same(out.json(), { message: 'Successfully logged out' })
    t.equal(out.cookies[0]?.value, '')
    t.equal((await server.inject({ url: '/profile', headers: { 'x-session-id': token } })).statusCode, 401)
  })

  t.test('two app instances on one cluster share sessions', async (t) => {
    const a = await buildApp(t, { redis: client, keyPrefix: 'shared:' })
    const b = await buildApp(t, { redis: client, keyPrefix: 'shared:' })
    const { token } = await login(a, 'heidi')
    t.equal((await b.inject({ url: '/profile', headers: { 'x-session-id': token } })).json().userId, 'heidi')
    t.equal((await b.inject({ method: 'POST', url: '/logout', headers: { 'x-session-id': token } })).statusCode, 200)
    t.equal((await a.inject({ url: '/profile', headers: { 'x-session-id': token } })).statusCode, 401, 'a logout on one instance ends it on the other')
  })
})
