import { Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { FastifyRequest } from 'fastify'
import { boundedCount, boundedDuration } from '../core/bounds'
import { DEFAULT_CLEANUP_BATCH_SIZE } from '../core/cleanup'
import { DURATION_PATTERN } from '../core/duration'
import { DEFAULT_ABUSE_OPTIONS } from '../security/abuse'
import { DEFAULT_FINGERPRINT_TOLERANCE } from '../security/fingerprint'
import { DEFAULT_KEY_PREFIX } from '../store/redis/keys'
import { errors } from '../core/errors'
import { resolveManagerSettings, type ConcurrencyReport, type ManagerSettings } from '../core/manager'
import { isRedisClient, type RedisClient } from '../store/redis/client'
import type { Store } from '../store/types'

const DURATION = 'duration'
const Duration = Type.Union([Type.Integer({ minimum: 0 }), Type.String({ pattern: DURATION_PATTERN.source })], { description: DURATION })

/** The JSON-describable part of the options; functions and client instances are checked by hand below. */
const OptionsSchema = Type.Object({
  keyPrefix: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[^{}\\s]+$' })),
  idleTimeout: Type.Optional(Duration),
  absoluteTimeout: Type.Optional(Duration),
  touchInterval: Type.Optional(Duration),
  storeTimeout: Type.Optional(Duration),
  maxSessionsPerUser: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  maxMetadataBytes: Type.Optional(Type.Integer({ minimum: 2, maximum: 1_048_576 })),
  maxMetadataKeys: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  limitPolicy: Type.Optional(Type.Union([Type.Literal('evict-oldest'), Type.Literal('deny')])),
  header: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9-]+$' })),
  cookie: Type.Optional(Type.Object({
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' })),
    secure: Type.Optional(Type.Union([Type.Boolean(), Type.Literal('auto')], { description: "must be true, false or 'auto'" })),
    httpOnly: Type.Optional(Type.Boolean()),
    sameSite: Type.Optional(Type.Union([Type.Literal('lax'), Type.Literal('strict'), Type.Literal('none')])),
    // Characters a Set-Cookie attribute value may hold: no ';', comma, whitespace or control character.
    path: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, pattern: '^/[^;,\\s\\x00-\\x1f\\x7f]*$' })),
    domain: Type.Optional(Type.String({ minLength: 1, maxLength: 253, pattern: '^\\.?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$' })),
    hostPrefix: Type.Optional(Type.Boolean()),
    partitioned: Type.Optional(Type.Boolean()),
    signed: Type.Optional(Type.Boolean()),
    secret: Type.Optional(Type.Union([Type.String({ minLength: 32 }), Type.Array(Type.String({ minLength: 32 }), { minItems: 1 })],
      { description: 'must be a secret of at least 32 characters, or a non-empty array of them (the first signs, all verify)' }))
  }, { additionalProperties: false })),
  routes: Type.Optional(Type.Object({
    prefix: Type.Optional(Type.String({ pattern: '^(/[A-Za-z0-9_.~-]+)*$' }))
  }, { additionalProperties: false })),
  cleanup: Type.Optional(Type.Object({
    interval: Type.Optional(Duration),
    batchSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 }))
  }, { additionalProperties: false })),
  onStoreError: Type.Optional(Type.Union([Type.Literal('fail-closed'), Type.Literal('fail-open')])),
  batchWrites: Type.Optional(Type.Boolean()),
  nearCache: Type.Optional(Type.Object({
    maxEntries: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 })),
    maxAge: Type.Optional(Duration)
  }, { additionalProperties: false })),
  security: Type.Optional(Type.Object({
    maxDistinctIps: Type.Optional(Type.Integer({ minimum: 0 })),
    maxDistinctUserAgents: Type.Optional(Type.Integer({ minimum: 0 })),
    rapidCreationWindow: Type.Optional(Duration),
    checkIp: Type.Optional(Type.Boolean()),
    fingerprintTolerance: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    onSuspicious: Type.Optional(Type.Unknown()),
    invalidTokenThreshold: Type.Optional(Type.Integer({ minimum: 1 })),
    invalidTokenWindow: Type.Optional(Duration),
    blockAfter: Type.Optional(Type.Union([Type.Literal(false), Duration], { description: "must be false or a duration such as '10m'" })),
    knownDevices: Type.Optional(Type.Union([Type.Literal(false), Duration]))
  }, { additionalProperties: false })),
  startupCheck: Type.Optional(Type.Union([Type.Literal(false), Type.Object({
    timeout: Type.Optional(Duration)
  }, { additionalProperties: false })], { description: "must be false or { timeout } with a duration such as '5s'" })),
  audit: Type.Optional(Type.Object({
    retention: Type.Optional(Duration),
    activity: Type.Optional(Type.Boolean()),
    maxEventsPerUser: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    feed: Type.Optional(Type.Boolean())
  }, { additionalProperties: false })),
  redis: Type.Optional(Type.Unknown()),
  store: Type.Optional(Type.Unknown()),
  metrics: Type.Optional(Type.Unknown()),
  now: Type.Optional(Type.Unknown())
}, { additionalProperties: false })

