import Fastify from 'fastify'
import { expectAssignable, expectError, expectType } from 'tsd'
import sessionPlugin, {
  requireFreshSession, type NewDeviceEvent, type SessionEnded, type SessionEndReason
} from '..'

// Issue 14: step-up, freshness, why a session ended, new devices, device names.
const app = Fastify()
app.register(sessionPlugin, { security: { knownDevices: '90d' } })
app.register(sessionPlugin, { security: { knownDevices: false } })
expectError(app.register(sessionPlugin, { security: { knownDevices: true } }))

app.post('/verify', { preHandler: app.requireSession }, async (request, reply) => {
  expectType<Promise<boolean>>(reply.confirmSession({ method: 'password' }))
  expectError(reply.confirmSession())
  expectType<Date | undefined>(request.session?.authenticatedAt)
  expectType<string | null | undefined>(request.session?.name)
  return 'ok'
})

app.get('/login', async (request, reply) => {
  expectType<SessionEnded | null>(request.sessionEnded)
  expectAssignable<SessionEndReason | undefined>(request.sessionEnded?.reason)
  expectType<Date | undefined>(request.sessionEnded?.at)
  const started = await reply.startSession('alice', { metadata: { plan: 'pro' } })
  expectType<boolean>(started.newDevice)
  return 'ok'
})

app.post('/email', { preHandler: requireFreshSession('10m') }, async () => 'changed')
app.post('/password', { preHandler: [app.requireSession, requireFreshSession(300_000)] }, async () => 'changed')
expectError(requireFreshSession())

expectType<Promise<boolean>>(app.sessions.confirm('id', { userId: 'alice', ipAddress: '1.2.3.4', userAgent: 'UA', deviceFingerprint: 'v1', method: 'totp' }))
expectError(app.sessions.confirm('id', { userId: 'alice' }))
expectType<Promise<number>>(app.sessions.reportUnrecognized('id', { userId: 'alice' }))
expectType<Promise<number>>(app.sessions.reportUnrecognized('id', { userId: 'alice', endOthers: true, except: 'mine' }))
expectError(app.sessions.reportUnrecognized('id', {}))
expectType<Promise<boolean>>(app.sessions.rename('id', { userId: 'alice', name: 'Phone' }))
expectType<Promise<boolean>>(app.sessions.rename('id', { userId: 'alice', name: null }))
expectError(app.sessions.rename('id', { name: 'Phone' }))
app.sessions.on('newDevice', (event: NewDeviceEvent) => {
  expectType<string>(event.userId)
  expectType<string>(event.sessionId)
  expectType<string>(event.ipAddress)
  expectType<string>(event.userAgent)
  expectType<Date>(event.timestamp)
})
expectAssignable<SessionEndReason[]>(['expired', 'signed_out', 'revoked', 'evicted', 'rotated', 'reauth_required', 'unrecognized'])

// The manager's events are a typed map.
app.sessions.on('cleanup', (result) => { expectType<boolean>(result.skipped) })
app.sessions.on('storeError', (error) => { expectType<Error>(error) })
expectError(app.sessions.on('no-such-event', () => {}))
expectError(app.sessions.on('audit', (event: number) => event))
