import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { errors } from './errors'
import type { Session } from './manager'
import type { RequestHandler } from './request'

const ErrorBody = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String(),
  error: Type.String(),
  message: Type.String()
})

const SessionView = Type.Object({
  id: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  lastActivity: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time' }),
  ipAddress: Type.String(),
  userAgent: Type.String(),
  /** stepup: the name the user gave the device */
  name: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean()
})

const SessionIdParams = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9_-]{24}$' })
}, { additionalProperties: false })

const Revoked = Type.Object({ revoked: Type.Integer({ minimum: 0 }) })

function withErrors<T> (ok: T): Record<string, unknown> {
  return { 200: ok, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 429: ErrorBody, 503: ErrorBody }
}

/**
 * stepup: a flagged session that has not been confirmed cannot end the user's other sessions (a session stolen
 * and flagged for its new IP must not sign the real user out everywhere); ending itself always works.
 */
function refuseIfSuspicious (request: FastifyRequest): void {
  if (request.requiresSecurityCheck) throw new errors.SESSION_SUSPICIOUS()
}

function current (request: FastifyRequest): Session {
  return request.session as Session
}

/** GET /profile, POST /logout, GET /sessions, DELETE /sessions/:id, DELETE /sessions: all behind requireSession. */
export function registerRoutes (app: FastifyInstance, handler: RequestHandler, prefix: string): void {
  const manager = handler.manager
  // Before validation, so an anonymous request gets 401 whatever its parameters.
  const preValidation = app.requireSession

  app.get(`${prefix}/profile`, {
    preValidation,
    schema: { response: withErrors(Type.Object({ userId: Type.String(), sessionId: Type.String() })) }
  }, async (request) => {
    const session = current(request)
    return { userId: session.userId, sessionId: session.id }
  })

  app.post(`${prefix}/logout`, {
    preValidation,
    schema: { response: withErrors(Type.Object({ message: Type.String() })) }
  }, async (request, reply) => {
    await handler.endSession(request, reply, 'logout')
    return { message: 'Successfully logged out' }
  })

  app.get(`${prefix}/sessions`, {
    preValidation,
    schema: { response: withErrors(Type.Object({ sessions: Type.Array(SessionView) })) }
  }, async (request) => {
    const session = current(request)
    const sessions = await handler.guard(manager.list(session.userId))
    return {
      sessions: sessions.map((s) => ({
        id: s.id,
        createdAt: s.createdAt.toISOString(),
        lastActivity: s.lastActivity.toISOString(),
        expiresAt: s.expiresAt.toISOString(),
        ipAddress: s.ipAddress,
        userAgent: s.userAgent,
        name: s.name,
        current: s.id === session.id
      }))
    }
  })

  app.delete<{ Params: { id: string } }>(`${prefix}/sessions/:id`, {
    preValidation,
    schema: { params: SessionIdParams, response: withErrors(Revoked) }
  }, async (request, reply) => {
    const session = current(request)
    if (request.params.id === session.id) {
      await handler.endSession(request, reply, 'revoked')
      return { revoked: 1 }
    }
    refuseIfSuspicious(request) // stepup
    const revoked = await handler.guard(manager.invalidate(request.params.id, { userId: session.userId, reason: 'revoked' }))
    if (!revoked) throw new errors.SESSION_NOT_FOUND()
    return { revoked: 1 }
  })

  app.delete(`${prefix}/sessions`, {
    preValidation,
    schema: { response: withErrors(Revoked) }
  }, async (request) => {
    const session = current(request)
    refuseIfSuspicious(request) // stepup
    const revoked = await handler.guard(manager.invalidateAll(session.userId, { except: session.id, reason: 'revoke_others' }))
    return { revoked }
  })
}
