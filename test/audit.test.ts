import { test, type Test } from 'tap'
import { Redis } from 'ioredis'
import { auditKey, tagKey } from '../lib/keys'
import { SessionManager, type AuditEvent, type SessionManagerOptions } from '../lib/manager'
import { RedisStore } from '../lib/store/redis'
import { hashSecret } from '../lib/token'
import { startRedis, type RedisServer } from './helpers/redis'

const MINUTE = 60_000
const PREFIX = 'audit:'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

interface Setup {
  client: Redis
  manager: SessionManager
  /** Added to the real time: the manager's clock. */
  clock: { offset: number }
  emitted: AuditEvent[]
}

/**
 * A manager on a real clock plus an offset: audit streams are trimmed and ranged by Redis server time, so the
 * clock stays close to it except where a test moves it forward to expire sessions.
 */
function setup (t: Test, server: RedisServer, options: Partial<SessionManagerOptions> = {}): Setup {
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const clock = { offset: 0 }
  const manager = new SessionManager({ store: new RedisStore({ client, prefix: PREFIX }), now: () => Date.now() + clock.offset, ...options })
  const emitted: AuditEvent[] = []
  manager.on('audit', (event: AuditEvent) => emitted.push(event))
  return { client, manager, clock, emitted }
}

async function auditStreams (client: Redis): Promise<string> {
  const parts: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${PREFIX}*:a`, 'COUNT', 1000)
    cursor = next
    for (const key of keys) parts.push(key, JSON.stringify(await client.xrange(key, '-', '+')))
  } while (cursor !== '0')
  return parts.join('\n')
}

function summary (events: AuditEvent[]): Array<[string, string, number, Record<string, unknown>]> {
  return events.map((event) => [event.type, event.sessionId, event.timestamp.getTime(), event.data])
}

test('the audit log of a user shows every operation, newest first, and the same events are emitted', async (t) => {
  const server = await startRedis(t)
  // New-device notices ('security' events at a login) have their own tests: test/devices.test.ts.
  const { manager, clock, emitted } = setup(t, server, { maxSessionsPerUser: 2, security: { knownDevices: false } })
  const step = (): Promise<void> => sleep(3)
  const a = await manager.create('alice', { ipAddress: '10.0.0.1', userAgent: 'UA/1' })
  await step()
  await manager.update(a.session.id, { metadata: { plan: 'pro' } })
  await step()
  t.ok(await manager.rotate(a.token))
  await step()
  const b = await manager.create('alice')
  await step()
  const c = await manager.create('alice')
  t.same(c.evicted, [a.session.id])
  await step()
  await manager.invalidate(b.session.id, { reason: 'logout' })
  await step()
  const d = await manager.create('alice')
  await step()
  t.equal(await manager.invalidateAll('alice', { except: d.session.id, reason: 'password_changed' }), 1)
  clock.offset = 31 * MINUTE
  t.match(await manager.cleanup(), { expired: 1 })

  const log = await manager.auditLog('alice')
  t.same(log.map((event) => [event.type, event.sessionId]), [
    ['expired', d.session.id],
    ['all_user_sessions_invalidated', d.session.id],
    ['invalidated', c.session.id],
    ['created', d.session.id],
    ['invalidated', b.session.id],
    ['created', c.session.id],
    ['evicted', a.session.id],
    ['created', b.session.id],
    ['rotated', a.session.id],
    ['updated', a.session.id],
    ['created', a.session.id]
  ])
  t.same(log.map((event) => event.data), [
    { reason: 'timeout' },
    { reason: 'password_changed' },
    { reason: 'password_changed' },
    { ip: '', userAgent: '' },
    { reason: 'logout' },
    { ip: '', userAgent: '' },
    { reason: 'limit' },
    { ip: '', userAgent: '' },
    { reason: 'rotate' },
    { fields: ['metadata'] },
    { ip: '10.0.0.1', userAgent: 'UA/1' }
  ])
  t.ok(log.every((event) => event.userId === 'alice'))
  t.ok(log.every((event, n) => n === 0 || event.timestamp <= (log[n - 1] as AuditEvent).timestamp), 'newest first')
  t.same(summary(log), summary([...emitted].reverse()), "each record was also emitted as 'audit'")

  const since = (log[4] as AuditEvent).timestamp
  t.same((await manager.auditLog('alice', { since })).map((event) => event.type),
    ['expired', 'all_user_sessions_invalidated', 'invalidated', 'created', 'invalidated'], 'since (a Date) keeps what is as recent or more')
  t.same(summary(await manager.auditLog('alice', { since: since.getTime() })), summary(log.slice(0, 5)), 'since as epoch milliseconds')
  t.same(summary(await manager.auditLog('alice', { limit: 3 })), summary(log.slice(0, 3)), 'limit keeps the newest')
  t.same(summary(await manager.auditLog('alice', { since, limit: 2 })), summary(log.slice(0, 2)))
  t.same(await manager.auditLog('nobody'), [])
  await t.rejects(manager.auditLog('alice', { limit: 0 }), { code: 'FST_SESSION_INVALID_ARGUMENT' })
})

test('a security event is recorded in the audit log and emitted as security', async (t) => {
  const server = await startRedis(t)
  const { manager } = setup(t, server)
  const security: AuditEvent[] = []
  manager.on('security', (event: AuditEvent) => security.push(event))
  await manager.create('bob')
  t.equal(await manager.forceReauthentication('bob', 'stolen laptop'), 1)
  const log = await manager.auditLog('bob', { limit: 1 })
  t.match(log, [{ type: 'security', sessionId: '', data: { rule: 'force_reauthentication', reason: 'stolen laptop', count: 1 } }])
  t.same(summary(security), summary(log))
})

test('retention drops old events: the stream expires, and a later write trims what is older', async (t) => {
  const server = await startRedis(t)
  const { client, manager } = setup(t, server, { audit: { retention: 300 } })
  const { session } = await manager.create('carol')
  const key = auditKey(PREFIX, session.id.slice(0, 2))
  const ttl = await client.pttl(key)
  t.ok(ttl > 0 && ttl <= 300, `the stream key has a TTL within the retention (${ttl} ms)`)
  await sleep(400)
  t.equal(await client.exists(key), 0, 'a stream nobody writes to expires with the retention')
  t.same(await manager.auditLog('carol'), [])

  await manager.update(session.id, { metadata: { n: 1 } })
  const oldest = (await manager.auditLog('carol'))[0] as AuditEvent
  await sleep(200)
  await manager.update(session.id, { metadata: { n: 2 } })
  await sleep(200)
  await manager.update(session.id, { metadata: { n: 3 } })
  const log = await manager.auditLog('carol')
  t.ok(log.length >= 1 && log.length <= 2, 'only what is younger than the retention is left')
  t.notOk(log.some((event) => event.timestamp.getTime() === oldest.timestamp.getTime()), 'the write trimmed the event older than the retention')
  t.ok(await client.xlen(key) <= 2)
  t.ok(await client.pttl(key) <= 300)
})

test('no token, secret or token hash appears in any audit record', async (t) => {
  const server = await startRedis(t)
  const { client, manager, clock, emitted } = setup(t, server, { maxSessionsPerUser: 2, audit: { activity: true }, touchInterval: 0 })
  const tokens: string[] = []
  for (let n = 0; n < 3; n++) tokens.push((await manager.create('dave', { ipAddress: '10.0.0.2', userAgent: 'UA' })).token)
  const last = tokens[2] as string
  const rotated = await manager.rotate(last)
  tokens.push(rotated?.token as string)
  clock.offset += 1000
  await manager.get(rotated?.token as string)
  await manager.update(rotated?.session.id as string, { metadata: { note: 'x' } })
  await manager.invalidateAll('dave')
  await manager.recordSecurityEvent('dave', '', { rule: 'test' })
  const records = await auditStreams(client) + JSON.stringify(emitted)
  t.ok(records.includes('dave'), 'the records were read')
  for (const token of tokens) {
    const secret = token.split('.')[1] as string
    t.notOk(records.includes(token), 'no token')
    t.notOk(records.includes(secret), 'no secret')
    t.notOk(records.includes(hashSecret(secret)), 'no token hash')
  }
})

test('with audit retention 0 no stream key is written, and events are still emitted', async (t) => {
  const server = await startRedis(t)
  const { client, manager, clock, emitted } = setup(t, server, { audit: { retention: 0, activity: true }, touchInterval: 0 })
  const { token, session } = await manager.create('erin')
  clock.offset += 1000
  await manager.get(token)
  await manager.update(session.id, { metadata: { a: 1 } })
  await manager.rotate(token)
  await manager.recordSecurityEvent('erin', session.id, { rule: 'test' })
  await manager.create('erin')
  clock.offset += 31 * MINUTE
  t.match(await manager.cleanup(), { expired: 2 })
  t.equal(await auditStreams(client), '', 'no audit stream at all')
  t.same(await manager.auditLog('erin'), [])
  t.same(emitted.map((event) => event.type), ['created', 'activity', 'updated', 'rotated', 'security', 'created', 'expired', 'expired'])
})

test('audit.activity records an activity event at the touch interval and never more often', async (t) => {
  const server = await startRedis(t)
  const { manager, clock, emitted } = setup(t, server, { audit: { activity: true }, touchInterval: '1m' })
  const { token } = await manager.create('frank', { ipAddress: '10.0.0.3' })
  for (const offset of [10_000, 59_000]) {
    clock.offset = offset
    await manager.get(token)
  }
  clock.offset = 61_000
  await Promise.all(Array.from({ length: 10 }, () => manager.get(token)))
  for (const offset of [62_000, 120_000]) {
    clock.offset = offset
    await manager.get(token)
  }
  clock.offset = 122_000
  await manager.get(token)
  await manager.get(token, { touch: false })
  const activity = (await manager.auditLog('frank')).filter((event) => event.type === 'activity')
  t.equal(activity.length, 2, 'one at 61 s (ten concurrent requests), one at 122 s')
  t.same(activity.map((event) => event.data), [{ ip: '10.0.0.3' }, { ip: '10.0.0.3' }])
  t.equal(emitted.filter((event) => event.type === 'activity').length, 2)

  const quiet = setup(t, server, { touchInterval: '1m' })
  const other = await quiet.manager.create('grace')
  quiet.clock.offset = 61_000
  t.ok(await quiet.manager.get(other.token))
  t.same((await quiet.manager.auditLog('grace')).map((event) => event.type), ['created'], 'off by default')
})

test("a user's audit log stays reachable for the whole retention, after every session has ended", async (t) => {
  const server = await startRedis(t)
  const { client, manager } = setup(t, server, { absoluteTimeout: '1h', audit: { retention: '7d' } })
  const { session } = await manager.create('grace')
  await manager.invalidate(session.id)
  const ttl = await client.pttl(tagKey(PREFIX, 'grace'))
  t.ok(ttl > 7 * 86_400_000, `the user's tag key outlives the retention (${Math.round(ttl / 3_600_000)} h)`)
  t.same((await manager.auditLog('grace')).map((event) => event.type), ['invalidated', 'created'])
})
