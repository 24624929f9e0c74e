import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import { expectAssignable, expectError, expectType } from 'tsd'
import sessionPlugin, {
  MemoryStore, RedisStore, SessionManager, sessionPlugin as namedPlugin, type AuditEvent, type Session,
  type SessionPluginOptions
} from '..'
import requiredPlugin = require('..')

declare module '..' {
  interface SessionMetadata {
    plan: string
  }
}

// Every import style gives the same plugin.
expectType<typeof sessionPlugin>(namedPlugin)
expectType<typeof sessionPlugin>(requiredPlugin.default)
expectType<typeof sessionPlugin>(requiredPlugin.sessionPlugin)

const app = Fastify({ trustProxy: true })
app.register(sessionPlugin, { redis: 'redis://127.0.0.1:6379' })
app.register(sessionPlugin, { store: new MemoryStore(), idleTimeout: '30m', absoluteTimeout: 86_400_000, cookie: { signed: true, secret: ['a'.repeat(32)] } })
app.register(sessionPlugin, { cookie: false, routes: { prefix: '/auth' }, cleanup: false, onStoreError: 'fail-open' })
app.register(sessionPlugin, { security: { onSuspicious: async (request, report) => { expectType<FastifyRequest>(request); expectAssignable<string[]>(report.reasons) } } })
expectError(app.register(sessionPlugin, { limitPolicy: 'lru' }))
expectError(app.register(sessionPlugin, { cookie: { sameSite: 'sideways' } }))
expectAssignable<SessionPluginOptions>({ redis: 'redis://localhost', maxSessionsPerUser: 3 })
expectAssignable<SessionPluginOptions>({ redis: 'redis://localhost', batchWrites: false, nearCache: true })
expectError(app.register(sessionPlugin, { redis: 'redis://localhost', batchWrites: 'no' }))

// The README example.
app.get('/orders', { preHandler: app.requireSession }, async (request) => {
  expectType<boolean>(request.requiresSecurityCheck)
  expectType<Session | null>(request.session)
  expectType<string>(request.session!.userId)
  // A stored session may predate the field or have lost it to an update(): read as possibly absent.
  expectType<string | undefined>(request.session!.metadata.plan)
  expectType<Date>(request.session!.expiresAt)
  return []
})
app.post('/login', async (request, reply) => {
  expectType<FastifyReply>(reply)
  const { token, session } = await reply.startSession('user-1', { metadata: { plan: 'pro' } })
  expectType<string>(token)
  expectType<Session>(session)
  return { token, sessionId: session.id }
})

expectType<SessionManager>(app.sessions)
expectType<Promise<Session[]>>(app.sessions.list('user-1'))
expectType<Promise<number>>(app.sessions.invalidateAll('user-1', { except: 'id' }))
expectType<Promise<boolean>>(app.sessions.invalidate('id'))
expectType<Promise<Session | null>>(app.sessions.get('token'))
expectType<Promise<AuditEvent[]>>(app.sessions.auditLog('user-1', { limit: 10 }))
expectType<RedisStore>(new RedisStore({ client: 'redis://localhost' }))
expectType<RedisStore>(new RedisStore({ client: 'redis://localhost', batchWrites: false }))
expectError(new RedisStore({ client: 'redis://localhost', batchWrites: 'no' }))
