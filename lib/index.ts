import fastifyCookie from '@fastify/cookie'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import type { Cluster, Redis } from 'ioredis'
import { SessionCleanupService } from './cleanup'
import { errors } from './errors'
import { SessionManager, type Session } from './manager'
import { registerMetrics } from './metrics'
import { resolveOptions, type ResolvedOptions, type SessionPluginOptions } from './options'
import { RequestHandler, type StartSessionData } from './request'
import { registerRoutes } from './routes'
import type { SessionEnded } from './stepup'
import { MemoryStore } from './store/memory'
import { RedisStore } from './store/redis'
import type { Store } from './store/types'

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's session, or null when it carries no valid token. */
    session: Session | null
    /** True when the session shows suspicious concurrent use, another IP or another device: ask for a second factor. */
    requiresSecurityCheck: boolean
    /** For a token whose session has ended (within the last day): why and when; else null. */
    sessionEnded: SessionEnded | null
  }
  interface FastifyReply {
    /** Creates a session for the user (ending the request's previous one), sets the cookie, returns the token. */
    startSession (userId: string, data?: StartSessionData): Promise<{ token: string, session: Session, newDevice: boolean }>
    /** Ends the request's session server-side and clears the cookie; false when there was none. */
    endSession (reason?: string): Promise<boolean>
    /** Replaces the request's token (privilege change) and sets the new cookie; null without a session. */
    rotateSession (): Promise<{ token: string, session: Session } | null>
    /**
     * Call after verifying a second factor or the password: clears `requiresSecurityCheck` until something new
     * happens and moves `session.authenticatedAt` to now (audited `confirmed`). False when the session is gone.
     */
    confirmSession (options: { method: string }): Promise<boolean>
  }
  interface FastifyInstance {
    sessions: SessionManager
    /** A preHandler (or any request hook) that answers 401 FST_SESSION_REQUIRED when the request has no session. */
    requireSession (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void
  }
}

function createStore (app: FastifyInstance, options: SessionPluginOptions, keyPrefix: string, nearCache: ResolvedOptions['nearCache']): Store {
  if (options.store !== undefined) return options.store
  if (options.redis !== undefined) {
    const clientOptions = typeof options.redis === 'string' ? null : (options.redis as { options?: { sentinels?: unknown, failoverDetector?: boolean } }).options
    if (clientOptions?.sentinels != null && clientOptions.failoverDetector !== true) {
      app.log.warn('fastify-distributed-session: a Sentinel client without `failoverDetector: true` keeps writing to the old master for seconds after a failover (see docs/deployment.md)')
    }
    return new RedisStore({ client: options.redis as Redis | Cluster | string, prefix: keyPrefix, nearCache })
  }
  app.log.warn('fastify-distributed-session: no `redis` or `store` option: using the in-memory store; sessions are lost on restart and not shared between processes')
  return new MemoryStore()
}

const plugin: FastifyPluginAsync<SessionPluginOptions> = async function sessionPlugin (app, rawOptions) {
  const options = resolveOptions(rawOptions)
  const raw = options.raw
  const store = createStore(app, raw, options.keyPrefix, options.nearCache)
  const manager = new SessionManager({
    store,
    idleTimeout: raw.idleTimeout,
    absoluteTimeout: raw.absoluteTimeout,
    touchInterval: raw.touchInterval,
    maxSessionsPerUser: raw.maxSessionsPerUser,
    limitPolicy: raw.limitPolicy,
    maxMetadataBytes: raw.maxMetadataBytes,
    security: raw.security,
    audit: raw.audit,
    now: raw.now
  })
  const handler = new RequestHandler(manager, options)

  if (!app.hasDecorator('parseCookie')) await app.register(fastifyCookie)

  app.decorate('sessions', manager)
  app.decorateRequest('session', null)
  app.decorateRequest('requiresSecurityCheck', false)
  app.decorateRequest('sessionEnded', null)
  app.decorateReply('confirmSession', function confirmSession (this: FastifyReply, options: { method: string }) {
    return handler.confirmSession(this.request, options)
  })
  app.decorateReply('startSession', function startSession (this: FastifyReply, userId: string, data?: StartSessionData) {
    return handler.startSession(this.request, this, userId, data)
  })
  app.decorateReply('endSession', function endSession (this: FastifyReply, reason = 'logout') {
    return handler.endSession(this.request, this, reason)
  })
  app.decorateReply('rotateSession', function rotateSession (this: FastifyReply) {
    return handler.rotateSession(this.request, this)
  })
  // Callback style: no promise per request for the most common hook of an app.
  app.decorate('requireSession', function requireSession (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) {
    done(request.session === null ? new errors.SESSION_REQUIRED() : undefined)
  })
  app.addHook('onRequest', function loadSession (request, reply) {
    return handler.loadSession(request, reply)
  })

  if (raw.metrics !== undefined) registerMetrics(raw.metrics.registry, manager)

  const cleanup = options.cleanup === false
    ? null
    : new SessionCleanupService({ manager, intervalMs: options.cleanup.intervalMs, batchSize: options.cleanup.batchSize, logger: app.log })
  app.addHook('onReady', async function startCleanup () {
    cleanup?.start()
  })
  app.addHook('onClose', async function closeSessions () {
    await cleanup?.stop()
    // A store the user passed in is theirs; a Redis client they passed in is never closed by RedisStore
    // (its near-cache connections are).
    if (raw.store === undefined) await manager.close()
  })

  if (options.routesPrefix !== null) registerRoutes(app, handler, options.routesPrefix)
}

/** The plugin: `app.register(sessionPlugin, options)`. */
export const sessionPlugin = fp(plugin, { fastify: '5.x', name: 'fastify-distributed-session' })
export default sessionPlugin

export { SessionManager, RedisStore, MemoryStore, SessionCleanupService, errors }
export { requireFreshSession } from './freshness'
export type { SessionEnded, SessionEndReason } from './stepup'
export type { NewDeviceEvent, ConfirmOptions } from './manager'
export { generateDeviceFingerprint, compareFingerprints, fingerprintFromHeaders, headerFingerprint } from './fingerprint'
export type { Session, SessionData, SessionMetadata, AuditEvent, ConcurrencyReport, SessionManagerOptions, SecurityThresholds } from './manager'
export type { SessionPluginOptions, SuspiciousReport, SuspiciousHandler } from './options'
export type { StartSessionData } from './request'
export type { Store, StoredSession } from './store/types'
export type { RedisStoreOptions } from './store/redis'
export type { NearCacheOptions } from './store/near-cache'
