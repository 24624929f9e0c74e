import { Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { FastifyRequest } from 'fastify'
import type { Cluster, Redis } from 'ioredis'
import { parseDuration } from './duration'
import type { ConcurrencyReport } from './manager'
import type { Store } from './store/types'

const DURATION = 'duration'
const Duration = Type.Union([Type.Integer({ minimum: 0 }), Type.String({ pattern: '^\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)$' })], { description: DURATION })

/** The JSON-describable part of the options; functions and client instances are checked by hand below. */
const OptionsSchema = Type.Object({
  keyPrefix: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[^{}\\s]+$' })),
  idleTimeout: Type.Optional(Duration),
  absoluteTimeout: Type.Optional(Duration),
  touchInterval: Type.Optional(Duration),
  storeTimeout: Type.Optional(Duration),
  maxSessionsPerUser: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  maxMetadataBytes: Type.Optional(Type.Integer({ minimum: 2, maximum: 1_048_576 })),
  limitPolicy: Type.Optional(Type.Union([Type.Literal('evict-oldest'), Type.Literal('deny')])),
  header: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9-]+$' })),
  cookie: Type.Optional(Type.Object({
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' })),
    secure: Type.Optional(Type.Union([Type.Boolean(), Type.Literal('auto')])),
    httpOnly: Type.Optional(Type.Boolean()),
    sameSite: Type.Optional(Type.Union([Type.Literal('lax'), Type.Literal('strict'), Type.Literal('none')])),
    path: Type.Optional(Type.String({ minLength: 1, pattern: '^/' })),
    domain: Type.Optional(Type.String({ minLength: 1 })),
    hostPrefix: Type.Optional(Type.Boolean()),
    signed: Type.Optional(Type.Boolean()),
    secret: Type.Optional(Type.Union([Type.String({ minLength: 32 }), Type.Array(Type.String({ minLength: 32 }), { minItems: 1 })]))
  }, { additionalProperties: false })),
  routes: Type.Optional(Type.Object({
    prefix: Type.Optional(Type.String({ pattern: '^(/[A-Za-z0-9_.~-]+)*$' }))
  }, { additionalProperties: false })),
  cleanup: Type.Optional(Type.Object({
    interval: Type.Optional(Duration),
    batchSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 }))
  }, { additionalProperties: false })),
  onStoreError: Type.Optional(Type.Union([Type.Literal('fail-closed'), Type.Literal('fail-open')])),
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
    blockAfter: Type.Optional(Type.Union([Type.Literal(false), Duration])),
    knownDevices: Type.Optional(Type.Union([Type.Literal(false), Duration]))
  }, { additionalProperties: false })),
  audit: Type.Optional(Type.Object({
    retention: Type.Optional(Duration),
    activity: Type.Optional(Type.Boolean())
  }, { additionalProperties: false })),
  redis: Type.Optional(Type.Unknown()),
  store: Type.Optional(Type.Unknown()),
  metrics: Type.Optional(Type.Unknown()),
  now: Type.Optional(Type.Unknown())
}, { additionalProperties: false })

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
  /** An ioredis `Redis` or `Cluster` (yours: never closed by the plugin) or a URL (the plugin owns that client). */
  redis?: Redis | Cluster | string
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
   * Cache session records in process, invalidated by Redis when they change on any instance (CLIENT TRACKING):
   * repeat requests cost no round trip. Needs `redis` (standalone or Sentinel, not Cluster). @default false
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
}

const PACKAGE = 'fastify-distributed-session'

function optionError (path: string, message: string): Error {
  return new Error(`${PACKAGE}: option "${path}" ${message}`)
}

function ms (value: number | string | undefined, fallback: number): number {
  return value === undefined ? fallback : parseDuration(value) as number
}

/** What a value must be, in words: TypeBox says only "expected union value" for a union. */
function describe (schema: unknown, fallback: string): string {
  if ((schema as { description?: string }).description === DURATION) return "must be milliseconds (an integer >= 0) or a duration string such as '30m', '24h', '500ms'"
  const anyOf = (schema as { anyOf?: Array<{ const?: unknown }> }).anyOf
  if (anyOf !== undefined && anyOf.every((member) => member.const !== undefined)) {
    return `must be one of ${anyOf.map((member) => JSON.stringify(member.const)).join(', ')}`
  }
  return fallback.toLowerCase()
}

function looksLikeRedis (value: unknown): boolean {
  return value !== null && typeof value === 'object' &&
    typeof (value as Redis).defineCommand === 'function' && typeof (value as Redis).hgetall === 'function'
}

