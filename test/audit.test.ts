import { test, type Test } from 'tap'
import { Cluster, Redis } from 'ioredis'
import { auditCapKey, auditFeedKey, auditTimelineKey } from '../lib/store/redis/keys'
import { shardTag } from '../lib/core/token'
import { userOnTag } from './helpers/tags'
import { SessionManager, type AuditEvent, type SessionManagerOptions } from '../lib/core/manager'
import { MemoryStore } from '../lib/store/memory/store'
import { RedisStore } from '../lib/store/redis/store'
import { hashSecret } from '../lib/core/token'
import { startRedis, startRedisCluster, type RedisServer } from './helpers/redis'
import { scanKeys } from './helpers/redis-inspect'
import Fastify from 'fastify'
import sessionPlugin, { type SessionPluginOptions } from '../lib/index'

const MINUTE = 60_000
const PREFIX = 'audit:'

interface Setup {
  client: Redis
  manager: SessionManager
  /** Added to the real time: the manager's clock. */
  clock: { offset: number }
  emitted: AuditEvent[]
}

/**
 * A manager on a real clock plus an offset (the feed's stream ids are Redis server time; the timelines use the
 * manager's clock), moved forward where a test expires sessions or events.
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

/** Every audit key (timelines, cap markers, feeds) with its content, as text. */
async function auditKeys (client: Redis): Promise<string> {
  const parts: string[] = []
  for (const key of await scanKeys(client, `${PREFIX}*:a2:*`)) {
    const type = await client.type(key)
    const content = type === 'list' ? await client.lrange(key, 0, -1) : type === 'stream' ? await client.xrange(key, '-', '+') : await client.get(key)
    parts.push(key, JSON.stringify(content))
  }
  return parts.join('\n')
}

function summary (events: AuditEvent[]): Array<[string, string, number, Record<string, unknown>]> {
  return events.map((event) => [event.type, event.sessionId, event.timestamp.getTime(), event.data])
}

