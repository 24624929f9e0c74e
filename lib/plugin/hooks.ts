import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { parseDuration } from '../core/duration'
import { errors } from '../core/errors'
import type { Session } from '../core/manager'
import { RequestHandler } from './request'
import { kHandler } from './symbols'

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

/**
 * `requireFreshSession(maxAge)`: a hook (preHandler, preValidation) for sensitive routes (OWASP ASVS 7.5.1/7.5.3,
 * re-authenticate before changing the password, the e-mail or a second factor). It refuses what `requireSession`
 * refuses (401 without a session, 500 FST_SESSION_NOT_REGISTERED outside the plugin's context), and answers 403
 * FST_SESSION_REAUTH_REQUIRED when the session's last authentication (login, or `reply.confirmSession`) is older
 * than `maxAge`.
 */
export function requireFreshSession (maxAge: number | string): (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void {
  const maxAgeMs = parseDuration(maxAge)
  if (maxAgeMs === null || maxAgeMs === 0) {
    throw new errors.INVALID_ARGUMENT(`requireFreshSession(maxAge): expected milliseconds or a duration such as '10m', got ${JSON.stringify(maxAge)}`)
  }
  return function requireFreshSessionHook (request, _reply, done) {
    RequestHandler.requireSession(request, (refusal) => {
      if (refusal !== undefined) {
        done(refusal)
        return
      }
      const age = (request[kHandler] as RequestHandler).manager.now() - (request.session as Session).authenticatedAt.getTime()
      done(age > maxAgeMs ? new errors.REAUTH_REQUIRED() : undefined)
    })
  }
}
