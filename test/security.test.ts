import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { test } from 'tap'
import sessionPlugin, { type AuditEvent } from '../lib/index'
import { buildApp, BROWSER, login } from './helpers/app'
import { startRedis } from './helpers/redis'
import { commandsProcessed } from './helpers/redis-inspect'

const NO_RAPID = { rapidCreationWindow: 0 }

function from (ip: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...BROWSER, 'x-forwarded-for': ip, ...extra }
}

test('OWASP simultaneous logons: more than maxDistinctIps other IPs flag the session', async (t) => {
  const app = await buildApp(t, { security: { ...NO_RAPID, maxDistinctIps: 2 } })
  const mine = await login(app, 'alice', from('10.0.0.1'))
  await login(app, 'alice', from('10.0.0.2'))
  await login(app, 'alice', from('10.0.0.3'))
  const atLimit = await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': mine.token }) })
  t.equal(atLimit.json().check, false, 'two other IPs: not more than the threshold')
  await login(app, 'alice', from('10.0.0.4'))
  const over = await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': mine.token }) })
  t.equal(over.json().check, true, 'three other IPs: flagged')
  const report = await app.sessions.detectConcurrentSessions('alice', mine.sessionId)
  t.same(report.reasons, ['distinct_ips'])
  t.equal(report.suspiciousActivity, true)
  t.equal(report.concurrentSessions, 3)
})