test('the audit log of a user shows every operation, newest first, and the same events are emitted', async (t) => {
  const server = await startRedis(t)
  // New-device notices ('security' events at a login) have their own tests: test/devices.test.ts.
  const { manager, clock, emitted } = setup(t, server, { maxSessionsPerUser: 2, security: { knownDevices: false } })
  // Each operation 3 ms after the previous one on the manager's clock, so the timeline's order is the order of the calls.
  const step = (): void => { clock.offset += 3 }
  const a = await manager.create('alice', { ipAddress: '10.0.0.1', userAgent: 'UA/1' })
  step()
  await manager.update(a.session.id, { metadata: { plan: 'pro' } })
  step()
  t.ok(await manager.rotate(a.token))
  step()
  const b = await manager.create('alice')
  step()
  const c = await manager.create('alice')
  t.same(c.evicted, [a.session.id])
  step()
  await manager.invalidate(b.session.id, { reason: 'logout' })
  step()
  const d = await manager.create('alice')
  step()
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

test('retention drops old events: the query skips them, a later write trims them, and the timeline key expires', async (t) => {
  const server = await startRedis(t)
  const { client, manager, clock } = setup(t, server, { idleTimeout: '2h', audit: { retention: '1h' } })
  const { session } = await manager.create('carol')
  const key = auditTimelineKey(PREFIX, session.id.slice(0, 2), 'carol')
  const ttl = await client.pttl(key)
  t.ok(ttl > 0 && ttl <= 3_600_000, `the timeline key has a TTL within the retention (${ttl} ms)`)
  await manager.update(session.id, { metadata: { n: 1 } })
  clock.offset = 30 * MINUTE
  await manager.update(session.id, { metadata: { n: 2 } })
  t.same((await manager.auditLog('carol')).map((event) => event.type), ['updated', 'updated', 'created'])
  clock.offset = 61 * MINUTE
  t.same((await manager.auditLog('carol')).map((event) => event.data), [{ fields: ['metadata'] }], 'only what is younger than the retention is returned')
  t.equal(await client.llen(key), 3, 'nothing was written: nothing was trimmed yet')
  await manager.update(session.id, { metadata: { n: 3 } })
  t.equal(await client.llen(key), 2, 'the write popped the two expired entries from the oldest end')
  t.same((await manager.auditLog('carol')).map((event) => event.data), [{ fields: ['metadata'] }, { fields: ['metadata'] }])
  t.ok(await client.pttl(key) <= 3_600_000, 'each write sets the TTL to the retention again')
})

test('no token, secret or token hash appears in any audit record', async (t) => {
  const server = await startRedis(t)
  const { client, manager, clock, emitted } = setup(t, server, { maxSessionsPerUser: 2, audit: { activity: true, feed: true, maxEventsPerUser: 4 }, touchInterval: 0 })
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
  const records = await auditKeys(client) + JSON.stringify(emitted) + JSON.stringify(await manager.auditLogPage('dave'))
  t.match(records, /:a2:f/, 'the feed was read')
  t.match(records, /:a2:c:dave/, 'the cap marker was read')
  t.ok(records.includes('dave'), 'the records were read')
  for (const token of tokens) {
    const secret = token.split('.')[1] as string
    t.notOk(records.includes(token), 'no token')
    t.notOk(records.includes(secret), 'no secret')
    t.notOk(records.includes(hashSecret(secret)), 'no token hash')
  }
})

test('with audit retention 0 no audit key is written, and events are still emitted', async (t) => {
  const server = await startRedis(t)
  const { client, manager, clock, emitted } = setup(t, server, { audit: { retention: 0, activity: true, feed: true }, touchInterval: 0 })
  const { token, session } = await manager.create('erin')
  clock.offset += 1000
  await manager.get(token)
  await manager.update(session.id, { metadata: { a: 1 } })
  await manager.rotate(token)
  await manager.recordSecurityEvent('erin', session.id, { rule: 'test' })
  await manager.create('erin')
  clock.offset += 31 * MINUTE
  t.match(await manager.cleanup(), { expired: 2 })
  t.equal(await auditKeys(client), '', 'no audit key at all')
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
  // The timeline is found by the user id alone (the shard tag is a hash of it): nothing else has to outlive it.
  const ttl = await client.pttl(auditTimelineKey(PREFIX, shardTag('grace'), 'grace'))
  t.ok(ttl > 7 * 86_400_000 - 60_000, `the user's timeline lives for the retention (${Math.round(ttl / 3_600_000)} h)`)
  t.same((await manager.auditLog('grace')).map((event) => event.type), ['invalidated', 'created'])
})

/** `count` security events for `userId`, written `batch` at a time (each one the RECORD script, as in production). */
async function flood (manager: SessionManager, userId: string, count: number, batch = 500): Promise<void> {
  for (let n = 0; n < count; n += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, count - n) }, (_, k) =>
      manager.recordSecurityEvent(userId, '', { rule: 'flood', n: n + k })))
  }
}

async function victimSurvivesNeighbour (t: Test, client: Redis | Cluster, neighbourEvents: number): Promise<void> {
  // Two users on one shard tag (the tag is a hash of the user id: these ids were picked for it).
  const [victimId, neighbourId] = [userOnTag('Vn', 'victim'), userOnTag('Vn', 'neighbour')]
  let clock = Date.now()
  const manager = new SessionManager({ store: new RedisStore({ client, prefix: PREFIX }), now: () => clock, maxSessionsPerUser: 100, audit: { maxEventsPerUser: 1000 } })
  const victim = await manager.create(victimId, { ipAddress: '198.51.100.1', userAgent: 'UA/victim' })
  clock += 1
  const neighbour = await manager.create(neighbourId)
  t.equal(neighbour.session.id.slice(0, 2), victim.session.id.slice(0, 2), 'the two users share a shard')
  clock += 1
  await flood(manager, neighbourId, neighbourEvents)
  clock += 1
  await manager.invalidate(victim.session.id, { reason: 'logout' })

  const page = await manager.auditLogPage(victimId, { limit: 50 })
  t.same(page.events.map((event) => [event.type, event.sessionId]), [['invalidated', victim.session.id], ['created', victim.session.id]],
    "every event of the victim, after the neighbour's volume")
  t.equal(page.truncated, false)
  const noisy = await manager.auditLogPage(neighbourId, { limit: 3 })
  t.same(noisy.events.map((event) => event.data.n), [neighbourEvents - 1, neighbourEvents - 2, neighbourEvents - 3], 'the neighbour sees its newest')
  t.equal(noisy.truncated, true, 'and is told that its cap dropped older events')
  t.equal(await client.llen(auditTimelineKey(PREFIX, 'Vn', neighbourId)), 1000, 'the neighbour holds no more than its cap')
}

