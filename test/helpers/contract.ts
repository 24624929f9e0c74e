import type { Test } from 'tap'
import { SessionManager, type SessionManagerOptions } from '../../lib/core/manager'
import type { Store } from '../../lib/store/types'
import { stepupContract } from './stepup-contract'

/**
 * The store contract: the same behaviour from every store (Redis, Redis Cluster, memory), through the manager.
 * `make` builds a fresh, empty store for one subtest; `dump`, when given, returns every key and value the
 * store holds as text (used to prove no token is ever stored).
 */
export interface ContractTarget {
  make: (t: Test) => Promise<Store>
  dump?: () => Promise<string>
  /** Number of commands the backing server has processed (for "no command" assertions). */
  commandCount?: () => Promise<number>
}

const MINUTE = 60_000

export function storeContract (t: Test, target: ContractTarget): void {
  t.test('issue 14: step-up, ended sessions, devices', async (t) => stepupContract(t, target))
  let clock = Date.UTC(2026, 0, 1)
  async function manager (t: Test, options: Partial<SessionManagerOptions> = {}): Promise<SessionManager> {
    const store = await target.make(t)
    clock = Date.now()
    return new SessionManager({ store, now: () => clock, ...options })
  }

  t.test('ASVS 7.2.3: a token carries a 256-bit CSPRNG secret, opens its session and is never exposed by it', async (t) => {
    const m = await manager(t)
    const { token, session } = await m.create('alice', { ipAddress: '10.0.0.1', userAgent: 'UA/1', metadata: { plan: 'pro' } })
    t.match(token, /^[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{43}$/)
    t.equal(session.userId, 'alice')
    t.not(session.id, token)
    t.notOk(token.startsWith(session.id + session.id))
    const got = await m.get(token)
    t.ok(got)
    t.equal(got?.id, session.id)
    t.same(got?.metadata, { plan: 'pro' })
    t.equal(got?.ipAddress, '10.0.0.1')
    t.equal(got?.expiresAt.toISOString(), new Date(clock + 30 * MINUTE).toISOString())
    t.notMatch(JSON.stringify(got), token.split('.')[1] as string)
  })

  t.test('a token with a wrong secret or a wrong id opens nothing', async (t) => {
    const m = await manager(t)
    const { token, session } = await m.create('alice')
    const secret = token.split('.')[1] as string
    const flipped = secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A')
    t.equal(await m.get(`${session.id}.${flipped}`), null)
    t.equal(await m.get(`${session.id.slice(0, -1)}${session.id.endsWith('A') ? 'B' : 'A'}.${secret}`), null)
    t.equal(await m.get(session.id), null, 'the public id alone is not a token')
    t.ok(await m.get(token))
  })

  t.test('a malformed token is rejected without any store call', async (t) => {
    const m = await manager(t)
    let calls = 0
    const load = m.store.load.bind(m.store)
    m.store.load = async (id: string) => { calls++; return await load(id) }
    const loadNow = m.store.loadNow?.bind(m.store)
    if (loadNow !== undefined) m.store.loadNow = (id: string) => { calls++; return loadNow(id) }
    const before = target.commandCount === undefined ? 0 : await target.commandCount()
    for (const bad of ['', 'x', 'a'.repeat(10_000), `${'a'.repeat(24)}.${'b'.repeat(42)}`, `${'a'.repeat(24)}:${'b'.repeat(43)}`,
      `${'a'.repeat(23)}é.${'b'.repeat(43)}`, `${'a'.repeat(24)}.${'b'.repeat(42)}\n`, '\r\nSET x y']) {
      t.equal(await m.get(bad), null)
    }
    t.equal(calls, 0, 'the store was never asked')
    if (target.commandCount !== undefined) {
      t.equal(await target.commandCount() - before, 1, 'Redis processed no command but the INFO that counts them')
    }
  })

  t.test('ASVS 7.1.2: 200 parallel creates for one user with limit 5 leave exactly 5 sessions, all listed, the evicted dead', async (t) => {
    const m = await manager(t, { maxSessionsPerUser: 5 })
    const created = await Promise.all(Array.from({ length: 200 }, (_, n) => m.create('bob', { ipAddress: `10.0.0.${n % 250}` })))
    const listed = await m.list('bob')
    t.equal(listed.length, 5)
    const evicted = new Set(created.flatMap((c) => c.evicted))
    t.equal(evicted.size, 195, 'every session but 5 was evicted exactly once')
    const alive = await Promise.all(created.map(async (c) => (await m.get(c.token, { touch: false })) !== null))
    t.equal(alive.filter(Boolean).length, 5)
    const listedIds = new Set(listed.map((s) => s.id))
    created.forEach((c, n) => {
      if (alive[n] === true) t.ok(listedIds.has(c.session.id), 'a live session is listed')
      else t.ok(evicted.has(c.session.id), 'a dead session was reported evicted')
    })
  })

  t.test("the 'deny' policy refuses a create past the limit and keeps the existing sessions", async (t) => {
    const m = await manager(t, { maxSessionsPerUser: 2, limitPolicy: 'deny' })
    const a = await m.create('carol')
    await m.create('carol')
    await t.rejects(m.create('carol'), { code: 'FST_SESSION_LIMIT_REACHED', statusCode: 409 })
    t.equal((await m.list('carol')).length, 2)
    t.ok(await m.get(a.token))
  })

  t.test('evict-oldest evicts the least recently active session', async (t) => {
    const m = await manager(t, { maxSessionsPerUser: 2, touchInterval: 0 })
    const first = await m.create('dave')
    clock += 1000
    const second = await m.create('dave')
    clock += 1000
    await m.get(first.token) // first is now the most recently active
    clock += 1000
    const third = await m.create('dave')
    t.same(third.evicted, [second.session.id])
    t.ok(await m.get(first.token))
    t.equal(await m.get(second.token), null)
  })

  t.test('ASVS 7.4.1: get racing invalidate never brings a session back', async (t) => {
    const m = await manager(t, { touchInterval: 0 })
    for (let round = 0; round < 20; round++) {
      const { token, session } = await m.create('erin')
      clock += 1
      await Promise.all([
        ...Array.from({ length: 10 }, () => m.get(token)),
        m.invalidate(session.id),
        ...Array.from({ length: 10 }, () => m.get(token))
      ])
      t.equal(await m.get(token), null, `round ${round}: the session stays dead`)
    }
    t.same(await m.list('erin'), [])
  })

  t.test('ASVS 7.3.1: the idle timeout slides with activity and expires an idle session', async (t) => {
    const m = await manager(t, { idleTimeout: '30m', touchInterval: '1m' })
    const { token } = await m.create('frank')
    clock += 29 * MINUTE
    t.ok(await m.get(token), 'still alive before the idle deadline, and touched')
    clock += 29 * MINUTE
    t.ok(await m.get(token), 'the touch moved the idle deadline')
    clock += 30 * MINUTE
    t.equal(await m.get(token), null, 'idle for 30 minutes: expired')
    t.same(await m.list('frank'), [])
  })

  t.test('ASVS 7.3.2: the absolute timeout ends a session however active it is', async (t) => {
    const m = await manager(t, { idleTimeout: '30m', absoluteTimeout: '2h', touchInterval: 0 })
    const { token } = await m.create('grace')
    for (let n = 0; n < 5; n++) {
      clock += 20 * MINUTE
      t.ok(await m.get(token), `active at ${(n + 1) * 20} minutes`)
    }
    clock += 20 * MINUTE
    t.equal(await m.get(token), null, 'two hours after creation: expired')
    const custom = await m.create('grace', {}, { ttl: '10m' })
    t.equal(custom.session.expiresAt.getTime(), clock + 10 * MINUTE, 'options.ttl overrides the absolute lifetime')
    clock += 11 * MINUTE
    t.equal(await m.get(custom.token), null)
  })

  t.test('touches are throttled to the touch interval', async (t) => {
    const m = await manager(t, { touchInterval: '1m' })
    const { token, session } = await m.create('heidi')
    clock += 30_000
    t.equal((await m.get(token))?.lastActivity.getTime(), session.lastActivity.getTime(), 'within the interval: not written')
    clock += 31_000
    t.equal((await m.get(token))?.lastActivity.getTime(), clock, 'past the interval: written')
    clock += 31_000
    t.equal((await m.get(token, { touch: false }))?.lastActivity.getTime(), clock - 31_000, 'touch: false reads only')
  })

  t.test('update shallow-merges metadata, refuses oversize and prototype keys, ignores other fields', async (t) => {
    const m = await manager(t, { maxMetadataBytes: 200 })
    const { token, session } = await m.create('ivan', { metadata: { a: 1, b: { c: 2 } } })
    t.equal(await m.update(session.id, { metadata: { b: 'x', d: [1, 2] } }), true)
    t.same((await m.get(token))?.metadata, { a: 1, b: 'x', d: [1, 2] })
    t.equal(await m.update(session.id, { metadata: { a: null } }), true)
    t.same((await m.get(token))?.metadata, { b: 'x', d: [1, 2] })
    await t.rejects(m.update(session.id, { metadata: { big: 'y'.repeat(300) } }), { code: 'FST_SESSION_METADATA_TOO_LARGE' })
    await t.rejects(m.update(session.id, { metadata: { many: 'y'.repeat(150), more: 'z'.repeat(50) } }), { code: 'FST_SESSION_METADATA_TOO_LARGE' }, 'the merged size counts')
    t.same((await m.get(token))?.metadata, { b: 'x', d: [1, 2] }, 'a refused update writes nothing')
    await t.rejects(m.update(session.id, { metadata: JSON.parse('{"__proto__":{"polluted":true}}') }), { code: 'FST_SESSION_INVALID_METADATA' })
    await t.rejects(m.update(session.id, { metadata: { x: JSON.parse('{"deep":{"constructor":{"prototype":1}}}') } }), { code: 'FST_SESSION_INVALID_METADATA' })
    let deep: Record<string, unknown> = {}
    for (let n = 0; n < 100_000; n++) deep = { n: deep }
    await t.rejects(m.create('ivan', { metadata: { deep } }), { code: 'FST_SESSION_INVALID_METADATA' })
    t.equal(await m.update(session.id, { userId: 'mallory', id: 'x' } as never), true, 'unknown fields are ignored')
    t.equal((await m.get(token))?.userId, 'ivan')
    t.equal(await m.update('A'.repeat(24), { metadata: { a: 1 } }), false, 'an unknown session')
    t.equal(await m.update('not-an-id', { metadata: { a: 1 } }), false)
    t.equal(({} as Record<string, unknown>).polluted, undefined)
  })

  t.test('the metadata limit is the exact byte length of the merged object as JSON', async (t) => {
    const exact = { a: 1, bb: 'x', ccc: [1, 2] }
    const bytes = Buffer.byteLength(JSON.stringify(exact))
    const m = await manager(t, { maxMetadataBytes: bytes })
    const { token, session } = await m.create('ursula', { metadata: { a: 1 } })
    t.equal(await m.update(session.id, { metadata: { bb: 'x', ccc: [1, 2] } }), true, `${bytes} bytes fit a limit of ${bytes}`)
    t.same((await m.get(token))?.metadata, exact)
    await t.rejects(m.update(session.id, { metadata: { d: 0 } }), { code: 'FST_SESSION_METADATA_TOO_LARGE' }, 'one key more does not')
    const tight = await manager(t, { maxMetadataBytes: bytes - 1 })
    const other = await tight.create('ursula', { metadata: { a: 1 } })
    await t.rejects(tight.update(other.session.id, { metadata: { bb: 'x', ccc: [1, 2] } }), { code: 'FST_SESSION_METADATA_TOO_LARGE' }, `${bytes} bytes do not fit ${bytes - 1}`)
    await t.rejects(tight.create('ursula', { metadata: exact }), { code: 'FST_SESSION_METADATA_TOO_LARGE' }, 'nor at creation')
  })

  t.test('invalidateAll ends every session of the user but the one kept, and no one else', async (t) => {
    const m = await manager(t)
    const a = await m.create('judy')
    const b = await m.create('judy')
    const c = await m.create('judy')
    const other = await m.create('ken')
    t.equal(await m.invalidateAll('judy', { except: b.session.id }), 2)
    t.equal(await m.get(a.token), null)
    t.ok(await m.get(b.token))
    t.equal(await m.get(c.token), null)
    t.ok(await m.get(other.token))
    t.equal(await m.invalidateAll('judy'), 1)
    t.equal(await m.invalidateAll('nobody'), 0)
    t.same(await m.list('judy'), [])
  })

  t.test('invalidate ends one session; with a userId only the owner can', async (t) => {
    const m = await manager(t)
    const a = await m.create('leo')
    t.equal(await m.invalidate(a.session.id, { userId: 'mia' }), false, 'another user cannot end it')
    await t.rejects(m.invalidate(a.session.id, { userId: '' }), { code: 'FST_SESSION_INVALID_OWNER', statusCode: 400 }, 'an empty owner is not "any owner"')
    t.ok(await m.get(a.token))
    t.equal(await m.invalidate(a.session.id, { userId: 'leo' }), true)
    t.equal(await m.invalidate(a.session.id), false, 'already gone')
    t.equal(await m.get(a.token), null)
  })

  t.test('list returns the sessions newest activity first', async (t) => {
    const m = await manager(t, { touchInterval: 0 })
    const a = await m.create('nina', { userAgent: 'A' })
    clock += 1000
    const b = await m.create('nina', { userAgent: 'B' })
    clock += 1000
    const c = await m.create('nina', { userAgent: 'C' })
    clock += 1000
    await m.get(a.token)
    t.same((await m.list('nina')).map((s) => s.id), [a.session.id, c.session.id, b.session.id])
    t.same(await m.list('nobody'), [])
  })

  t.test('rotate gives a new token for the same session and kills the old one at once', async (t) => {
    const m = await manager(t)
    const { token, session } = await m.create('olga', { metadata: { role: 'user' } })
    const rotated = await m.rotate(token)
    t.ok(rotated)
    t.equal(rotated?.session.id, session.id)
    t.not(rotated?.token, token)
    t.equal(await m.get(token), null, 'the old token is dead')
    t.equal((await m.get(rotated?.token as string))?.id, session.id)
    t.equal(await m.rotate(token), null, 'a dead token cannot be rotated')
    t.equal(await m.rotate('garbage'), null)
  })

  t.test('the concurrency flags follow the rules as sessions come and go', async (t) => {
    const m = await manager(t, { security: { maxDistinctIps: 2, maxDistinctUserAgents: 3, rapidCreationWindow: 0 } })
    const mine = await m.create('pat', { ipAddress: '1.1.1.1', userAgent: 'UA' })
    const others = []
    for (const ip of ['2.2.2.2', '3.3.3.3']) others.push(await m.create('pat', { ipAddress: ip, userAgent: 'UA' }))
    t.equal((await m.load(mine.token))?.concurrencyFlags, 0, 'two other IPs: not more than 2')
    const third = await m.create('pat', { ipAddress: '4.4.4.4', userAgent: 'UA' })
    t.equal((await m.load(mine.token))?.concurrencyFlags, 1, 'three other IPs: flagged')
    const report = await m.detectConcurrentSessions('pat', mine.session.id)
    t.same(report.reasons, ['distinct_ips'])
    t.equal(report.concurrentSessions, 3)
    await m.invalidate(third.session.id)
    t.equal((await m.load(mine.token))?.concurrencyFlags, 0, 'back under the threshold once a session ends')
  })

  t.test('the audit log records every operation in order, newest first, without tokens', async (t) => {
    // New-device notices (a 'security' event at the second login) have their own tests: test/devices.test.ts.
    const m = await manager(t, { maxSessionsPerUser: 1, security: { knownDevices: false } })
    const seen: string[] = []
    m.on('audit', (event) => seen.push(event.type))
    const a = await m.create('quinn', { ipAddress: '9.9.9.9' })
    clock += 1
    const b = await m.create('quinn')
    clock += 1
    await m.update(b.session.id, { metadata: { x: 1 } })
    clock += 1
    const rotated = await m.rotate(b.token)
    clock += 1
    await m.invalidate(b.session.id)
    const log = await m.auditLog('quinn')
    t.same(log.map((e) => e.type), ['invalidated', 'rotated', 'updated', 'created', 'evicted', 'created'])
    t.same(seen, ['created', 'evicted', 'created', 'updated', 'rotated', 'invalidated'])
    t.equal(log[5]?.sessionId, a.session.id)
    t.equal(log[5]?.data.ip, '9.9.9.9')
    const text = JSON.stringify(log)
    for (const token of [a.token, b.token, rotated?.token as string]) t.notMatch(text, token.split('.')[1] as string)
    t.equal((await m.auditLog('quinn', { limit: 2 })).length, 2)
  })

  t.test('cleanup removes expired sessions and audits each', async (t) => {
    const m = await manager(t, { idleTimeout: '10m' })
    const old = await Promise.all(Array.from({ length: 20 }, (_, n) => m.create(`user${n % 7}`)))
    clock += 5 * MINUTE
    const fresh = await m.create('user0')
    clock += 6 * MINUTE
    const expired: string[] = []
    m.on('audit', (event) => { if (event.type === 'expired') expired.push(event.sessionId) })
    const result = await m.cleanup(3)
    t.equal(result.expired, 20)
    t.same(new Set(expired), new Set(old.map((c) => c.session.id)))
    t.same((await m.list('user0')).map((s) => s.id), [fresh.session.id])
    t.same(await m.cleanup(), { expired: 0, orphaned: 0 }, 'nothing left to clean')
  })

  t.test('invalid user ids and arguments get clear errors', async (t) => {
    const m = await manager(t)
    await t.rejects(m.create(''), { code: 'FST_SESSION_INVALID_USER_ID', statusCode: 400 })
    await t.rejects(m.create('a\nb'), { code: 'FST_SESSION_INVALID_USER_ID' })
    await t.rejects(m.create('x'.repeat(257)), { code: 'FST_SESSION_INVALID_USER_ID' })
    await t.rejects(m.create(42 as never), { code: 'FST_SESSION_INVALID_USER_ID' })
    await t.rejects(m.create('ok', { metadata: [] as never }), { code: 'FST_SESSION_INVALID_METADATA' })
    await t.rejects(m.create('ok', {}, { ttl: -5 }), { code: 'FST_SESSION_INVALID_OPTION' })
    t.throws(() => new SessionManager({ store: m.store, idleTimeout: '1m', touchInterval: '1m' }), { code: 'FST_SESSION_INVALID_OPTION', message: /touchInterval.*shorter than.*idleTimeout/ })
    await t.rejects(m.list(''), { code: 'FST_SESSION_INVALID_USER_ID' })
    t.same(await m.list('ok'), [])
  })

  t.test('every owner argument that is present must be a non-empty string: update and invalidate refuse it with FST_SESSION_INVALID_OWNER', async (t) => {
    const m = await manager(t)
    const { token, session } = await m.create('olive', { metadata: { n: 1 } })
    for (const bad of [undefined, null, '', 0, 42, {}, []]) {
      await t.rejects(m.invalidate(session.id, { userId: bad } as never), { code: 'FST_SESSION_INVALID_OWNER', statusCode: 400 }, `invalidate with userId ${JSON.stringify(bad)}`)
      await t.rejects(m.update(session.id, { metadata: { n: 2 } }, { userId: bad } as never), { code: 'FST_SESSION_INVALID_OWNER', statusCode: 400 }, `update with userId ${JSON.stringify(bad)}`)
    }
    t.same((await m.get(token))?.metadata, { n: 1 }, 'no refused call changed the session')
    t.equal(await m.update(session.id, { metadata: { n: 3 } }, { userId: 'mallory' }), false, "another user's update does nothing")
    t.equal(await m.update(session.id, { metadata: { n: 4 } }, { userId: 'olive' }), true, "the owner's update applies")
    t.same((await m.get(token))?.metadata, { n: 4 })
    t.equal(await m.invalidate(session.id, { userId: 'olive' }), true)
  })

  t.test('every update moves the revision; ifRevision refuses a stale write with 409 FST_SESSION_CONFLICT', async (t) => {
    const m = await manager(t)
    const { token, session } = await m.create('rex', { metadata: { cart: [] } })
    t.equal(session.revision, 0, 'a new session is at revision 0')
    t.equal(await m.update(session.id, { metadata: { cart: ['a'] } }, { ifRevision: 0 }), true)
    t.equal((await m.get(token))?.revision, 1)
    await t.rejects(m.update(session.id, { metadata: { cart: ['b'] } }, { ifRevision: 0 }), { code: 'FST_SESSION_CONFLICT', statusCode: 409 })
    t.same((await m.get(token))?.metadata, { cart: ['a'] }, 'the stale write wrote nothing')
    t.equal(await m.update(session.id, { userAgent: 'UA/2' }), true, 'an attribute change moves it too')
    t.equal((await m.get(token))?.revision, 2)
    await t.rejects(m.update(session.id, {}, { ifRevision: -1 }), { code: 'FST_SESSION_INVALID_ARGUMENT' })
    await t.rejects(m.update(session.id, {}, { ifRevision: 1.5 }), { code: 'FST_SESSION_INVALID_ARGUMENT' })
  })

  t.test('50 concurrent "add to cart" updates that retry on conflict keep all 50 items', async (t) => {
    const m = await manager(t, { maxMetadataBytes: 8192 })
    const { token, session } = await m.create('cart', { metadata: { cart: [] } })
    let conflicts = 0
    await Promise.all(Array.from({ length: 50 }, async (_, item) => {
      for (;;) {
        const current = await m.get(token, { touch: false })
        const cart = (current?.metadata.cart ?? []) as number[]
        try {
          await m.update(session.id, { metadata: { cart: [...cart, item] } }, { ifRevision: current?.revision })
          return
        } catch (error) {
          if ((error as { code?: string }).code !== 'FST_SESSION_CONFLICT') throw error
          conflicts++
        }
      }
    }))
    const final = await m.get(token)
    t.same(((final?.metadata.cart ?? []) as number[]).slice().sort((a, b) => a - b), Array.from({ length: 50 }, (_, n) => n), 'every item is in the cart')
    t.equal(final?.revision, 50)
    t.ok(conflicts >= 0, `${conflicts} conflicts were retried`)
  })

  t.test('per-session ttl and idleTimeout set the session\'s own deadlines (remember-me), within documented bounds', async (t) => {
    const m = await manager(t, { idleTimeout: '30m', absoluteTimeout: '24h', touchInterval: '1m' })
    const { token, session } = await m.create('remy', {}, { ttl: '30d', idleTimeout: '7d' })
    t.equal(session.idleTimeoutMs, 7 * 86_400_000)
    t.equal(session.absoluteDeadline.getTime(), clock + 30 * 86_400_000)
    t.equal(session.expiresAt.getTime(), clock + 7 * 86_400_000)
    clock += 6 * 86_400_000
    t.ok(await m.get(token), 'alive after six idle days (the default idle timeout is 30 minutes)')
    clock += 6 * 86_400_000
    t.ok(await m.get(token), 'the touch slid its own idle deadline')
    clock += 8 * 86_400_000
    t.equal(await m.get(token), null, 'idle for 8 days: expired')
    const plain = await m.create('remy')
    t.equal(plain.session.idleTimeoutMs, 30 * MINUTE, 'without options: the manager\'s timeouts')
    t.equal(plain.session.absoluteDeadline.getTime(), clock + 24 * 3_600_000)
    const short = await m.create('remy', {}, { ttl: '10m' })
    t.equal(short.session.expiresAt.getTime(), clock + 10 * MINUTE, 'a ttl shorter than the idle timeout caps it')
    await t.rejects(m.create('remy', {}, { ttl: '1h', idleTimeout: '2h' }), { code: 'FST_SESSION_INVALID_OPTION', message: /idleTimeout.*ttl/ })
    await t.rejects(m.create('remy', {}, { ttl: '401d' }), { code: 'FST_SESSION_INVALID_OPTION', message: /400 days/ })
    await t.rejects(m.create('remy', {}, { idleTimeout: '30s' }), { code: 'FST_SESSION_INVALID_OPTION', message: /touchInterval/ })
    await t.rejects(m.create('remy', {}, { idleTimeout: 0 }), { code: 'FST_SESSION_INVALID_OPTION' })
    t.equal((await m.list('remy')).length, 2, 'a refused create wrote nothing')
  })

  t.test('create with replace ends the previous session in the same step, and a refused create leaves it alone', async (t) => {
    const m = await manager(t, { maxSessionsPerUser: 2, limitPolicy: 'deny' })
    const seen: Array<[string, unknown]> = []
    m.on('audit', (event) => { if (event.type === 'invalidated') seen.push([event.sessionId, event.data.reason]) })
    const first = await m.create('rita')
    await m.create('rita')
    const next = await m.create('rita', {}, { replace: first.session.id })
    t.equal(next.replaced, true)
    t.same(seen, [[first.session.id, 'new_login']], "the previous session is audited 'invalidated', reason new_login")
    t.equal(await m.get(first.token), null, 'the previous token is dead')
    t.equal((await m.list('rita')).length, 2, 'at the deny limit, the replaced session was not counted')
    await t.rejects(m.create('rita', { metadata: { bad: '\ud83d' } }, { replace: next.session.id }), { code: 'FST_SESSION_INVALID_METADATA' })
    await t.rejects(m.create('rita', {}, { replace: 'not-a-session-id' }), { code: 'FST_SESSION_INVALID_ARGUMENT' })
    const other = await m.create('sam')
    await t.rejects(m.create('rita', {}, { replace: other.session.id }), { code: 'FST_SESSION_LIMIT_REACHED' })
    t.ok(await m.get(next.token), 'a refused login did not sign the device out')
    t.ok(await m.get(other.token))
    const switched = await m.create('sam', {}, { replace: next.session.id })
    t.equal(switched.replaced, true, "another user's previous session on the device is ended too")
    t.equal(await m.get(next.token), null)
    const again = await m.create('tom', {}, { replace: next.session.id })
    t.equal(again.replaced, false, 'a session already gone is not reported replaced')
  })

  t.test('input one side cannot round-trip is refused at the edge with a 400 and a stable code', async (t) => {
    const m = await manager(t)
    await t.rejects(m.create('\ud83d'), { code: 'FST_SESSION_INVALID_USER_ID', statusCode: 400 }, 'a lone surrogate in a user id')
    await t.rejects(m.create('a\udc00b'), { code: 'FST_SESSION_INVALID_USER_ID' })
    await t.rejects(m.create('u', { metadata: { name: '\ud83d' } }), { code: 'FST_SESSION_INVALID_METADATA', statusCode: 400 }, 'in a metadata value')
    await t.rejects(m.create('u', { metadata: { 'k\ud800': 1 } }), { code: 'FST_SESSION_INVALID_METADATA' }, 'in a metadata key')
    await t.rejects(m.create('u', { metadata: { deep: { list: [{ '\udfff': 'x' }] } } }), { code: 'FST_SESSION_INVALID_METADATA' }, 'in a nested key')
    await t.rejects(m.create('u', { metadata: { deep: [1, ['\ud83d']] } }), { code: 'FST_SESSION_INVALID_METADATA' }, 'in a nested value')
    await t.rejects(m.create('u', { userAgent: 'UA \ud83d' }), { code: 'FST_SESSION_INVALID_ARGUMENT', statusCode: 400 }, 'in a user agent')
    await t.rejects(m.create('u', { ipAddress: '\udc00' }), { code: 'FST_SESSION_INVALID_ARGUMENT' }, 'in an IP')
    const { token, session } = await m.create('u', { userAgent: 'x'.repeat(511) + '😀', metadata: { name: 'emoji 😀 ok', nul: 'a\u0000b' } })
    t.equal(session.userAgent.length, 511, 'a clipped user agent never ends in half a surrogate pair')
    t.same((await m.get(token))?.metadata, { name: 'emoji 😀 ok', nul: 'a\u0000b' }, 'well-formed text and NUL round-trip')
    await t.rejects(m.update(session.id, { metadata: { name: '\ud83d' } }), { code: 'FST_SESSION_INVALID_METADATA' })
    await t.rejects(m.update(session.id, { userAgent: '\ud83d' }), { code: 'FST_SESSION_INVALID_ARGUMENT' })
    t.equal(await m.invalidate(session.id), true)
    t.equal(await m.get(token), null)
  })

  t.test('metadata has a key-count limit, enforced for create and update before anything is sent', async (t) => {
    const m = await manager(t, { maxMetadataKeys: 4, maxMetadataBytes: 100_000 })
    let calls = 0
    for (const name of ['create', 'update'] as const) {
      const original = m.store[name].bind(m.store) as (input: never) => Promise<never>
      m.store[name] = (async (input: never) => { calls++; return await original(input) }) as never
    }
    const huge = Object.fromEntries(Array.from({ length: 200_000 }, (_, n) => [`k${n}`, n]))
    await t.rejects(m.create('kim', { metadata: huge }), { code: 'FST_SESSION_INVALID_METADATA', statusCode: 400, message: /at most 4 keys/ })
    await t.rejects(m.create('kim', { metadata: { a: 1, b: 2, c: 3, d: 4, e: 5 } }), { code: 'FST_SESSION_INVALID_METADATA' })
    t.equal(calls, 0, 'the store was never asked')
    const { token, session } = await m.create('kim', { metadata: { a: 1, b: 2, c: 3 } })
    await t.rejects(m.update(session.id, { metadata: huge }), { code: 'FST_SESSION_INVALID_METADATA', message: /at most 4 keys/ })
    t.equal(calls, 1, 'an oversize patch was refused before the store')
    t.equal(await m.update(session.id, { metadata: { d: 4 } }), true, 'four keys fit')
    await t.rejects(m.update(session.id, { metadata: { e: 5 } }), { code: 'FST_SESSION_INVALID_METADATA' }, 'the merged count is checked in the same step')
    t.equal(await m.update(session.id, { metadata: { a: null, e: 5 } }), true, 'deleting one makes room')
    t.same((await m.get(token))?.metadata, { b: 2, c: 3, d: 4, e: 5 })
    t.throws(() => new SessionManager({ store: m.store, maxMetadataKeys: 1025 }), { code: 'FST_SESSION_INVALID_OPTION' })
  })

  t.test('a throwing or rejecting listener of any event is logged once with context and changes no result', async (t) => {
    const logged: Array<{ obj: Record<string, unknown>, msg: string }> = []
    const logger = { warn: (obj: object, msg: string) => { logged.push({ obj: obj as Record<string, unknown>, msg }) }, error: (obj: object, msg: string) => { logged.push({ obj: obj as Record<string, unknown>, msg }) } }
    const m = await manager(t, { logger })
    const seen: string[] = []
    m.on('audit', () => { throw new Error('audit listener') })
    m.on('audit', (event) => { seen.push(event.type) })
    m.on('security', async () => { throw new Error('security listener') })
    m.on('storeError', function failing () { throw new Error('storeError listener') })
    const { token, session } = await m.create('lena')
    t.ok(await m.get(token), 'the committed login is a working session')
    t.same(seen, ['created'], 'the next listener still ran')
    t.ok(m.emit('storeError', new Error('x')))
    await m.recordSecurityEvent('lena', session.id, { rule: 'test' })
    await new Promise((resolve) => setImmediate(resolve))
    t.equal(m.emit('error', new Error('nobody listens')), false, "an unheard 'error' does not throw")
    const events = logged.filter((entry) => /listener/.test(entry.msg) || /no listener/.test(String(entry.obj.listener))).map((entry) => entry.obj.event)
    t.same(events.sort(), ['audit', 'audit', 'error', 'security', 'storeError'], 'each throw logged once, with the event')
    t.equal(logged.find((entry) => entry.obj.event === 'storeError')?.obj.listener, 'failing', 'and the listener')
    t.equal(await m.invalidate(session.id), true)
  })

  if (target.dump !== undefined) {
    const dump = target.dump
    t.test('OWASP session storage: no key or value in the store ever contains a token or its secret', async (t) => {
      const m = await manager(t, { touchInterval: 0, maxSessionsPerUser: 3, audit: { activity: true } })
      const tokens: string[] = []
      for (let n = 0; n < 6; n++) {
        const { token } = await m.create(`scan${n % 2}`, { ipAddress: '8.8.8.8', userAgent: 'Scanner', metadata: { n } })
        tokens.push(token)
        clock += 1000
        await m.get(token)
      }
      const rotated = await m.rotate(tokens[5] as string)
      tokens.push(rotated?.token as string)
      const text = await dump()
      t.ok(text.length > 0)
      for (const token of tokens) {
        const [id, secret] = token.split('.') as [string, string]
        t.notOk(text.includes(secret), 'no secret')
        t.notOk(text.includes(token), 'no token')
        t.notOk(text.includes(`${id}.`), 'no token prefix')
      }
    })
  }
}