/**
 * Decides about a suspicious session's request: return (or resolve) to serve it, throw (or reject) to refuse it. An
 * async handler is waited for up to `storeTimeout`, then the request fails with 503 FST_SESSION_SUSPICIOUS_HANDLER_TIMEOUT.
 */
export type SuspiciousHandler = (request: FastifyRequest, report: SuspiciousReport) => void | Promise<void>

/** Why a request was flagged by `requiresSecurityCheck`. */
export interface SuspiciousReport {
  userId: string
  sessionId: string
  reasons: Array<ConcurrencyReport['reasons'][number] | 'ip_changed' | 'fingerprint_mismatch'>
  fingerprintSimilarity: number | null
}

/** Options of the plugin. Durations are milliseconds or strings such as '30m'. */
export interface SessionPluginOptions {
  /**
   * An ioredis-compatible `Redis` or `Cluster` (yours: never closed by the plugin): any ioredis 5 or 6 copy, iovalkey,
   * @fastify/redis's `app.redis`; or a URL (the plugin owns that client).
   */
  redis?: RedisClient | string
  /** A custom store; takes precedence over `redis`. Without both, the embedded memory store is used, with a warning. */
  store?: Store
  /** @default 'sess:' */
  keyPrefix?: string
  /** @default '30m' */
  idleTimeout?: number | string
  /** @default '24h' */
  absoluteTimeout?: number | string
  /** @default '60s' */
  touchInterval?: number | string
  /** How long a request waits for the store before failing. @default '2s' */
  storeTimeout?: number | string
  /** @default 5 */
  maxSessionsPerUser?: number
  /** @default 4096 */
  maxMetadataBytes?: number
  /** Most top-level keys in a session's metadata (checked in Node before anything is sent). @default 64 */
  maxMetadataKeys?: number
  /** @default 'evict-oldest' */
  limitPolicy?: 'evict-oldest' | 'deny'
  /** Request header carrying the token. @default 'x-session-id' */
  header?: string
  /** Cookie transport; `false` disables it (header only). */
  cookie?: false | {
    /** @default 'session_id' */
    name?: string
    /** `'auto'` sets Secure when the request is HTTPS (honouring trustProxy). @default 'auto' */
    secure?: boolean | 'auto'
    /** @default true */
    httpOnly?: boolean
    /** @default 'lax' */
    sameSite?: 'lax' | 'strict' | 'none'
    /** @default '/' */
    path?: string
    domain?: string
    /** Use the `__Host-` name prefix (forces Secure, path '/', no domain). @default false */
    hostPrefix?: boolean
    /** The `Partitioned` attribute (CHIPS): the cookie is kept per top-level site. Needs secure cookies. @default false */
    partitioned?: boolean
    /** @default false */
    signed?: boolean
    /** Signing secrets (32+ characters): the first signs, all verify. Required when `signed`. */
    secret?: string | string[]
  }
  /** @default true */
  routes?: boolean | { prefix?: string }
  /** @default { interval: '1h' } */
  cleanup?: false | { interval?: number | string, batchSize?: number }
  /** @default 'fail-closed' */
  onStoreError?: 'fail-closed' | 'fail-open'
  /**
   * Send the commands of one event-loop turn to a Redis node in one socket write (a connection with no answer awaited
   * sends at once); `false` sends each command as it comes. For the store built from `redis`; not with a custom `store`. @default true
   */
  batchWrites?: boolean
  /**
   * Cache session records in process, invalidated by Redis when they change on any instance (CLIENT TRACKING):
   * repeat requests cost no round trip. Needs `redis`: standalone, Sentinel, or a Cluster client that reads from masters
   * (`scaleReads: 'master'`, its default). @default false
   */
  nearCache?: boolean | {
    /** @default 10000 */
    maxEntries?: number
    /** Longest a record is served from memory without asking Redis. @default '5s' */
    maxAge?: number | string
  }
  security?: {
    /** @default 2 */
    maxDistinctIps?: number
    /** @default 3 */
    maxDistinctUserAgents?: number
    /** @default '5m' */
    rapidCreationWindow?: number | string
    /** Flag a request from another IP than the session was created on. @default true */
    checkIp?: boolean
    /** @default 0.8 */
    fingerprintTolerance?: number
    /** @default 'flag' */
    onSuspicious?: 'flag' | 'deny' | SuspiciousHandler
    /** Unknown or malformed tokens per client IP and window before a security event. @default 20 */
    invalidTokenThreshold?: number
    /** @default '1m' */
    invalidTokenWindow?: number | string
    /** Block a client past the threshold with 429 for this long; false only reports. @default false */
    blockAfter?: false | number | string
    /** A login from a device (browser family, IP network) unused for this long is `newDevice`; false turns it off. @default '90d' */
    knownDevices?: false | number | string
  }
  audit?: {
    /** @default '7d' */
    retention?: number | string
    /** @default false */
    activity?: boolean
    /** Most audit events kept per user, oldest dropped first (see `auditLogPage`). @default 5000 */
    maxEventsPerUser?: number
    /** Append every audit event to a Redis stream per shard too, for SIEM consumers. @default false */
    feed?: boolean
  }
  /**
   * With `redis`, registration waits until the store answers a PING (and the client's AUTH and SELECT succeeded), at
   * most `timeout`, and `app.ready()` rejects with FST_SESSION_STORE_CHECK_FAILED naming the problem otherwise.
   * `false` starts without asking (for apps that must boot while Redis is down). @default { timeout: '5s' }
   */
  startupCheck?: false | {
    /** @default '5s' */
    timeout?: number | string
  }
  /** Prometheus metrics: `{ registry }`, a prom-client Registry. */
  metrics?: { registry: unknown }
  /** Clock, for tests. @default Date.now */
  now?: () => number
}