/** Validates the options once at registration; a bad value throws an Error naming the option. */
export function resolveOptions (input: unknown): ResolvedOptions {
  const options = (input ?? {}) as SessionPluginOptions
  if (typeof options !== 'object') throw optionError('(root)', 'must be an object')
  // `false` / `true` shorthands of the object options are checked here, the objects by the schema.
  const shape: Record<string, unknown> = { ...options }
  if (shape.cookie === false) delete shape.cookie
  if (shape.cleanup === false) delete shape.cleanup
  if (typeof shape.routes === 'boolean') delete shape.routes
  if (typeof shape.nearCache === 'boolean') delete shape.nearCache
  const first = Value.Errors(OptionsSchema, shape).First()
  if (first !== undefined) {
    const path = first.path.slice(1).replace(/\//g, '.') || '(root)'
    throw optionError(path, `${describe(first.schema, first.message)}, got ${JSON.stringify(first.value) ?? String(first.value)}`)
  }
  const valid = options as SessionPluginOptions
  if (valid.redis !== undefined && typeof valid.redis !== 'string' && !looksLikeRedis(valid.redis)) {
    throw optionError('redis', 'must be an ioredis Redis or Cluster instance or a redis:// URL')
  }
  if (typeof valid.redis === 'string' && !/^rediss?:\/\//.test(valid.redis)) {
    throw optionError('redis', 'must be a redis:// or rediss:// URL')
  }
  if (valid.store !== undefined && (valid.store === null || typeof (valid.store as Store).load !== 'function')) {
    throw optionError('store', 'must implement the Store interface')
  }
  if (valid.now !== undefined && typeof valid.now !== 'function') throw optionError('now', 'must be a function')
  if (valid.nearCache !== undefined && valid.nearCache !== false && (valid.redis === undefined || valid.store !== undefined)) {
    throw optionError('nearCache', 'needs the `redis` option (and no custom `store`)')
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
      throw optionError('cookie.hostPrefix', 'requires secure cookies, path "/" and no domain')
    }
    if (cookie.sameSite === 'none' && cookie.secure === false) {
      throw optionError('cookie.sameSite', '"none" requires secure cookies')
    }
    const name = cookie.name ?? 'session_id'
    resolvedCookie = {
      name: hostPrefix ? `__Host-${name}` : name,
      secure: hostPrefix ? true : cookie.secure ?? 'auto',
      httpOnly: cookie.httpOnly ?? true,
      sameSite: cookie.sameSite ?? 'lax',
      path: cookie.path ?? '/',
      domain: cookie.domain,
      signed: cookie.signed === true,
      secrets
    }
  }
  const routes = valid.routes ?? true
  const storeTimeoutMs = ms(valid.storeTimeout, 2000)
  if (storeTimeoutMs === 0) throw optionError('storeTimeout', 'must be more than 0')
  const cleanupOption = valid.cleanup ?? {}
  if (cleanupOption !== false && ms(cleanupOption.interval, 3_600_000) < 1000) throw optionError('cleanup.interval', 'must be at least 1 second')
  const blockAfter = valid.security?.blockAfter ?? false
  const near = valid.nearCache ?? false
  return {
    raw: valid,
    nearCache: near === false ? false : near === true ? {} : { maxEntries: near.maxEntries, maxAgeMs: near.maxAge === undefined ? undefined : ms(near.maxAge, 5000) },
    keyPrefix: valid.keyPrefix ?? 'sess:',
    storeTimeoutMs,
    header: (valid.header ?? 'x-session-id').toLowerCase(),
    cookie: resolvedCookie,
    routesPrefix: routes === false ? null : routes === true ? '' : routes.prefix ?? '',
    cleanup: cleanupOption === false ? false : { intervalMs: ms(cleanupOption.interval, 3_600_000), batchSize: cleanupOption.batchSize ?? 500 },
    failOpen: valid.onStoreError === 'fail-open',
    checkIp: valid.security?.checkIp ?? true,
    fingerprintTolerance: valid.security?.fingerprintTolerance ?? 0.8,
    onSuspicious: onSuspicious as ResolvedOptions['onSuspicious'],
    invalidTokenThreshold: valid.security?.invalidTokenThreshold ?? 20,
    invalidTokenWindowMs: ms(valid.security?.invalidTokenWindow, 60_000),
    blockMs: blockAfter === false ? 0 : ms(blockAfter, 0)
  }
}
