import { test } from 'tap'
import { Redis } from 'ioredis'
import { sessionKey, shardKey } from '../lib/store/redis/keys'
import { SessionManager, type SessionManagerOptions } from '../lib/core/manager'
import { RedisStore } from '../lib/store/redis/store'
import { buildApp, BROWSER, login } from './helpers/app'
import { startRedis } from './helpers/redis'
import { scanKeys } from './helpers/redis-inspect'

test('races on a real Redis', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  const other = new Redis(server.url)
  t.teardown(() => Promise.all([client.quit(), other.quit()]))
  let n = 0

  /**
   * Two managers on one Redis and one prefix, each with its own connection and store (and tag cache), as two app
   * instances: their commands interleave in whatever order the server reads them.
   */
  function instances (options: Partial<SessionManagerOptions> = {}): [SessionManager, SessionManager, string] {
    const prefix = `r${n++}:`
    return [
      new SessionManager({ store: new RedisStore({ client, prefix }), ...options }),
      new SessionManager({ store: new RedisStore({ client: other, prefix }), ...options }),
      prefix
    ]
  }

  const scan = (pattern: string): Promise<string[]> => scanKeys(client, pattern)

  /**
   * What Redis holds for a user: session keys (the owner read through the store, whatever the record's encoding),
   * index entries, expiry-queue entries. Key names: docs/design.md.
   */
  async function holdings (prefix: string, userId: string): Promise<{ keys: string[], index: string[], queue: string[] }> {
    const reader = new RedisStore({ client, prefix })
    const keys: string[] = []
    for (const key of await scan(`${prefix}{*}:s:*`)) {
      const stored = await reader.load(key.slice(-24))
      if (stored !== null && stored !== 'corrupt' && 'userId' in stored && stored.userId === userId) keys.push(key.slice(-24))
    }
    const indexKeys = await scan(`${prefix}{*}:u:${userId}`)
    // The index holds the user's known devices too ('~' + device key): only its sessions are compared.
    const index = (await Promise.all(indexKeys.map((key) => client.zrange(key, '0', '-1')))).flat().filter((member) => !member.startsWith('~'))
    const queue: string[] = []
    for (const key of await scan(`${prefix}{*}:x`)) {
      for (const member of await client.zrange(key, '0', '-1')) if (member.slice(24) === userId) queue.push(member.slice(0, 24))
    }
    return { keys: keys.sort(), index: index.sort(), queue: queue.sort() }
  }

  t.test('parallel creates across users and instances never exceed the limit, whatever concurrent lists see', async (t) => {
    const limit = 3
    const [a, b, prefix] = instances({ maxSessionsPerUser: limit })
    const users = Array.from({ length: 6 }, (_, k) => `limit${k}`)
    let listed = 0
    let largest = 0
    const creates = users.flatMap((user) => Array.from({ length: 40 }, (_, k) => (k % 2 === 0 ? a : b).create(user)))
    const lists = Array.from({ length: 120 }, async (_, k) => {
      const sessions = await (k % 2 === 0 ? a : b).list(users[k % users.length] as string)
      listed++
      largest = Math.max(largest, sessions.length)
    })
    await Promise.all([...creates, ...lists])
    t.ok(largest <= limit, `no list saw more than ${limit} sessions (${listed} lists, largest ${largest})`)
    for (const user of users) {
      const { keys, index, queue } = await holdings(prefix, user)
      t.equal(keys.length, limit, `${user}: ${limit} session keys`)
      t.same(index, keys, `${user}: the index lists exactly the keys`)
      t.same(queue, keys, `${user}: the expiry queue holds exactly the keys`)
    }
  })

  t.test("with 'deny', exactly the limit of parallel creates succeed", async (t) => {
    const [a, b, prefix] = instances({ maxSessionsPerUser: 4, limitPolicy: 'deny' })
    const results = await Promise.allSettled(Array.from({ length: 60 }, (_, k) => (k % 2 === 0 ? a : b).create('denied')))
    t.equal(results.filter((r) => r.status === 'fulfilled').length, 4)
    t.ok(results.every((r) => r.status === 'fulfilled' || (r.reason as { code?: string }).code === 'FST_SESSION_LIMIT_REACHED'), 'the rest are refused as over the limit')
    t.equal((await holdings(prefix, 'denied')).keys.length, 4)
  })

  t.test('logout or revoke racing touches (touchInterval 0) never revives a session', async (t) => {
    // Many logins of one user in a row are a burst (flagged), and a flagged session may not end others: rule off here.
    const app = await buildApp(t, { redis: client, keyPrefix: `r${n++}:`, touchInterval: 0, security: { rapidCreationWindow: 0 } })
    const prefix = `r${n - 1}:`
    const endStatuses: number[] = []
    for (let round = 0; round < 15; round++) {
      const victim = await login(app, `toucher${round % 3}`)
      const other = await login(app, `toucher${round % 3}`)
      const touch = () => app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': victim.token } })
      const end = round % 2 === 0
        ? app.inject({ method: 'POST', url: '/logout', headers: { ...BROWSER, 'x-session-id': victim.token } })
        // From the device that logged in: another device is flagged and may not end other sessions (test/stepup.test.ts).
        : app.inject({ method: 'DELETE', url: `/sessions/${victim.sessionId}`, headers: { ...BROWSER, 'x-session-id': other.token } })
      const answers = await Promise.all([...Array.from({ length: 15 }, touch), end, ...Array.from({ length: 15 }, touch)])
      t.ok(answers.every((a) => a.statusCode === 200 || a.statusCode === 401), 'only 200 or 401 while racing')
      endStatuses.push(answers[15]?.statusCode ?? 0)
      t.equal((await touch()).statusCode, 401, `round ${round}: the session stays ended`)
      const tag = victim.sessionId.slice(0, 2)
      t.match(JSON.parse(await client.get(sessionKey(prefix, victim.sessionId)) as string), { x: round % 2 === 0 ? 'signed_out' : 'revoked' }, 'only the tombstone of an ended session is left (test/session-ended.test.ts)')
      t.equal(await client.zscore(`${prefix}{${tag}}:u:toucher${round % 3}`, victim.sessionId), null, 'no index entry')
      t.equal(await client.zscore(shardKey(prefix, tag), `${victim.sessionId}toucher${round % 3}`), null, 'no expiry entry')
    }
    t.same(endStatuses, Array.from({ length: 15 }, () => 200), 'every logout and every revoke succeeded: the touches never got in its way')
  })

  t.test('invalidateAll racing creates leaves no session the index does not list', async (t) => {
    const [a, b, prefix] = instances({ maxSessionsPerUser: 50 })
    for (let round = 0; round < 10; round++) {
      const user = `purge${round % 3}`
      const create = (k: number) => (k % 2 === 0 ? a : b).create(user)
      const results = await Promise.all([
        ...Array.from({ length: 10 }, (_, k) => create(k)),
        (round % 2 === 0 ? a : b).invalidateAll(user),
        ...Array.from({ length: 10 }, (_, k) => create(k))
      ])
      t.ok(typeof results[10] === 'number', 'invalidateAll answered')
      const { keys, index, queue } = await holdings(prefix, user)
      t.same(index, keys, `round ${round}: the index lists exactly the session keys (${keys.length})`)
      t.same(queue, keys, `round ${round}: the expiry queue holds exactly the session keys`)
      t.same((await a.list(user)).map((s) => s.id).sort(), keys, 'list agrees')
      await a.invalidateAll(user)
    }
  })

  t.test('update racing invalidate never recreates the key', async (t) => {
    const [a, b, prefix] = instances()
    for (let round = 0; round < 20; round++) {
      const { session, token } = await a.create(`updater${round % 4}`)
      const update = (k: number) => (k % 2 === 0 ? a : b).update(session.id, { metadata: { k, round }, ipAddress: `10.0.0.${k}` })
      const results = await Promise.all([
        ...Array.from({ length: 10 }, (_, k) => update(k)),
        b.invalidate(session.id),
        ...Array.from({ length: 10 }, (_, k) => update(k + 10))
      ])
      t.equal(results[10], true, 'the invalidate ended it')
      t.match(JSON.parse(await client.get(sessionKey(prefix, session.id)) as string), { x: 'signed_out' }, `round ${round}: only the tombstone is left`)
      t.equal(await a.get(token), null)
    }
  })
})
