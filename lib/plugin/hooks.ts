import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import type { Session } from '../core/manager'
import { kHandler, RequestHandler } from './request'

/**
 * A preHandler (or any request hook) for routes that need a session: 401 FST_SESSION_REQUIRED without one,
 * 403 FST_SESSION_SUSPICIOUS for a session refused by `onSuspicious: 'deny'`, and 500 FST_SESSION_NOT_REGISTERED
 * when the plugin is not registered for the route's encapsulation context (it never lets such a request through).
 * Works in any context: `import { requireSession } from 'fastify-distributed-session'`.
 */
export function requireSession (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  RequestHandler.requireSession(request, done)
}

/**
 * The request's session, typed non-null, for handlers behind `requireSession`: throws 401 FST_SESSION_REQUIRED
 * (403 FST_SESSION_SUSPICIOUS, 500 FST_SESSION_NOT_REGISTERED) when there is none, so a handler never needs `?.`.
 */
export function getSession (request: FastifyRequest): Session {
  const handler = request[kHandler]
  if (handler === undefined || handler === null) throw RequestHandler.unserved(request)
  if (request.session === null || request.session === undefined) throw handler.refusal(request)
  return request.session
}
