import type { FastifyBaseLogger, FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify'
import fp from 'fastify-plugin'
import { formatDuration, kResolved, markResolved } from '../core/bounds'
import { SessionCleanupService } from '../core/cleanup'
import { withinTime } from '../core/duration'
import { errors } from '../core/errors'
import { SessionManager, type ResolvedManagerOptions } from '../core/manager'
import { registerMetrics } from './metrics'
import { resolveOptions, type ResolvedOptions, type SessionPluginOptions } from './options'
import { requireSession } from './hooks'
import { RequestHandler, type RotateSessionOptions, type StartSessionData } from './request'
import { kDenied, kFromCookie, kHandler, kSessionToken } from './symbols'
import { registerRoutes } from './routes'
import { MemoryStore } from '../store/memory/store'
import { RedisStore } from '../store/redis/store'
import type { Store } from '../store/types'

import './types'

function createStore (app: FastifyInstance, options: SessionPluginOptions, keyPrefix: string, nearCache: ResolvedOptions['nearCache']): Store {
  if (options.store !== undefined) return options.store
  if (options.redis !== undefined) {
    const clientOptions = typeof options.redis === 'string' ? null : (options.redis as { options?: { sentinels?: unknown, failoverDetector?: boolean } }).options
    if (clientOptions?.sentinels != null && clientOptions.failoverDetector !== true) {
      app.log.warn('fastify-distributed-session: a Sentinel client without `failoverDetector: true` keeps writing to the old master for seconds after a failover (see docs/deployment.md)')
    }
    // `logger`: the client's connection errors go to app.log, rate-limited, not to stderr.
    return new RedisStore({ client: options.redis, prefix: keyPrefix, nearCache, batchWrites: options.batchWrites, logger: app.log })
  }
  app.log.warn('fastify-distributed-session: no `redis` or `store` option: using the in-memory store; sessions are lost on restart and not shared between processes')
  return new MemoryStore()
}

/** Bounds the store's startup check; the error names the problem and the option that skips the check. */
async function checkStore (store: Store, timeoutMs: number): Promise<void> {
  try {
    await withinTime(store.check(), timeoutMs, `the store did not answer within ${formatDuration(timeoutMs)} (option "startupCheck.timeout")`)
  } catch (error) {
    throw new errors.STORE_CHECK_FAILED(error instanceof Error ? error.message : String(error), { cause: error })
  }
}

const plugin: FastifyPluginAsync<SessionPluginOptions> = async function sessionPlugin (app, rawOptions) {
  if (app.hasDecorator('sessions') || app.hasRequestDecorator(kHandler as unknown as string)) throw new errors.ALREADY_REGISTERED()
  const options = resolveOptions(rawOptions)
  const raw = options.raw
  const store = createStore(app, raw, options.keyPrefix, options.nearCache)
  let manager: SessionManager
  try {
    // `logger` (SessionManagerOptions): a throwing event listener is logged through app.log.
    const managerOptions: ResolvedManagerOptions & { logger: FastifyBaseLogger } = {
      [kResolved]: true,
      settings: options.manager,
      store,
      now: raw.now,
      logger: app.log
    }
    manager = new SessionManager(managerOptions)
    if (options.startupCheckMs > 0) await checkStore(store, options.startupCheckMs)
  } catch (error) {
    // A client the plugin opened must not reconnect forever and keep the process alive after a failed registration.
    if (raw.store === undefined) await store.close().catch(() => {})
    throw error
  }
  const handler = new RequestHandler(manager, options)

  app.decorate('sessions', manager)
  app.decorateRequest('session', null)
  app.decorateRequest('requiresSecurityCheck', false)
  // Private per-request state on Symbols, declared so every request object keeps one shape.
  app.decorateRequest(kHandler as unknown as string, null)
  app.decorateRequest(kDenied as unknown as string, null)
  app.decorateRequest(kSessionToken as unknown as string, null)
  app.decorateRequest(kFromCookie as unknown as string, false)
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
  app.decorateReply('rotateSession', function rotateSession (this: FastifyReply, rotateOptions?: RotateSessionOptions) {
    return handler.rotateSession(this.request, this, rotateOptions)
  })
  app.decorate('requireSession', requireSession)
  // Callback style: a request the hook answers at once (no token, a near-cache hit) costs no promise, and a store
  // read none beyond the store's own.
  app.addHook('onRequest', function loadSession (request, reply, done) {
    handler.loadSession(request, reply, done)
  })

  if (raw.metrics !== undefined) registerMetrics(raw.metrics.registry, manager)

  const cleanup = options.cleanup === false
    ? null
    : new SessionCleanupService(markResolved({ manager, intervalMs: options.cleanup.intervalMs, batchSize: options.cleanup.batchSize, logger: app.log }))
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
