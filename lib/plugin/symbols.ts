import type { Session } from '../core/manager'
import type { RequestHandler } from './request'

// Per-request private state, on Symbols the plugin declares with decorateRequest (every request keeps one shape).
export const kSessionToken = Symbol('fastify-distributed-session.token')
export const kFromCookie = Symbol('fastify-distributed-session.fromCookie')
/**
 * The request handler of the plugin that serves this request, set by its onRequest hook. `Symbol.for`: the named
 * hooks of another copy of the package (ESM and CommonJS builds) find it too. Absent: the plugin is not registered
 * for the request's encapsulation context, and every hook refuses the request.
 */
export const kHandler = Symbol.for('fastify-distributed-session.handler')
/** The session of a request refused by `onSuspicious: 'deny'`: not served, but logout and login can end it. */
export const kDenied = Symbol('fastify-distributed-session.denied')

declare module 'fastify' {
  interface FastifyRequest {
    [kSessionToken]: string | null
    [kFromCookie]: boolean
    [kHandler]: RequestHandler | null
    [kDenied]: Session | null
  }
}