export interface ResolvedOptions {
  raw: SessionPluginOptions
  nearCache: false | { maxEntries?: number, maxAgeMs?: number }
  keyPrefix: string
  storeTimeoutMs: number
  header: string
  cookie: false | {
    name: string
    secure: boolean | 'auto'
    httpOnly: boolean
    sameSite: 'lax' | 'strict' | 'none'
    path: string
    domain: string | undefined
    partitioned: boolean
    signed: boolean
    secrets: string[]
  }
  routesPrefix: string | null
  cleanup: false | { intervalMs: number, batchSize: number }
  failOpen: boolean
  checkIp: boolean
  fingerprintTolerance: number
  onSuspicious: 'flag' | 'deny' | SuspiciousHandler
  invalidTokenThreshold: number
  invalidTokenWindowMs: number
  blockMs: number
  /** 0 when the startup check is off. */
  startupCheckMs: number
  /** The SessionManager's settings, resolved here so the manager the plugin builds does not validate them again. */
  manager: ManagerSettings
}

function optionError (path: string, message: string): Error {
  return new errors.INVALID_OPTION(`"${path}" ${message}`)
}

interface SchemaWords {
  description?: string
  anyOf?: Array<{ const?: unknown }>
  type?: string
  minimum?: number
  maximum?: number
  minLength?: number
  maxLength?: number
  pattern?: string
}