test("a victim's events survive a shard neighbour's volume (Redis)", async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  // 52 000 events: past the 50 000-entry window that lost the victim's events in 0.1.0.
  await victimSurvivesNeighbour(t, client, 52_000)
})

test("a victim's events survive a shard neighbour's volume (Cluster)", async (t) => {
  const cluster = await startRedisCluster(t)
  const client = new Cluster(cluster.startupNodes)
  t.teardown(() => client.quit())
  await victimSurvivesNeighbour(t, client, 5000)
})

for (const kind of ['redis', 'memory'] as const) {
  test(`the per-user cap drops the oldest events first and the page says so (${kind})`, async (t) => {
    let clock = 1_000_000_000_000
    let client: Redis | null = null
    if (kind === 'redis') {
      const server = await startRedis(t)
      client = new Redis(server.url)
      t.teardown(() => client?.quit())
    }
    const store = client === null ? new MemoryStore() : new RedisStore({ client, prefix: PREFIX })
    const manager = new SessionManager({ store, now: () => clock, audit: { retention: '1h', maxEventsPerUser: 5 } })
    for (let n = 0; n < 3; n++) {
      clock += 1000
      await manager.recordSecurityEvent('ivan', '', { n })
    }
    const whole = await manager.auditLogPage('ivan')
    t.same(whole, { events: whole.events, truncated: false }, 'under the cap: nothing dropped, no droppedBefore')
    for (let n = 3; n < 8; n++) {
      clock += 1000
      await manager.recordSecurityEvent('ivan', '', { n })
    }
    const page = await manager.auditLogPage('ivan')
    t.same(page.events.map((event) => event.data.n), [7, 6, 5, 4, 3], 'the five newest are kept')
    t.equal(page.truncated, true)
    t.equal(page.droppedBefore?.getTime(), 1_000_000_003_001, 'the newest dropped event (n = 2, at +3 s) is older than droppedBefore')
    t.same((await manager.auditLog('ivan')).map((event) => event.data.n), [7, 6, 5, 4, 3], 'auditLog returns the same events as an array')
    const recent = await manager.auditLogPage('ivan', { since: 1_000_000_004_000 })
    t.same(recent, { events: recent.events, truncated: false }, 'a window the cap did not reach is complete')
    t.equal(recent.events.length, 5)
    if (client !== null) {
      t.equal(await client.llen(auditTimelineKey(PREFIX, shardTag('ivan'), 'ivan')), 5)
      t.equal(await client.pttl(auditCapKey(PREFIX, shardTag('ivan'), 'ivan')) <= 3_600_000, true, 'the marker expires with the retention')
    }
    clock += 3_600_000 - 3000
    const later = await manager.auditLogPage('ivan')
    t.same(later.events.map((event) => event.data.n), [7, 6, 5, 4], 'retention removes the oldest kept event')
    t.equal(later.truncated, false, 'events the cap dropped would have left by retention now: the page is whole')
    if (store instanceof MemoryStore) {
      clock += 3_600_000
      await manager.cleanup()
      t.equal((store as unknown as { auditDrops: Map<string, number> }).auditDrops.size, 0, 'the memory store forgets the marker once it is past the retention')
    }
  })
}

