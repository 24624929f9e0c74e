import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { parseDuration } from '../core/duration'
import { errors } from '../core/errors'

/**
 * `requireFreshSession(maxAge)`: a hook (preHandler, preValidation) for sensitive routes (OWASP ASVS 7.5.1/7.5.3,
 * re-authenticate before changing the password, the e-mail or a second factor). It answers 401
 * FST_SESSION_REQUIRED without a session, and 403 FST_SESSION_REAUTH_REQUIRED when the session's last
 * authentication (login, or `reply.confirmSession`) is older than `maxAge`.
 */
export function requireFreshSession (maxAge: number | string): (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void {
  const maxAgeMs = parseDuration(maxAge)
  if (maxAgeMs === null || maxAgeMs === 0) {
    throw new errors.INVALID_ARGUMENT(`requireFreshSession(maxAge): expected milliseconds or a duration such as '10m', got ${JSON.stringify(maxAge)}`)
  }
  return function requireFreshSessionHook (request, _reply, done) {
    const manager = (request.server as { sessions?: { now: () => number } }).sessions
    // Without the plugin nothing can say how fresh the session is: refuse rather than let the request through.
    if (manager === undefined) {
      done(new errors.REAUTH_REQUIRED())
      return
    }
    const session = request.session
    if (session === null || session === undefined) {
      done(new errors.SESSION_REQUIRED())
      return
    }
    done(manager.now() - session.authenticatedAt.getTime() > maxAgeMs ? new errors.REAUTH_REQUIRED() : undefined)
  }
}
