import { Redis } from 'ioredis'
import { test } from 'tap'
import { sessionKey } from '../lib/store/redis/keys'
import { SessionManager, type AuditEvent } from '../lib/core/manager'
import { ENDED_SESSION_MEMORY_MS } from '../lib/security/stepup'
import { RedisStore } from '../lib/store/redis/store'
import { startRedis } from './helpers/redis'

const MINUTE = 60_000

test('ended sessions on Redis', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  let n = 0
  function manager (options: { idleTimeout?: string } = {}): { m: SessionManager, prefix: string, clock: { now: number } } {
    const prefix = `e${n++}:`
    const clock = { now: Date.now() }
    return { m: new SessionManager({ store: new RedisStore({ client, prefix }), now: () => clock.now, ...options }), prefix, clock }
  }

  t.test('an ended session\'s key holds only its reason, time and token hash, for at most a day, and is never called corrupt', async (t) => {
    const { m, prefix, clock } = manager()
    const audits: AuditEvent[] = []
    m.on('audit', (event: AuditEvent) => audits.push(event))
    const { token, session } = await m.create('ann', { ipAddress: '10.0.0.1', userAgent: 'UA', metadata: { big: 'x'.repeat(500) } })
    await m.invalidate(session.id)
    const key = sessionKey(prefix, session.id)
    const tombstone = JSON.parse(await client.get(key) as string) as Record<string, unknown>
    t.same(Object.keys(tombstone).sort(), ['at', 'h', 'x'])
    t.match(tombstone, { x: 'signed_out', at: clock.now })
    t.notMatch(JSON.stringify(tombstone), token.split('.')[1] as string, 'the hash, never the secret')
    const pttl = await client.pttl(key)
    t.ok(pttl <= ENDED_SESSION_MEMORY_MS && pttl > ENDED_SESSION_MEMORY_MS - MINUTE, `PTTL ${pttl}`)
    for (let k = 0; k < 3; k++) t.match(await m.resolve(token), { ended: { reason: 'signed_out' } })
    t.equal(audits.filter((event) => event.type === 'corrupt').length, 0, 'never discarded as corrupt')
    t.ok(await client.exists(key))
  })

  t.test('memory: a tombstone costs a fraction of a session (MEMORY USAGE), measured', async (t) => {
    const { m, prefix } = manager()
    const ua = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36'
    const live = await m.create('bea', { ipAddress: '203.0.113.7', userAgent: ua, deviceFingerprint: 'v1.abcdefgh.abcdefgh.abcdefgh.abcdefgh.abcdefgh...' })
    const ended = await m.create('bea', { ipAddress: '203.0.113.7', userAgent: ua, deviceFingerprint: 'v1.abcdefgh.abcdefgh.abcdefgh.abcdefgh.abcdefgh...' })
    await m.invalidate(ended.session.id)
    const liveBytes = Number(await client.call('MEMORY', 'USAGE', sessionKey(prefix, live.session.id), 'SAMPLES', '0'))
    const endedBytes = Number(await client.call('MEMORY', 'USAGE', sessionKey(prefix, ended.session.id), 'SAMPLES', '0'))
    t.comment(`MEMORY USAGE: live session key ${liveBytes} B, tombstone ${endedBytes} B`)
    t.ok(endedBytes < 200, `a tombstone takes ${endedBytes} bytes`)
    t.ok(endedBytes < liveBytes * 0.6, `less than 60% of a live session (${liveBytes} bytes with this browser user agent)`)
  })

  t.test('a record outlives its deadline by the memory window, so the first request after expiry tells expired; cleanup buries it', async (t) => {
    const { m, prefix, clock } = manager({ idleTimeout: '30m' })
    const { token, session } = await m.create('cid')
    const pttl = await client.pttl(sessionKey(prefix, session.id))
    t.ok(pttl > 30 * MINUTE + ENDED_SESSION_MEMORY_MS - MINUTE && pttl <= 30 * MINUTE + ENDED_SESSION_MEMORY_MS, `PTTL ${pttl}`)
    const other = await m.create('cid2')
    clock.now += 31 * MINUTE
    t.match(await m.resolve(token), { session: null, ended: { reason: 'expired' } })
    t.same(await m.cleanup(), { expired: 1, orphaned: 0 })
    t.match(JSON.parse(await client.get(sessionKey(prefix, other.session.id)) as string), { x: 'expired', at: other.session.expiresAt.getTime() }, 'ended at its deadline')
    t.match(await m.resolve(other.token), { ended: { reason: 'expired' } })
  })

  t.test('a hand-written tombstone without a hash tells nothing, and a tombstone is not overwritten by a second end', async (t) => {
    const { m, prefix } = manager()
    const { token, session } = await m.create('dee')
    await m.invalidate(session.id, { reason: 'revoked' })
    await m.reportUnrecognized(session.id, { userId: 'dee' })
    t.match(await m.resolve(token), { ended: { reason: 'revoked' } }, 'the first reason stays')
    await client.set(sessionKey(prefix, session.id), JSON.stringify({ x: 'revoked', at: 1 }))
    t.equal(await m.resolve(token), null)
  })
})