test('the memory store keeps the same retention as the Redis store: the query skips what is older', async (t) => {
  let clock = 1_000_000_000_000
  const manager = new SessionManager({ store: new MemoryStore(), now: () => clock, idleTimeout: '2h', audit: { retention: '1h' } })
  const { session } = await manager.create('judy')
  clock += 30 * MINUTE
  await manager.update(session.id, { metadata: { a: 1 } })
  t.same((await manager.auditLog('judy')).map((event) => event.type), ['updated', 'created'])
  clock += 31 * MINUTE
  t.same((await manager.auditLog('judy')).map((event) => event.type), ['updated'], 'nothing is written, yet the expired event is gone')
})

test('with audit.feed every event also goes to the shard feed, which a consumer group reads and acknowledges', async (t) => {
  const server = await startRedis(t)
  const fed = setup(t, server, { audit: { feed: true } })
  const { client, manager } = fed
  const { session } = await manager.create('kim', { ipAddress: '10.1.1.1' })
  await manager.invalidate(session.id)
  const tag = session.id.slice(0, 2)
  const feed = auditFeedKey(PREFIX, tag)
  t.ok(await client.pttl(feed) > 0, 'the feed has a TTL (the retention)')
  await client.xgroup('CREATE', feed, 'siem', '0')
  const read = await client.xreadgroup('GROUP', 'siem', 'worker-1', 'COUNT', 10, 'STREAMS', feed, '>') as Array<[string, Array<[string, string[]]>]>
  const entries = (read[0] as [string, Array<[string, string[]]>])[1]
  t.same(entries.map(([, fields]) => [fields[2], fields[3], fields[5], fields[7]]), [['e', 'created', 'kim', session.id], ['e', 'invalidated', 'kim', session.id]])
  t.same(JSON.parse((entries[0] as [string, string[]])[1][9] as string), { ip: '10.1.1.1', userAgent: '' })
  t.equal(await client.xack(feed, 'siem', ...entries.map(([id]) => id)), 2)
  t.same(await client.xpending(feed, 'siem'), [0, null, null, null], 'nothing left pending after the acknowledgement')

  const quiet = setup(t, server)
  const other = await quiet.manager.create('lee')
  const otherTag = other.session.id.slice(0, 2)
  t.equal(await client.exists(auditFeedKey(PREFIX, otherTag)) + (otherTag === tag ? -1 : 0), 0, 'no feed without audit.feed')
  t.same((await quiet.manager.auditLog('lee')).map((event) => event.type), ['created'], 'the timeline does not need the feed')
})

test('a feed key of another type is replaced by the next write, reported but not stored, and the change it audits is made', async (t) => {
  const server = await startRedis(t)
  const { client, manager, emitted } = setup(t, server, { audit: { feed: true } })
  const feed = auditFeedKey(PREFIX, shardTag('trudy'))
  await client.set(feed, 'not a stream')
  const { session } = await manager.create('trudy')
  t.same((await manager.list('trudy')).map((s) => s.id), [session.id], 'the login is made')
  t.ok(emitted.some((event) => event.type === 'corrupt' && event.userId === '' && event.data.reason === 'audit_feed'), 'the repair is reported to the manager (which logs it)')
  t.equal(await client.type(feed), 'stream', 'the feed is a stream again')
  t.same((await client.xrange(feed, '-', '+')).map(([, fields]) => fields[3]), ['created'], 'holding the event of the write that repaired it')
  t.notOk((await manager.auditLog('trudy')).some((event) => event.type === 'corrupt'), "the repair is not in the user's timeline: the feed is no user's")
})

