import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, HTTPMethods, RouteOptions } from 'fastify'
import { errors } from '../core/errors'
import { requireSession } from './hooks'
import type { Session } from '../core/manager'
import { RequestHandler } from './request'

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
  /** The name the user gave the device */
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
 * A flagged session that has not been confirmed cannot end the user's other sessions (a session stolen
 * and flagged for its new IP must not sign the real user out everywhere); ending itself always works.
 */
function refuseIfSuspicious (request: FastifyRequest): void {
  if (request.requiresSecurityCheck) throw new errors.SESSION_SUSPICIOUS()
}

function current (request: FastifyRequest): Session {
  return request.session as Session
}

/** Marks the plugin's own routes in their config, so its onRoute guard knows them. */
const kBuiltIn = Symbol('fastify-distributed-session.builtInRoute')

function collision (method: string, url: string, prefix: string): Error {
  return new errors.INVALID_OPTION(`"routes" adds ${method} ${url}, which the app declares too: move the plugin's routes with ` +
    `routes: { prefix: '${prefix === '' ? '/auth' : `${prefix}/auth`}' } or leave them out with routes: false`)
}

/** Refuses, with the option that fixes it, an app route that takes the place of a built-in one (before or after). */
function guardRoutes (app: FastifyInstance, prefix: string, routes: Array<[HTTPMethods, string]>, isOwn: (route: RouteOptions) => boolean): void {
  for (const [method, url] of routes) {
    if (app.hasRoute({ method, url })) throw collision(method, url, prefix)
  }
  app.addHook('onRoute', function refuseSessionRouteCollision (route) {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    for (const [method, url] of routes) {
      if (route.url === url && methods.includes(method) && !isOwn(route)) throw collision(method, url, prefix)
    }
  })
}

/**
 * GET /profile, POST /logout, GET /sessions, DELETE /sessions/:id, DELETE /sessions: all behind requireSession,
 * except that POST /logout also ends a session refused by `onSuspicious: 'deny'` (a denied user can always log out).
 */
export function registerRoutes (app: FastifyInstance, handler: RequestHandler, prefix: string): void {
  const manager = handler.manager
  guardRoutes(app, prefix, [
    ['GET', `${prefix}/profile`], ['POST', `${prefix}/logout`], ['GET', `${prefix}/sessions`],
    ['DELETE', `${prefix}/sessions/:id`], ['DELETE', `${prefix}/sessions`]
  ], (route) => (route.config as Record<symbol, unknown> | undefined)?.[kBuiltIn] === true)
  const config = { session: true, [kBuiltIn]: true }
  // Before validation, so an anonymous request gets 401 whatever its parameters. Every answer of these routes is
  // about the user's own sessions (ids, IPs, devices), refusals included: never kept by a cache. One hook does both.
  const preValidation = function requireSessionNoStore (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    reply.header('cache-control', 'no-store')
    requireSession(request, reply, done)
  }

  app.get(`${prefix}/profile`, {
    config,
    preValidation,
    schema: { response: withErrors(Type.Object({ userId: Type.String(), sessionId: Type.String() })) }
  }, async (request) => {
    const session = current(request)
    return { userId: session.userId, sessionId: session.id }
  })

  app.post(`${prefix}/logout`, {
    config,
    preValidation: function requireEndableSession (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
      reply.header('cache-control', 'no-store')
      if (handler.endable(request) !== null) done()
      else RequestHandler.requireSession(request, done)
    },
    schema: { response: withErrors(Type.Object({ message: Type.String() })) }
  }, async (request, reply) => {
    await handler.endSession(request, reply, 'logout')
    return { message: 'Successfully logged out' }
  })

  app.get(`${prefix}/sessions`, {
    config,
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
    config,
    preValidation,
    schema: { params: SessionIdParams, response: withErrors(Revoked) }
  }, async (request, reply) => {
    const session = current(request)
    if (request.params.id === session.id) {
      await handler.endSession(request, reply, 'revoked')
      return { revoked: 1 }
    }
    refuseIfSuspicious(request)
    const revoked = await handler.guard(manager.invalidate(request.params.id, { userId: session.userId, reason: 'revoked' }))
    if (!revoked) throw new errors.SESSION_NOT_FOUND()
    return { revoked: 1 }
  })

  app.delete(`${prefix}/sessions`, {
    config,
    preValidation,
    schema: { response: withErrors(Revoked) }
  }, async (request) => {
    const session = current(request)
    refuseIfSuspicious(request)
    const revoked = await handler.guard(manager.invalidateAll(session.userId, { except: session.id, reason: 'revoke_others' }))
    return { revoked }
  })
}
