import type { Test } from 'tap'
import { FLAG_DISTINCT_IPS, FLAG_RAPID_CREATION } from '../../lib/security/concurrency'
import { SessionManager, type AuditEvent, type NewDeviceEvent, type SessionManagerOptions } from '../../lib/core/manager'
import { ENDED_SESSION_MEMORY_MS, endReasonOf } from '../../lib/security/stepup'
import type { ContractTarget } from './contract'

const MINUTE = 60_000
const DAY = 86_400_000

/**
 * Issue 14 (step-up, flags that age, why a session ended, known devices, "this wasn't me", device names): the
 * same behaviour from every store, through the manager. Called by storeContract, so it runs on Redis, Redis
 * Cluster, ioredis 5 and the memory store.
 */
export function stepupContract (t: Test, target: ContractTarget): void {
  let clock = 0
  async function manager (t: Test, options: Partial<SessionManagerOptions> = {}): Promise<SessionManager> {
    const store = await target.make(t)
    clock = Date.now()
    return new SessionManager({ store, now: () => clock, ...options })
  }

  t.test('confirm clears the flags the user has now, moves authenticatedAt and audits confirmed; a new session flags again', async (t) => {
    const m = await manager(t, { security: { maxDistinctIps: 0, rapidCreationWindow: 0 } })
    const audits: AuditEvent[] = []
    m.on('audit', (event: AuditEvent) => audits.push(event))
    const phone = await m.create('ann', { ipAddress: '10.0.0.1', userAgent: 'Phone' })
    const laptop = await m.create('ann', { ipAddress: '10.0.0.2', userAgent: 'Laptop' })
    t.equal((await m.resolve(laptop.token, false) as { concurrencyFlags: number }).concurrencyFlags, FLAG_DISTINCT_IPS, 'flagged: another IP among the other sessions')
    clock += 5 * MINUTE
    t.equal(await m.confirm(laptop.session.id, { userId: 'ann', ipAddress: '10.0.0.3', userAgent: 'Laptop', method: 'totp' }), true)
    const confirmed = await m.resolve(laptop.token, false)
    t.equal((confirmed as { concurrencyFlags: number }).concurrencyFlags, 0, 'the flag is acknowledged')
    t.equal(confirmed?.session?.authenticatedAt.getTime(), clock)
    t.equal(confirmed?.session?.ipAddress, '10.0.0.3', 'the confirming IP is the new baseline')
    t.equal(phone.session.authenticatedAt.getTime(), phone.session.createdAt.getTime(), 'authenticatedAt starts at the login')
    t.match(audits.find((event) => event.type === 'confirmed'), { sessionId: laptop.session.id, userId: 'ann', data: { method: 'totp', ip: '10.0.0.3' } })
    clock += MINUTE
    t.equal((await m.resolve(laptop.token) as { concurrencyFlags: number }).concurrencyFlags, 0, 'still clear after a touch')
    await m.create('ann', { ipAddress: '10.0.0.9', userAgent: 'Tablet' })
    t.equal((await m.resolve(laptop.token, false) as { concurrencyFlags: number }).concurrencyFlags, FLAG_DISTINCT_IPS, 'a new session of the user is something new')
  })

  t.test('a new IP on another session ends the acknowledgement; removing a session does not', async (t) => {
    const m = await manager(t, { security: { maxDistinctIps: 0, rapidCreationWindow: 0 } })
    const a = await m.create('bea', { ipAddress: '10.0.0.1' })
    const b = await m.create('bea', { ipAddress: '10.0.0.2' })
    const c = await m.create('bea', { ipAddress: '10.0.0.3' })
    await m.confirm(b.session.id, { method: 'password', ipAddress: '10.0.0.2' })
    await m.invalidate(c.session.id)
    t.equal((await m.resolve(b.token, false) as { concurrencyFlags: number }).concurrencyFlags, 0)
    await m.update(a.session.id, { ipAddress: '10.0.0.7' })
    t.equal((await m.resolve(b.token, false) as { concurrencyFlags: number }).concurrencyFlags, FLAG_DISTINCT_IPS)
  })

  t.test('confirm refuses a wrong owner, an empty owner and a bad method, and never revives an ended session', async (t) => {
    const m = await manager(t)
    const { token, session } = await m.create('cid')
    t.equal(await m.confirm(session.id, { userId: 'mallory', method: 'password' }), false)
    await t.rejects(m.confirm(session.id, { userId: '', method: 'password' }), { code: 'FST_SESSION_INVALID_OWNER', statusCode: 400 })
    await t.rejects(m.confirm(session.id, { userId: 7 as unknown as string, method: 'password' }), { code: 'FST_SESSION_INVALID_OWNER' })
    await t.rejects(m.confirm(session.id, { method: 'pass word' }), { code: 'FST_SESSION_INVALID_ARGUMENT', statusCode: 400 })
    await t.rejects(m.confirm(session.id, { method: 'x'.repeat(33) }), { code: 'FST_SESSION_INVALID_ARGUMENT' })
    t.equal(await m.confirm('nope', { method: 'password' }), false)
    await m.invalidate(session.id)
    t.equal(await m.confirm(session.id, { method: 'password' }), false)
    t.match(await m.resolve(token), { session: null, ended: { reason: 'signed_out' } }, 'still ended')
  })

  t.test('a burst-of-logins flag clears by itself once the window has passed with no new login', async (t) => {
    const m = await manager(t, { idleTimeout: '12h', absoluteTimeout: '48h', security: { rapidCreationWindow: '5m' } })
    const a = await m.create('dan')
    clock += MINUTE
    const b = await m.create('dan')
    clock += MINUTE
    const c = await m.create('dan')
    for (const s of [a, b, c]) t.equal((await m.resolve(s.token, false) as { concurrencyFlags: number }).concurrencyFlags, FLAG_RAPID_CREATION)
    t.same((await m.detectConcurrentSessions('dan', a.session.id)).reasons, ['rapid_creation'])
    clock += 5 * MINUTE
    t.equal((await m.resolve(a.token, false) as { concurrencyFlags: number }).concurrencyFlags, FLAG_RAPID_CREATION, 'c, the newest other login, is exactly 5 minutes old: still inside')
    clock += 1
    for (const s of [a, b, c]) t.equal((await m.resolve(s.token) as { concurrencyFlags: number }).concurrencyFlags, 0, 'aged out, with or without a touch')
    t.same((await m.detectConcurrentSessions('dan', a.session.id)).reasons, [], 'detectConcurrentSessions applies the same age')
    clock += 6 * 3_600_000
    t.equal((await m.resolve(a.token) as { concurrencyFlags: number }).concurrencyFlags, 0, 'six hours later with activity')
    const d = await m.create('dan', {}, { ttl: '48h' })
    t.equal((await m.resolve(d.token, false) as { concurrencyFlags: number }).concurrencyFlags, 0, 'a login long after an old burst is not flagged by it')
    clock += MINUTE
    const e = await m.create('dan')
    t.equal((await m.resolve(e.token, false) as { concurrencyFlags: number }).concurrencyFlags, 0, 'two logins are not a burst')
    clock += MINUTE
    const f = await m.create('dan')
    t.equal((await m.resolve(f.token, false) as { concurrencyFlags: number }).concurrencyFlags, 0, 'f sees a, b, c, d, e: not all within the window')
    t.ok(await m.get(d.token))
  })

  t.test('a token of an ended session learns why and when, for a day, and only its holder does', async (t) => {
    const m = await manager(t, { maxSessionsPerUser: 2, idleTimeout: '30m' })
    const logout = await m.create('eve')
    await m.invalidate(logout.session.id)
    t.match(await m.resolve(logout.token), { session: null, ended: { reason: 'signed_out', at: new Date(clock) } })
    const wrong = `${logout.session.id}.${'A'.repeat(43)}`
    t.equal(await m.resolve(wrong), null, 'a guessed secret learns nothing')
    t.equal(await m.get(logout.token), null)

    const revoked = await m.create('eve')
    await m.invalidate(revoked.session.id, { reason: 'revoked' })
    t.match(await m.resolve(revoked.token), { ended: { reason: 'revoked' } })

    const old = await m.create('eve')
    clock += 1
    await m.create('eve')
    clock += 1
    await m.create('eve')
    t.match(await m.resolve(old.token), { ended: { reason: 'evicted' } })

    const forced = await m.create('fay')
    await m.forceReauthentication('fay', 'password changed')
    t.match(await m.resolve(forced.token), { ended: { reason: 'reauth_required' } })

    const rotating = await m.create('gus')
    clock += 10
    const rotated = await m.rotate(rotating.token)
    t.ok(rotated)
    t.match(await m.resolve(rotating.token), { session: null, ended: { reason: 'rotated', at: new Date(clock) } })
    t.ok((await m.resolve(rotated?.token as string))?.session, 'the new token works')

    clock += ENDED_SESSION_MEMORY_MS
    t.equal(await m.resolve(logout.token), null, 'forgotten after a day')
    t.equal(await m.resolve(rotating.token), null)
  })

  t.test('the reason kept for an ended session follows one table in Lua and in TypeScript, whatever reason the caller gave', async (t) => {
    const m = await manager(t, { maxSessionsPerUser: 50 })
    for (const given of ['logout', 'new_login', 'revoked', 'revoke_others', 'invalidate_all', 'force_reauthentication: x', 'unrecognized',
      'login_timed_out', 'logout: but longer', 'signed_out_from_devices_page', '', 'é\u0000"quoted"', '__proto__', 'constructor']) {
      const { token, session } = await m.create('pat')
      await m.invalidate(session.id, { reason: given })
      // eslint-disable-next-line no-control-regex -- the manager strips control characters from reasons: the test does the same
      const expected = endReasonOf('invalidated', JSON.stringify({ reason: given.replace(/[\u0000-\u001f\u007f]/g, '') }))
      t.match(await m.resolve(token), { ended: { reason: expected } }, JSON.stringify(given))
    }
  })

  t.test('an expired session tells it expired, on the first request after its deadline and after cleanup', async (t) => {
    const m = await manager(t, { idleTimeout: '30m' })
    const first = await m.create('hal')
    const second = await m.create('ivy')
    const deadline = new Date(clock + 30 * MINUTE)
    clock += 31 * MINUTE
    t.match(await m.resolve(first.token), { session: null, ended: { reason: 'expired', at: deadline } }, 'at its deadline')
    t.match(await m.resolve(first.token), { session: null, ended: { reason: 'expired', at: deadline } }, 'again, from what is kept')
    await m.cleanup()
    t.match(await m.resolve(second.token), { session: null, ended: { reason: 'expired', at: deadline } }, 'cleanup keeps why and when')
  })

  t.test('a late write never brings an ended session back', async (t) => {
    const m = await manager(t, { touchInterval: 0 })
    const { token, session } = await m.create('ida', { metadata: { n: 1 } })
    await m.invalidate(session.id)
    clock += 1
    t.equal(await m.update(session.id, { metadata: { n: 2 } }), false)
    t.equal(await m.rotate(token), null)
    t.equal(await m.rename(session.id, { userId: 'ida', name: 'Phone' }), false)
    t.equal(await m.invalidate(session.id), false)
    t.equal(await m.get(token), null)
    t.same(await m.list('ida'), [])
    t.match(await m.resolve(token), { ended: { reason: 'signed_out' } }, 'the first reason stays')
  })

  t.test("reportUnrecognized ends the session (and with endOthers every other but except), audits 'unrecognized' and emits security events", async (t) => {
    const m = await manager(t, { maxSessionsPerUser: 10, security: { knownDevices: false } })
    const audits: AuditEvent[] = []
    const security: AuditEvent[] = []
    m.on('audit', (event: AuditEvent) => audits.push(event))
    m.on('security', (event: AuditEvent) => security.push(event))
    const [mine, thief, other, more] = [await m.create('jo'), await m.create('jo'), await m.create('jo'), await m.create('jo')]
    const stranger = await m.create('kim')
    t.equal(await m.reportUnrecognized(stranger.session.id, { userId: 'jo' }), 0, 'another user\'s session is not the caller\'s to report')
    t.ok(await m.get(stranger.token))
    t.equal(await m.reportUnrecognized(thief.session.id, { userId: 'jo' }), 1)
    t.match(await m.resolve(thief.token), { ended: { reason: 'unrecognized' } })
    t.ok(await m.get(other.token), 'the others live on')
    t.same(audits.filter((event) => event.type === 'unrecognized').map((event) => event.sessionId), [thief.session.id])
    t.same(security.map((event) => [event.type, event.sessionId]), [['unrecognized', thief.session.id]])
    t.same((await m.auditLog('jo')).filter((event) => event.type === 'unrecognized').map((event) => event.sessionId), [thief.session.id])

    t.equal(await m.reportUnrecognized(other.session.id, { userId: 'jo', endOthers: true, except: mine.session.id }), 2)
    for (const gone of [other, more]) t.match(await m.resolve(gone.token), { ended: { reason: 'unrecognized' } })
    t.same((await m.list('jo')).map((s) => s.id), [mine.session.id])
    t.equal(await m.reportUnrecognized(thief.session.id, { userId: 'jo' }), 0, 'an ended session cannot be reported twice')
    await t.rejects(m.reportUnrecognized(mine.session.id, { userId: '' }), { code: 'FST_SESSION_INVALID_OWNER' })
    await t.rejects(m.reportUnrecognized(mine.session.id, {} as { userId: string }), { code: 'FST_SESSION_INVALID_OWNER' })
    await t.rejects(m.reportUnrecognized(mine.session.id, { userId: 'jo', except: 'x' }), { code: 'FST_SESSION_INVALID_ARGUMENT' })
  })

  t.test('rename names a session of its owner; null removes the name; anything but plain text up to 64 characters is refused', async (t) => {
    const m = await manager(t)
    const { token, session } = await m.create('lea')
    t.equal((await m.get(token))?.name, null)
    t.equal(await m.rename(session.id, { userId: 'lea', name: '  Léa’s phone 📱 ' }), true)
    t.equal((await m.get(token))?.name, 'Léa’s phone 📱')
    t.equal((await m.list('lea'))[0]?.name, 'Léa’s phone 📱')
    t.equal(await m.rename(session.id, { userId: 'max', name: 'Mine now' }), false, 'not the owner')
    t.equal(await m.rename(session.id, { userId: 'lea', name: 'x'.repeat(64) }), true)
    t.equal(await m.rename(session.id, { userId: 'lea', name: 'Family 👩\u200D👩\u200D👧 tablet' }), true, 'an emoji joiner is text')
    // Bidi overrides and zero-width characters would let a name show as something else.
    for (const bad of ['x'.repeat(65), '', '   ', 'a\u0000b', 'tab\there', '<script>', '\uD800', 42, '\u202Egnp.exe', 'a\u200Bb', '\u2066x']) {
      await t.rejects(m.rename(session.id, { userId: 'lea', name: bad as string }), { code: 'FST_SESSION_INVALID_ARGUMENT' }, JSON.stringify(bad))
    }
    await t.rejects(m.rename(session.id, { userId: '', name: 'x' }), { code: 'FST_SESSION_INVALID_OWNER' })
    t.equal(await m.rename(session.id, { userId: 'lea', name: null }), true)
    t.equal((await m.get(token))?.name, null)
    t.equal((await m.get(token))?.metadata !== undefined, true)
  })

  t.test('a security event holds at most 4096 characters of well-formed data', async (t) => {
    const m = await manager(t)
    await t.rejects(m.recordSecurityEvent('lea', '', { big: 'x'.repeat(5000) }), { code: 'FST_SESSION_INVALID_ARGUMENT' })
    await t.rejects(m.recordSecurityEvent('lea', '', { bad: '\uD800' }), { code: 'FST_SESSION_INVALID_ARGUMENT' })
    await m.recordSecurityEvent('lea', '', { rule: 'custom', note: 'x'.repeat(100) })
    t.match((await m.auditLog('lea'))[0], { type: 'security', data: { rule: 'custom' } })
  })

  t.test("a login from a device the user has not used within knownDevices is new: returned, emitted as 'newDevice' and audited", async (t) => {
    const m = await manager(t, { maxSessionsPerUser: 50, security: { knownDevices: '30d', rapidCreationWindow: 0 } })
    const seen: NewDeviceEvent[] = []
    m.on('newDevice', (event: NewDeviceEvent) => seen.push(event))
    const chrome = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36'
    const chromeNext = chrome.replace('130.0', '131.0')
    const iphone = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1'
    t.equal((await m.create('mia', { ipAddress: '203.0.113.7', userAgent: chrome })).newDevice, false, 'the first device remembered is not reported')
    t.equal((await m.create('mia', { ipAddress: '203.0.113.99', userAgent: chromeNext })).newDevice, false, 'same browser family, same /24')
    const phone = await m.create('mia', { ipAddress: '198.51.100.23', userAgent: iphone })
    t.equal(phone.newDevice, true)
    t.same(seen, [{ userId: 'mia', sessionId: phone.session.id, ipAddress: '198.51.100.23', userAgent: iphone, timestamp: new Date(clock) }])
    t.match((await m.auditLog('mia')).find((event) => event.type === 'security'), { sessionId: phone.session.id, data: { rule: 'new_device', ip: '198.51.100.23' } })
    clock += 29 * DAY
    t.equal((await m.create('mia', { ipAddress: '198.51.100.1', userAgent: iphone })).newDevice, false, 'known: used 29 days ago')
    clock += 30 * DAY + 1
    t.equal((await m.create('mia', { ipAddress: '192.0.2.1', userAgent: iphone })).newDevice, false, 'every device forgotten: this one is the first again')
    t.equal((await m.create('mia', { ipAddress: '203.0.113.7', userAgent: chrome })).newDevice, true, 'the laptop was forgotten after 30 days without use')
    t.equal(seen.length, 2)
  })

  t.test('a user remembers at most 20 devices, the least recently used are forgotten first', async (t) => {
    const m = await manager(t, { maxSessionsPerUser: 50, security: { rapidCreationWindow: 0 } })
    for (let n = 0; n < 21; n++) {
      await m.create('ned', { ipAddress: `10.${n}.0.1`, userAgent: 'Firefox/120' })
      clock += 1000
    }
    t.equal((await m.create('ned', { ipAddress: '10.20.0.1', userAgent: 'Firefox/120' })).newDevice, false, 'the newest is known')
    t.equal((await m.create('ned', { ipAddress: '10.0.0.1', userAgent: 'Firefox/120' })).newDevice, true, 'the oldest of 21 was forgotten')
  })

  t.test('knownDevices false turns the notice off', async (t) => {
    const m = await manager(t, { security: { knownDevices: false } })
    let events = 0
    m.on('newDevice', () => events++)
    await m.create('oda', { ipAddress: '10.0.0.1', userAgent: 'A' })
    t.equal((await m.create('oda', { ipAddress: '10.9.0.1', userAgent: 'Firefox/1' })).newDevice, false)
    t.equal(events, 0)
    t.throws(() => new SessionManager({ store: m.store, security: { knownDevices: '401d' } }), { code: 'FST_SESSION_INVALID_OPTION' })
    t.throws(() => new SessionManager({ store: m.store, security: { knownDevices: 'soon' } }), { code: 'FST_SESSION_INVALID_OPTION' })
  })
}