test('a timeline key of another type is replaced by the next write, and the change it audits is made', async (t) => {
  const server = await startRedis(t)
  const { client, manager } = setup(t, server)
  await client.set(auditTimelineKey(PREFIX, shardTag('mallory'), 'mallory'), 'not a list')
  t.same(await manager.auditLog('mallory'), [], 'the query answers, without the damaged key')
  const emitted: string[] = []
  manager.on('audit', (event) => { emitted.push(`${event.type}:${String(event.data.reason ?? '')}`) })
  const { session } = await manager.create('mallory')
  t.same((await manager.list('mallory')).map((s) => s.id), [session.id])
  t.same((await manager.auditLog('mallory')).map((event) => [event.type, event.data]), [['created', { ip: '', userAgent: '' }], ['corrupt', { reason: 'audit_log' }]],
    'the repair is audited under the created event')
  t.ok(emitted.includes('corrupt:audit_log'), 'and reported to the manager (which logs it)')
  await client.set(auditCapKey(PREFIX, shardTag('mallory'), 'mallory'), 'not a time')
  t.same(await manager.auditLogPage('mallory'), { events: (await manager.auditLogPage('mallory')).events, truncated: false }, 'a marker that is not a time is ignored')
})

test("0.1.0's shard stream is not read: an upgrade starts each user's timeline empty and the old stream expires", async (t) => {
  const server = await startRedis(t)
  const { client, manager } = setup(t, server)
  const tag = shardTag('nina')
  const oldStream = `${PREFIX}{${tag}}:a`
  await client.xadd(oldStream, '*', 't', String(Date.now()), 'e', 'created', 'u', 'nina', 's', `${tag}0000000000000000000000`, 'd', '{}')
  await client.pexpire(oldStream, 7 * 86_400_000)
  await manager.create('nina')
  t.same((await manager.auditLog('nina')).map((event) => event.type), ['created'])
  t.equal(await client.xlen(oldStream), 1, 'the old stream is left alone')
  t.ok(await client.pttl(oldStream) > 0, 'with the TTL it was written with')
})

test('audit.maxEventsPerUser is an integer from 1 to 1 000 000, and audit.feed a boolean', async (t) => {
  for (const bad of [0, -1, 1.5, 1_000_001, '10']) {
    t.throws(() => new SessionManager({ store: new MemoryStore(), audit: { maxEventsPerUser: bad as number } }),
      { code: 'FST_SESSION_INVALID_OPTION', message: /audit\.maxEventsPerUser/ })
  }
  t.throws(() => new SessionManager({ store: new MemoryStore(), audit: { feed: 1 as unknown as boolean } }),
    { code: 'FST_SESSION_INVALID_OPTION', message: /audit\.feed/ })
  t.equal(new SessionManager({ store: new MemoryStore() }).auditMaxEventsPerUser, 5000, 'default')
  t.equal(new SessionManager({ store: new MemoryStore(), audit: { maxEventsPerUser: 1_000_000 } }).auditMaxEventsPerUser, 1_000_000)
})

test('the plugin takes audit.maxEventsPerUser and audit.feed, and refuses a cap out of bounds naming the option', async (t) => {
  for (const audit of [{ maxEventsPerUser: 0 }, { maxEventsPerUser: 1_000_001 }, { maxEventsPerUser: 2.5 }, { feed: 'yes' }]) {
    const app = Fastify()
    app.register(sessionPlugin, { store: new MemoryStore(), cleanup: false, audit: audit as SessionPluginOptions['audit'] })
    await t.rejects(async () => { await app.ready() }, /option "audit\.(maxEventsPerUser|feed)"/, JSON.stringify(audit))
    await app.close()
  }
  const app = Fastify()
  app.register(sessionPlugin, { store: new MemoryStore(), cleanup: false, audit: { maxEventsPerUser: 2, feed: true } })
  t.teardown(() => app.close())
  await app.ready()
  t.equal(app.sessions.auditMaxEventsPerUser, 2)
  t.equal(app.sessions.auditFeed, true)
})

test('an event keeps any session id and data it was recorded with, separators included', async (t) => {
  const server = await startRedis(t)
  const { manager } = setup(t, server)
  await manager.recordSecurityEvent('oscar', 'odd|id|{"x":1}|', { rule: 'a|b', note: '|{}|' })
  await manager.recordSecurityEvent('oscar', '', { rule: '' })
  t.same((await manager.auditLog('oscar')).map((event) => [event.sessionId, event.data]), [
    ['', { rule: '' }],
    ['odd|id|{"x":1}|', { rule: 'a|b', note: '|{}|' }]
  ])
})
