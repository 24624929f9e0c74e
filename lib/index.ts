// The package's public surface, by layer. lib/plugin/ is the Fastify plugin (hooks, routes, options, cookies, the
// request path); lib/core/ the session core (manager, tokens, metadata, cleanup); lib/security/ the security signals;
// lib/store/ the store contract and its memory and Redis implementations. docs/design.md maps the rules to their homes.
import { sessionPlugin } from './plugin/plugin'

/** The plugin: `app.register(sessionPlugin, options)`. */
export default sessionPlugin
export { sessionPlugin }
export type { SessionPluginOptions, SuspiciousReport, SuspiciousHandler } from './plugin/options'
export type { StartSessionArgs, StartSessionData, RotateSessionOptions } from './plugin/request'
export { requireSession, getSession, requireFreshSession } from './plugin/hooks'

// The session core: usable without Fastify.
export { SessionManager } from './core/manager'
export type { Session, SessionData, SessionPatch, SessionMetadata, AuditEvent, AuditLogPage, ConcurrencyReport, SessionManagerOptions, SecurityThresholds } from './core/manager'
export type { NewDeviceEvent, ConfirmOptions, SessionManagerEvents } from './core/manager'
export { SessionCleanupService } from './core/cleanup'
export { errors } from './core/errors'

// Security signals.
export type { SessionEnded, SessionEndReason } from './security/stepup'
export { generateDeviceFingerprint, compareFingerprints, fingerprintFromHeaders, headerFingerprint } from './security/fingerprint'

// Stores.
export type { Store, StoredSession, CacheStats } from './store/types'
export { MemoryStore } from './store/memory/store'
export { RedisStore } from './store/redis/store'
export type { RedisStoreOptions } from './store/redis/store'
export type { RedisClient } from './store/redis/client'
export type { NearCacheOptions } from './store/redis/near-cache'