test('OWASP simultaneous logons: more than maxDistinctUserAgents other user agents flag the session', async (t) => {
  const app = await buildApp(t, { maxSessionsPerUser: 10, security: { ...NO_RAPID, maxDistinctUserAgents: 2, maxDistinctIps: 100 } })
  const mine = await login(app, 'bob', from('10.0.0.1'))
  for (const agent of ['A/1', 'B/1']) await login(app, 'bob', from('10.0.0.1', { 'user-agent': agent }))
  t.equal((await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': mine.token }) })).json().check, false)
  await login(app, 'bob', from('10.0.0.1', { 'user-agent': 'C/1' }))
  t.equal((await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': mine.token }) })).json().check, true)
  t.same((await app.sessions.detectConcurrentSessions('bob', mine.sessionId)).reasons, ['distinct_user_agents'])
})

test('OWASP simultaneous logons: other sessions created within rapidCreationWindow of each other flag the session', async (t) => {
  let clock = Date.now()
  const app = await buildApp(t, { now: () => clock, security: { rapidCreationWindow: '5m' } })
  const mine = await login(app, 'carol', from('10.0.0.1'))
  clock += 10 * 60_000
  await login(app, 'carol', from('10.0.0.1'))
  t.equal((await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': mine.token }) })).json().check, false, 'one other session: the rule needs two')
  clock += 5 * 60_000
  await login(app, 'carol', from('10.0.0.1'))
  t.equal((await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': mine.token }) })).json().check, true, 'two others exactly 5 minutes apart: flagged (the window is inclusive)')
  clock += 60_000
  const late = await login(app, 'carol', from('10.0.0.1'))
  t.same((await app.sessions.detectConcurrentSessions('carol', late.sessionId)).reasons, [], 'for the newest session the others span 15 minutes')
})

test('ASVS 7 session binding: a request from another IP than the session was created on is flagged', async (t) => {
  const app = await buildApp(t)
  const { token } = await login(app, 'dave', from('192.0.2.1'))
  t.equal((await app.inject({ url: '/orders', headers: from('192.0.2.1', { 'x-session-id': token }) })).json().check, false)
  t.equal((await app.inject({ url: '/orders', headers: from('198.51.100.7', { 'x-session-id': token }) })).json().check, true)
  const relaxed = await buildApp(t, { security: { checkIp: false } })
  const other = await login(relaxed, 'dave', from('192.0.2.1'))
  t.equal((await relaxed.inject({ url: '/orders', headers: from('198.51.100.7', { 'x-session-id': other.token }) })).json().check, false, 'checkIp: false')
})

test('OWASP binding the session to device properties: a fingerprint below the tolerance is flagged', async (t) => {
  const app = await buildApp(t)
  const { token } = await login(app, 'erin', from('10.0.0.1'))
  const same = await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': token }) })
  t.equal(same.json().check, false, 'the same device')
  const encoding = await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': token, 'accept-encoding': 'identity' }) })
  t.equal(encoding.json().check, false, 'one low-weight header changed: still above 0.8')
  const agent = await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': token, 'user-agent': 'curl/8.0' }) })
  t.equal(agent.json().check, true, 'another browser: below 0.8')
  const strict = await buildApp(t, { security: { fingerprintTolerance: 1 } })
  const s = await login(strict, 'erin', from('10.0.0.1'))
  t.equal((await strict.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': s.token, 'accept-encoding': 'identity' }) })).json().check, true, 'tolerance 1: any change is flagged')
})

test("onSuspicious 'deny' answers 403 FST_SESSION_SUSPICIOUS; a function receives the report", async (t) => {
  const deny = await buildApp(t, { security: { onSuspicious: 'deny' } })
  const { token } = await login(deny, 'frank', from('10.0.0.1'))
  t.equal((await deny.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': token }) })).statusCode, 200)
  const denied = await deny.inject({ url: '/orders', headers: from('10.9.9.9', { 'x-session-id': token }) })
  t.equal(denied.statusCode, 403)
  t.same(denied.json(), { statusCode: 403, code: 'FST_SESSION_SUSPICIOUS', error: 'Forbidden', message: 'This session shows suspicious concurrent use: authenticate again' })
  const reports: unknown[] = []
  const custom = await buildApp(t, { security: { onSuspicious: async (request, report) => { reports.push({ url: request.url, ...report }) } } })
  const c = await login(custom, 'frank', from('10.0.0.1'))
  t.equal((await custom.inject({ url: '/orders', headers: from('10.9.9.9', { 'x-session-id': c.token }) })).statusCode, 200)
  t.match(reports, [{ url: '/orders', userId: 'frank', sessionId: c.sessionId, reasons: ['ip_changed'] }])
})

test('an onSuspicious handler that never settles is bounded by storeTimeout: 503, a warning, and no late crash', async (t) => {
  const lines: string[] = []
  let rejectLate: (error: Error) => void = () => {}
  const app = await buildApp(t, {
    storeTimeout: 150,
    security: {
      onSuspicious: async (request) => {
        if (request.headers['x-hang'] === 'reject-late') await new Promise((_resolve, reject) => { rejectLate = reject })
        else if (request.headers['x-hang'] === 'forever') await new Promise(() => {})
      }
    }
  }, { logger: { level: 'warn', stream: { write: (line: string) => { lines.push(line) } } } })
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })
  const { token } = await login(app, 'hank', from('10.0.0.1'))
  const elsewhere = (hang: string): Record<string, string> => from('10.9.9.9', { 'x-session-id': token, 'x-hang': hang })
  t.equal((await app.inject({ url: '/orders', headers: elsewhere('no') })).statusCode, 200, 'a handler that settles in time lets the request through')
  const startedAt = performance.now()
  const hung = await app.inject({ url: '/orders', headers: elsewhere('forever') })
  const waitedMs = performance.now() - startedAt
  t.equal(hung.statusCode, 503)
  t.equal(hung.json().code, 'FST_SESSION_SUSPICIOUS_HANDLER_TIMEOUT')
  t.ok(waitedMs >= 140 && waitedMs < 1500, `answered after ${waitedMs.toFixed(0)} ms, at storeTimeout (150 ms) plus at most a tick`)
  t.ok(lines.some((line) => line.includes('onSuspicious handler did not settle')), 'a warning names the handler')
  t.notOk(lines.some((line) => line.includes(token.split('.')[1] as string)), 'without the token')
  const late = await app.inject({ url: '/orders', headers: elsewhere('reject-late') })
  t.equal(late.statusCode, 503, 'a handler still pending at the deadline')
  rejectLate(new Error('decided too late'))
  // The late rejection settles on the next turns of the event loop.
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.same(unhandled, [], 'its late rejection is no unhandled rejection')
  t.equal((await app.inject({ url: '/orders', headers: elsewhere('no') })).statusCode, 200, 'and the app keeps serving')
})

test('security events are emitted, logged at warn without the token, and recorded in the audit log', async (t) => {
  const lines: string[] = []
  const app = await buildApp(t, { maxSessionsPerUser: 1 }, { logger: { level: 'warn', stream: { write: (line: string) => { lines.push(line) } } } })
  const events: AuditEvent[] = []
  app.sessions.on('security', (event: AuditEvent) => events.push(event))
  const first = await login(app, 'grace', from('10.0.0.1'))
  const second = await login(app, 'grace', from('10.0.0.1'))
  await app.inject({ url: '/orders', headers: from('10.7.7.7', { 'x-session-id': second.token }) })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.match(events, [
    { type: 'security', userId: 'grace', sessionId: first.sessionId, data: { rule: 'session_limit_eviction' } },
    { type: 'security', userId: 'grace', sessionId: second.sessionId, data: { rule: 'suspicious_session', reasons: ['ip_changed'] } }
  ])
  const warnings = lines.filter((line) => line.includes('security event'))
  t.equal(warnings.length, 2)
  t.match(warnings[1], second.sessionId)
  for (const line of lines) {
    t.notMatch(line, first.token.split('.')[1] as string)
    t.notMatch(line, second.token.split('.')[1] as string)
  }
  const audit = await app.sessions.auditLog('grace')
  t.equal(audit.filter((e) => e.type === 'security').length, 1, 'the suspicious session is recorded')
  t.match(audit.filter((e) => e.type === 'evicted'), [{ sessionId: first.sessionId, data: { reason: 'limit' } }],
    'the eviction is in the audit log once, written by the create script itself')
  await app.inject({ url: '/orders', headers: from('10.7.7.7', { 'x-session-id': second.token }) })
  t.equal(events.length, 2, 'a suspicious session is reported once a minute per instance, not on every request')
})

test('ASVS 7.4.2 / 7.4.5: forceReauthentication ends every session of the user and records a security event', async (t) => {
  const app = await buildApp(t)
  const a = await login(app, 'heidi')
  const b = await login(app, 'heidi')
  const other = await login(app, 'ivan')
  t.equal(await app.sessions.forceReauthentication('heidi', 'password reset'), 2)
  for (const gone of [a, b]) t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': gone.token } })).statusCode, 401)
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': other.token } })).statusCode, 200)
  const audit = await app.sessions.auditLog('heidi', { limit: 1 })
  t.match(audit, [{ type: 'security', data: { rule: 'force_reauthentication', reason: 'password reset', count: 2 } }])
})

test('OWASP renew the session id on privilege change: rotate kills the old token at once', async (t) => {
  const app = await buildApp(t)
  const { token, sessionId } = await login(app, 'judy')
  const rotated = await app.sessions.rotate(token)
  t.equal(rotated?.session.id, sessionId)
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': token } })).statusCode, 401)
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': rotated?.token } })).statusCode, 200)
})

test('OWASP session id anomalies: invalid tokens from one client raise one security event and, with blockAfter, a 429', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const app = await buildApp(t, { redis: client, security: { invalidTokenThreshold: 5, invalidTokenWindow: '1m', blockAfter: '10m' } })
  const good = await login(app, 'kim', from('10.0.0.1'))
  const events: AuditEvent[] = []
  app.sessions.on('security', (event: AuditEvent) => events.push(event))
  const statuses: number[] = []
  for (let n = 0; n < 8; n++) {
    statuses.push((await app.inject({ url: '/public', headers: from('203.0.113.9', { 'x-session-id': `${good.sessionId}.${'x'.repeat(43)}` }) })).statusCode)
  }
  t.same(statuses, [200, 200, 200, 200, 200, 200, 429, 429], 'the request past the threshold is served anonymously, the next ones are blocked')
  t.match(events, [{ data: { rule: 'invalid_tokens', ip: '203.0.113.9' } }])
  t.equal(events.length, 1, 'one event, not one per request')
  const blocked = await app.inject({ url: '/public', headers: from('203.0.113.9', { 'x-session-id': good.token }) })
  t.equal(blocked.statusCode, 429)
  t.same(blocked.json().code, 'FST_SESSION_TOO_MANY_INVALID_TOKENS')
  t.equal((await app.inject({ url: '/public', headers: from('203.0.113.9') })).statusCode, 200, 'a request without a token is not blocked')
  const before = await commandsProcessed(client)
  t.equal((await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': good.token }) })).statusCode, 200, 'other clients are unaffected')
  t.equal(await commandsProcessed(client) - before, 2, 'a valid request costs one command (plus the INFO): no abuse bookkeeping in Redis')
})

test('the security flag costs no extra Redis command, even when it fires', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const app = await buildApp(t, { redis: client, security: { maxDistinctIps: 0, rapidCreationWindow: 0 } })
  const mine = await login(app, 'leo', from('10.0.0.1'))
  await login(app, 'leo', from('10.0.0.2'))
  await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': mine.token }) })
  const before = await commandsProcessed(client)
  const response = await app.inject({ url: '/orders', headers: from('10.0.0.1', { 'x-session-id': mine.token }) })
  t.equal(response.json().check, true)
  t.equal(await commandsProcessed(client) - before, 2, 'one GET plus the INFO')
})

test('OWASP binding the session to device properties: client-supplied fingerprint fields given at login do not count against later requests', async (t) => {
  const app = Fastify({ trustProxy: true })
  await app.register(sessionPlugin, { cleanup: false })
  app.post('/login', async (_request, reply) => (await reply.startSession('olga', { fingerprint: { screen: '1920x1080', timezone: 'Europe/Paris', platform: 'Linux x86_64' } })).token)
  app.get('/check', async (request) => ({ check: request.requiresSecurityCheck }))
  t.teardown(() => app.close())
  const token = (await app.inject({ method: 'POST', url: '/login', headers: from('10.0.0.1') })).body
  t.same((await app.inject({ url: '/check', headers: from('10.0.0.1', { 'x-session-id': token }) })).json(), { check: false })
  t.same((await app.inject({ url: '/check', headers: from('10.0.0.1', { 'x-session-id': token, 'accept-encoding': 'identity' }) })).json(), { check: false }, 'one low-weight header changed')
  const stored = (await app.sessions.get(token, { touch: false }))?.deviceFingerprint ?? ''
  t.match(stored, /^v1(\.[A-Za-z0-9_-]{8}){3}\.\.(\.[A-Za-z0-9_-]{8}){3}$/, 'the client fields are stored')
})