/** What a value must be, in words (TypeBox says only "expected union value" for a union); patterns as written. */
function describe (schema: SchemaWords, message: string): string {
  if (schema.description === DURATION) return "must be milliseconds (an integer >= 0) or a duration string such as '30m', '24h', '500ms'"
  if (schema.description !== undefined) return schema.description
  if (message.startsWith('Unexpected property')) return 'is not an option of this plugin (see docs/configuration.md)'
  const anyOf = schema.anyOf
  if (anyOf !== undefined && anyOf.every((member) => member.const !== undefined)) {
    return `must be one of ${anyOf.map((member) => JSON.stringify(member.const)).join(', ')}`
  }
  if (schema.type === 'integer' || schema.type === 'number') {
    const kind = schema.type === 'integer' ? 'an integer' : 'a number'
    // Every number of the schema has a minimum.
    return schema.maximum === undefined ? `must be ${kind} >= ${String(schema.minimum)}` : `must be ${kind} from ${String(schema.minimum)} to ${schema.maximum}`
  }
  if (schema.type === 'string') {
    const lengths = [
      schema.minLength === undefined ? '' : `at least ${schema.minLength}`,
      schema.maxLength === undefined ? '' : `at most ${schema.maxLength}`
    ].filter((rule) => rule !== '').join(' and ')
    return `must be a string${lengths === '' ? '' : ` of ${lengths} characters`}${schema.pattern === undefined ? '' : ` matching ${schema.pattern}`}`
  }
  if (schema.type === 'boolean') return 'must be true or false'
  if (schema.type === 'object') return 'must be an object'
  return `is not valid: ${message}`
}

/** Every method of the Store contract (lib/store/types.ts): a custom store is checked for each at registration. */
const STORE_METHODS = ['configure', 'check', 'create', 'load', 'touch', 'update', 'invalidate', 'invalidateAll', 'list',
  'rotate', 'discard', 'recordEvent', 'auditLog', 'cleanup', 'close', 'confirm', 'rename', 'reportUnrecognized', 'tryLock', 'release'] as const satisfies ReadonlyArray<keyof Store>
/** The optional methods of the Store contract: when present, they must be functions. */
const OPTIONAL_STORE_METHODS = ['loadNow', 'cacheStats'] as const satisfies ReadonlyArray<keyof Store>
// Compile-time completeness: a method added to Store and not listed above fails the build here.
type UnlistedStoreMethod = Exclude<keyof Store, typeof STORE_METHODS[number] | typeof OPTIONAL_STORE_METHODS[number]>
export const isStoreListComplete: [UnlistedStoreMethod] extends [never] ? true : UnlistedStoreMethod = true

/** Headers the session token must not be read from: they carry something else already. */
const RESERVED_HEADERS: ReadonlySet<string> = new Set(['cookie', 'set-cookie', 'host', 'authorization', 'content-type', 'content-length'])

function looksLikeRedis (value: unknown): boolean {
  return isRedisClient(value)
}

