import Fastify, { type FastifyReply, type FastifyRequest, type HookHandlerDoneFunction } from 'fastify'
import { expectAssignable, expectError, expectType } from 'tsd'
import sessionPlugin, { getSession, requireSession, type RotateSessionOptions, type Session, type StartSessionData } from '..'

const app = Fastify()
app.register(sessionPlugin, { startupCheck: { timeout: '5s' }, cookie: { partitioned: true } })
app.register(sessionPlugin, { startupCheck: false })
expectError(app.register(sessionPlugin, { startupCheck: true }))

// The named hook works as any route hook, in any context, and is the same function as the decorator.
expectType<(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void>(requireSession)
app.register(async (child) => {
  child.addHook('preHandler', requireSession)
  child.get('/orders', { preHandler: requireSession }, async (request) => {
    // Behind requireSession: a non-null session without `?.` or `!`.
    const session = getSession(request)
    expectType<Session>(session)
    expectType<string>(session.userId)
    return { userId: session.userId }
  })
  child.get<{ Params: { id: string } }>('/orders/:id', { preValidation: requireSession }, async (request) => {
    expectType<string>(getSession(request).id)
    return { id: request.params.id }
  })
})
expectType<Session | null>(({} as FastifyRequest).session)

// Remember-me and browser-session cookies.
expectAssignable<StartSessionData>({ ttl: '30d', idleTimeout: '7d' })
expectAssignable<StartSessionData>({ persistent: false })
expectError<StartSessionData>({ persistent: 'no' })
expectAssignable<RotateSessionOptions>({ persistent: false })

// Routes without a session load.
app.get('/health', { config: { session: false } }, async () => ({ ok: true }))
expectError(app.get('/health2', { config: { session: 'no' } }, async () => ({ ok: true })))