/** Validates the options once at registration; a bad value throws an Error naming the option. */
export function resolveOptions (input: unknown): ResolvedOptions {
  const options = (input ?? {}) as SessionPluginOptions
  if (typeof options !== 'object') throw optionError('(root)', 'must be an object: app.register(sessionPlugin, { redis })')
  // `false` / `true` shorthands of the object options are checked here, the objects by the schema.
  const shape: Record<string, unknown> = { ...options }
  if (shape.cookie === false) delete shape.cookie
  if (shape.cleanup === false) delete shape.cleanup
  if (typeof shape.routes === 'boolean') delete shape.routes
  if (typeof shape.nearCache === 'boolean') delete shape.nearCache
  const first = Value.Errors(OptionsSchema, shape).First()
  if (first !== undefined) {
    const path = first.path.slice(1).replace(/\//g, '.') || '(root)'
    throw optionError(path, `${describe(first.schema as SchemaWords, first.message)}, got ${JSON.stringify(first.value) ?? String(first.value)}`)
  }
  const valid = options as SessionPluginOptions
  if (valid.header !== undefined && RESERVED_HEADERS.has(valid.header.toLowerCase())) {
    throw optionError('header', `must not be a header that HTTP or the cookie transport already uses (${[...RESERVED_HEADERS].join(', ')}), got ${JSON.stringify(valid.header)}`)
  }
  if (valid.redis !== undefined && typeof valid.redis !== 'string' && !looksLikeRedis(valid.redis)) {
    throw optionError('redis', 'must be an ioredis-compatible Redis or Cluster client or a redis:// or rediss:// URL')
  }
  if (typeof valid.redis === 'string' && !/^rediss?:\/\//.test(valid.redis)) {
    throw optionError('redis', 'must be a redis:// or rediss:// URL')
  }
  if (valid.store !== undefined) {
    const missing = valid.store === null || typeof valid.store !== 'object'
      ? [...STORE_METHODS]
      : STORE_METHODS.filter((name) => typeof (valid.store as unknown as Record<string, unknown>)[name] !== 'function')
    if (missing.length > 0) throw optionError('store', `must implement every method of the Store interface; missing: ${missing.join(', ')}`)
    const wrong = OPTIONAL_STORE_METHODS.filter((name) => {
      const method = (valid.store as unknown as Record<string, unknown>)[name]
      return method !== undefined && typeof method !== 'function'
    })
    if (wrong.length > 0) throw optionError('store', `optional Store methods must be functions when present: ${wrong.join(', ')}`)
  }
  if (valid.now !== undefined && typeof valid.now !== 'function') throw optionError('now', 'must be a function')
  if (valid.nearCache !== undefined && valid.nearCache !== false && (valid.redis === undefined || valid.store !== undefined)) {
    throw optionError('nearCache', 'needs the `redis` option (and no custom `store`): set `redis` or remove `nearCache`')
  }
  // Like nearCache: `false` asks for nothing and is accepted without Redis (a `redis` read from an unset variable in
  // development); beside a custom store either value would be ignored, so it is refused.
  if (valid.batchWrites !== undefined && valid.store !== undefined) {
    throw optionError('batchWrites', 'applies to the store the plugin builds from `redis`, not to a custom `store`: remove `batchWrites` (a RedisStore of your own takes it: new RedisStore({ client, batchWrites }))')
  }
  if (valid.batchWrites === true && valid.redis === undefined) {
    throw optionError('batchWrites', 'needs the `redis` option: set `redis` or remove `batchWrites`')
  }
  const onSuspicious = valid.security?.onSuspicious ?? 'flag'
  if (onSuspicious !== 'flag' && onSuspicious !== 'deny' && typeof onSuspicious !== 'function') {
    throw optionError('security.onSuspicious', "must be 'flag', 'deny' or a function (request, report)")
  }
  if (valid.metrics !== undefined && (valid.metrics === null || typeof valid.metrics !== 'object' ||
    typeof (valid.metrics as { registry?: { registerMetric?: unknown } }).registry?.registerMetric !== 'function')) {
    throw optionError('metrics', 'must be { registry } with a prom-client Registry')
  }
  const cookie = valid.cookie ?? {}
  let resolvedCookie: ResolvedOptions['cookie'] = false
  if (cookie !== false) {
    const secrets = cookie.secret === undefined ? [] : Array.isArray(cookie.secret) ? cookie.secret : [cookie.secret]
    if (cookie.signed === true && secrets.length === 0) throw optionError('cookie.secret', 'is required when cookie.signed is true')
    const hostPrefix = cookie.hostPrefix === true
    if (hostPrefix && (cookie.domain !== undefined || (cookie.path !== undefined && cookie.path !== '/') || cookie.secure === false)) {
      throw optionError('cookie.hostPrefix', 'requires secure cookies, path "/" and no domain: remove cookie.domain, cookie.path and cookie.secure: false')
    }
    if (cookie.partitioned === true && cookie.secure === false) {
      throw optionError('cookie.partitioned', 'must not be true with cookie.secure: false (a Partitioned cookie must be Secure): set cookie.secure to true or \'auto\'')
    }
    if (cookie.sameSite === 'none' && cookie.secure === false) {
      throw optionError('cookie.sameSite', 'must not be "none" with cookie.secure: false (browsers refuse such cookies): set cookie.secure to true or \'auto\'')
    }
    const name = cookie.name ?? 'session_id'
    resolvedCookie = {
      name: hostPrefix ? `__Host-${name}` : name,
      // SameSite=None and Partitioned cookies are dropped by browsers without Secure: 'auto' means Secure for them.
      secure: hostPrefix || cookie.sameSite === 'none' || cookie.partitioned === true ? true : cookie.secure ?? 'auto',
      httpOnly: cookie.httpOnly ?? true,
      sameSite: cookie.sameSite ?? 'lax',
      path: cookie.path ?? '/',
      domain: cookie.domain,
      partitioned: cookie.partitioned === true,
      signed: cookie.signed === true,
      secrets
    }
  }
  const routes = valid.routes ?? true
  const storeTimeoutMs = boundedDuration('storeTimeout', valid.storeTimeout, 2000)
  const cleanupOption = valid.cleanup ?? {}
  const cleanup = cleanupOption === false
    ? false
    : { intervalMs: boundedDuration('cleanup.interval', cleanupOption.interval, 3_600_000), batchSize: boundedCount('cleanup.batchSize', cleanupOption.batchSize, DEFAULT_CLEANUP_BATCH_SIZE) }
  const blockAfter = valid.security?.blockAfter ?? false
  const near = valid.nearCache ?? false
  const nearCache = near === false
    ? false
    : near === true
      ? {}
      : {
          maxEntries: near.maxEntries === undefined ? undefined : boundedCount('nearCache.maxEntries', near.maxEntries, 10_000),
          maxAgeMs: near.maxAge === undefined ? undefined : boundedDuration('nearCache.maxAge', near.maxAge, 5000)
        }
  const startupCheck = valid.startupCheck ?? {}
  return {
    raw: valid,
    nearCache,
    keyPrefix: valid.keyPrefix ?? DEFAULT_KEY_PREFIX,
    storeTimeoutMs,
    header: (valid.header ?? 'x-session-id').toLowerCase(),
    cookie: resolvedCookie,
    routesPrefix: routes === false ? null : routes === true ? '' : routes.prefix ?? '',
    cleanup,
    failOpen: valid.onStoreError === 'fail-open',
    checkIp: valid.security?.checkIp ?? true,
    fingerprintTolerance: valid.security?.fingerprintTolerance ?? DEFAULT_FINGERPRINT_TOLERANCE,
    onSuspicious: onSuspicious as ResolvedOptions['onSuspicious'],
    invalidTokenThreshold: boundedCount('security.invalidTokenThreshold', valid.security?.invalidTokenThreshold, DEFAULT_ABUSE_OPTIONS.threshold),
    invalidTokenWindowMs: boundedDuration('security.invalidTokenWindow', valid.security?.invalidTokenWindow, DEFAULT_ABUSE_OPTIONS.windowMs),
    blockMs: blockAfter === false ? 0 : boundedDuration('security.blockAfter', blockAfter, 0),
    startupCheckMs: startupCheck === false ? 0 : boundedDuration('startupCheck.timeout', startupCheck.timeout, 5000),
    manager: resolveManagerSettings(valid)
  }
}
