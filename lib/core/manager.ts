import { EventEmitter } from 'node:events'
import type { CleanupRunResult } from './cleanup'
import { boundedCount, boundedDuration, isResolved, kResolved } from './bounds'
import { DEFAULT_CLEANUP_BATCH_SIZE } from './cleanup'
import { concurrencyFlags, FLAG_RAPID_CREATION, flagReasons, type ConcurrencyReason } from '../security/concurrency'
import { parseDuration } from './duration'
import { errors } from './errors'
import { logQuietly, warningLogger, type SessionLogger } from './logger'
import { copyMetadata, DEFAULT_MAX_METADATA_KEYS, isWellFormed, serializeMetadata } from './metadata'
import {
  deviceKey, effectiveFlags, ENDED_SESSION_MEMORY_MS, MAX_CONFIRM_METHOD_LENGTH, newestOtherCreation, validDeviceName, type SessionEnded, type SessionEndReason
} from '../security/stepup'
import { formatToken, hashSecret, isSessionId, newSecret, parseToken, secretMatches, VerifiedSecrets, type ParsedToken } from './token'
import { DEFAULT_AUDIT_MAX_EVENTS_PER_USER, sessionDeadline, type AuditEventType, type ConcurrencyRules, type LoadResult, type RawAuditEvent, type Store, type StoredSession } from '../store/types'

export type { SessionLogger } from './logger'

/**
 * Extend this interface to type `session.metadata`:
 * `declare module 'fastify-distributed-session' { interface SessionMetadata { plan: string } }`
 */
export interface SessionMetadata {}

export interface Session {
  /** Public session id: safe to show and log; it is not the token. */
  id: string
  userId: string
  createdAt: Date
  lastActivity: Date
  /** The earlier of the idle and the absolute deadline. */
  expiresAt: Date
  /** Creation + the session's absolute lifetime (`ttl`): it ends then however active it is. */
  absoluteDeadline: Date
  /** The session's idle timeout (its own `idleTimeout`, else the manager's). */
  idleTimeoutMs: number
  /** Moved by every update of the session's metadata or attributes; pass it as `ifRevision` to update safely. */
  revision: number
  ipAddress: string
  userAgent: string
  deviceFingerprint: string
  /**
   * Typed `Partial<SessionMetadata>`: a stored session may predate a field you declared (an older deploy), or come
   * from `create()` without it, so read declared fields as possibly undefined (`session.metadata.plan ?? 'free'`).
   */
  metadata: Partial<SessionMetadata> & Record<string, unknown>
  /** Last authentication: the login, or the last `confirm` (step-up). */
  authenticatedAt: Date
  /** The name the user gave this device, or null. */
  name: string | null
}

export interface CreateOptions {
  /** Absolute lifetime of this session (milliseconds or a duration string, at most 400 days). @default absoluteTimeout */
  ttl?: number | string
  /** Idle timeout of this session (at most its `ttl`, longer than `touchInterval`). @default idleTimeout */
  idleTimeout?: number | string
  /**
   * Public id of the device's previous session: ended in the same atomic step as the create when it lives on the
   * same shard (audited 'invalidated', reason 'new_login'), right after it otherwise; only if it is live. A create
   * that is refused (limit, invalid input) leaves it alone.
   */
  replace?: string
  /**
   * Epoch milliseconds of the real clock (`Date.now()`, whatever the manager's `now` option says) after which the
   * store must not apply this create: the caller has stopped waiting for it (the plugin passes the moment its
   * `storeTimeout` answers 503). A create that reaches Redis later changes nothing, evicts nothing and ends no
   * `replace`d session; the call fails with FST_SESSION_STORE_UNAVAILABLE. Redis compares it with its own clock
   * (`TIME`), so it needs the instances' clocks within the store timeout of Redis's. The memory store applies a create
   * at once and ignores it.
   */
  notAfter?: number
}

export interface UpdateOptions {
  /** Only update when the session's revision is still this one; else FST_SESSION_CONFLICT (409). */
  ifRevision?: number
  /** Only update a session of this user (when the key is present it must be a non-empty string). */
  userId?: string
}

export interface SessionData {
  ipAddress?: string
  userAgent?: string
  deviceFingerprint?: string
  metadata?: Partial<SessionMetadata> & Record<string, unknown>
}

/** What `update` takes: a shallow-merge patch, where `null` removes a metadata key (declared ones included). */
export interface SessionPatch extends Omit<SessionData, 'metadata'> {
  metadata?: { [K in keyof SessionMetadata]?: SessionMetadata[K] | null } & Record<string, unknown>
}

export interface AuditEvent {
  type: AuditEventType
  timestamp: Date
  userId: string
  /** Public session id ('' for events about a user rather than one session). */
  sessionId: string
  data: Record<string, unknown>
}

/** One read of a user's audit log (`auditLogPage`). */
export interface AuditLogPage {
  /** Newest first. */
  events: AuditEvent[]
  /** True when the per-user cap (`audit.maxEventsPerUser`) dropped events of the queried window. */
  truncated: boolean
  /** With `truncated`: the cap dropped events older than this instant (and none younger). */
  droppedBefore?: Date
}

export interface ConcurrencyReport {
  /** How many other live sessions the user has. */
  concurrentSessions: number
  suspiciousActivity: boolean
  reasons: ConcurrencyReason[]
  sessions: Session[]
}

export interface SecurityThresholds {
  /** @default 2 */
  maxDistinctIps?: number
  /** @default 3 */
  maxDistinctUserAgents?: number
  /** Milliseconds or a duration string; 0 disables the rule. @default '5m' */
  rapidCreationWindow?: number | string
  /**
   * How long a device (browser family and IP network) stays known after its last login; a login from a device
   * the user has not used within it is reported as new (`newDevice`). `false` turns it off. @default '90d'
   */
  knownDevices?: false | number | string
}

/** The `'newDevice'` event: what an application needs to tell the user of a sign-in from a new device. */
export interface NewDeviceEvent {
  userId: string
  sessionId: string
  ipAddress: string
  userAgent: string
  timestamp: Date
}

export interface SessionManagerOptions {
  store: Store
  /** Sliding idle timeout. @default '30m' */
  idleTimeout?: number | string
  /** Lifetime from creation, whatever the activity. @default '24h' */
  absoluteTimeout?: number | string
  /** `lastActivity` and the TTL are written at most this often per session. @default '60s' */
  touchInterval?: number | string
  /** @default 5 */
  maxSessionsPerUser?: number
  /** @default 'evict-oldest' */
  limitPolicy?: 'evict-oldest' | 'deny'
  /** Serialized size limit of a session's metadata. @default 4096 */
  maxMetadataBytes?: number
  /** Most top-level keys a session's metadata may hold (1 to 1024). @default 64 */
  maxMetadataKeys?: number
  /**
   * Where the manager reports what it isolates or repairs: a listener that threw, damaged data removed, a best
   * effort clean-up that failed. A Fastify / pino logger fits. @default process warnings (process.emitWarning)
   */
  logger?: SessionLogger
  security?: SecurityThresholds
  audit?: {
    /** How long audit events are kept; 0 turns the audit log off. @default '7d' */
    retention?: number | string
    /** Record an `activity` event at each touch. @default false */
    activity?: boolean
    /**
     * Most events kept per user (1 to 1 000 000); the oldest go first, and `auditLogPage` says when it dropped
     * events of the queried window. @default 5000
     */
    maxEventsPerUser?: number
    /** Also append every event to the shard's feed (a Redis stream per shard, for SIEM consumers). @default false */
    feed?: boolean
  }
  /** Clock, for tests. @default Date.now */
  now?: () => number
  /** Timers of the components that wait on the clock (the cleanup service), for tests. @default setTimeout / clearTimeout */
  timers?: SessionTimers
}

/** The timer functions the manager's components use; tests inject them together with `now`. */
export interface SessionTimers {
  setTimeout (fire: () => void, delayMs: number): { unref (): unknown }
  clearTimeout (timer: { unref (): unknown }): void
}

const globalTimers: SessionTimers = {
  setTimeout: (fire, delayMs) => setTimeout(fire, delayMs),
  clearTimeout: (timer) => { clearTimeout(timer as NodeJS.Timeout) }
}

/** A loaded session plus what the request path needs beyond the public shape. */
export interface LoadedSession {
  session: Session
  concurrencyFlags: number
}

/** Sessions whose last verified secret the manager remembers (about 200 bytes each). */
const VERIFIED_SECRETS = 10_000

/** A token whose session has ended recently: why and when */
export interface EndedLoad {
  session: null
  ended: SessionEnded
}

/** What a token opens: a session, an ended session's reason (for its holder), or nothing. */
export type Resolution = LoadedSession | EndedLoad | null

export interface ConfirmOptions {
  /** When given, the session must belong to this user. */
  userId?: string
  ipAddress?: string
  userAgent?: string
  deviceFingerprint?: string
  /** How the user proved it is them, e.g. 'password', 'totp', 'webauthn'. */
  method: string
}

const CONFIRM_METHOD = new RegExp(`^[A-Za-z0-9_.:-]{1,${MAX_CONFIRM_METHOD_LENGTH}}$`)
const KNOWN_DEVICES_DEFAULT_MS = 90 * 86_400_000
const KNOWN_DEVICES_MAX_MS = 400 * 86_400_000

/** An owner argument as a string: absent -> '' (any owner) unless `isRequired`; see ownerOf. */
function ownerArgument (options: object, isRequired: boolean): string {
  const owner = ownerOf(options)
  if (owner !== undefined) return owner
  if (isRequired) throw new errors.INVALID_OWNER()
  return ''
}

const MAX_USER_ID_LENGTH = 256
const MAX_IP_LENGTH = 64
const MAX_USER_AGENT_LENGTH = 512
const MAX_FINGERPRINT_LENGTH = 512
const MAX_REASON_LENGTH = 256
/** Longest JSON of a security event's data (the audit record's `d`). */
const MAX_SECURITY_DATA_LENGTH = 4096
/** Longest per-session lifetime (`ttl`): 400 days, the longest cookie lifetime browsers honour. */
const MAX_SESSION_TTL_MS = 400 * 86_400_000
// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const CONTROL = /[\u0000-\u001f\u007f]/

function duration (name: string, value: unknown, fallback: number, allowZero = false): number {
  if (value === undefined) return fallback
  const ms = parseDuration(value)
  if (ms === null || (!allowZero && ms === 0)) {
    throw new errors.INVALID_OPTION(`"${name}": expected milliseconds or a duration such as '30m', got ${JSON.stringify(value)}`)
  }
  return ms
}

/**
 * Cuts untrusted request-derived strings to a bounded size instead of refusing the login (never between the two
 * halves of a surrogate pair). A string with a lone surrogate cannot reach Redis unchanged: it is refused.
 */
function clip (value: unknown, max: number, name = 'a string'): string {
  if (typeof value !== 'string') return ''
  if (!isWellFormed(value)) throw new errors.INVALID_ARGUMENT(`${name} holds a lone UTF-16 surrogate`)
  // eslint-disable-next-line no-control-regex -- strip control characters from header-derived text
  let clipped = value.replace(/[\u0000-\u001f\u007f]/g, '').slice(0, max)
  const last = clipped.charCodeAt(clipped.length - 1)
  if (last >= 0xd800 && last <= 0xdbff) clipped = clipped.slice(0, -1)
  return clipped
}

/** An IP address as a session stores it (and request.session shows it): control characters removed, at most 64 characters. */
export function storedIpAddress (value: unknown): string {
  return clip(value, MAX_IP_LENGTH, 'ipAddress')
}

/** A user agent as a session stores it (and request.session shows it): control characters removed, at most 512 characters. */
export function storedUserAgent (value: unknown): string {
  return clip(value, MAX_USER_AGENT_LENGTH, 'userAgent')
}

function checkNotAfter (notAfter: unknown): void {
  if (notAfter !== undefined && !Number.isSafeInteger(notAfter)) throw new errors.INVALID_ARGUMENT('notAfter must be epoch milliseconds (an integer)')
}

/**
 * The error of a create or rotation the store refused as past its `notAfter`. When this instance's clock says the
 * deadline has not passed, the store's clock is ahead of ours by more than the time left: every such call would
 * fail, so the cause says what to fix (it reaches the 503's log line, never the client).
 */
function lateError (operation: string, lateAt: number, now: number, notAfter: number): Error {
  const cause = now > notAfter
    ? new Error(`the ${operation} reached the store ${lateAt - notAfter} ms after its deadline (notAfter) and changed nothing`)
    : new Error(`the store refused a ${operation} as past its deadline (notAfter) that this instance's clock has not reached: the store's clock is at least ${lateAt - notAfter} ms ahead of this instance's; synchronize the clocks (NTP)`)
  return new errors.STORE_UNAVAILABLE({ cause })
}

function validUserId (userId: unknown): string {
  if (typeof userId !== 'string' || userId.length === 0 || userId.length > MAX_USER_ID_LENGTH || CONTROL.test(userId) ||
    !isWellFormed(userId)) {
    throw new errors.INVALID_USER_ID()
  }
  return userId
}

/** The owner of an options object: absent key = any owner; a present key must be a valid user id. */
function ownerOf (options: object): string | undefined {
  if (!('userId' in options)) return undefined
  const userId = (options as { userId?: unknown }).userId
  if (typeof userId !== 'string' || userId === '') throw new errors.INVALID_OWNER()
  return validUserId(userId)
}

function optionsObject<T extends object> (options: T | undefined, name: string): T {
  if (options === undefined) return {} as T
  if (options === null || typeof options !== 'object') throw new errors.INVALID_ARGUMENT(`${name} must be an object`)
  return options
}

/** The manager's option values, each validated against its documented bounds (core/bounds.ts). */
export interface ManagerSettings {
  idleTimeoutMs: number
  absoluteTimeoutMs: number
  touchIntervalMs: number
  maxSessionsPerUser: number
  limitPolicy: 'evict-oldest' | 'deny'
  maxMetadataBytes: number
  maxMetadataKeys: number
  rules: ConcurrencyRules
  auditRetentionMs: number
  auditActivity: boolean
  auditMaxEventsPerUser: number
  auditFeed: boolean
  /** 0 = off. */
  knownDevicesMs: number
}

/** The option values SessionManager validates; the plugin's options carry them under the same names. */
export type ManagerOptionValues = Pick<SessionManagerOptions, 'idleTimeout' | 'absoluteTimeout' | 'touchInterval' |
  'maxSessionsPerUser' | 'limitPolicy' | 'maxMetadataBytes' | 'maxMetadataKeys' | 'security' | 'audit'>

/** What the plugin passes: the settings its resolver produced, taken as they are (see kResolved). */
export interface ResolvedManagerOptions extends SessionManagerOptions {
  [kResolved]: true
  settings: ManagerSettings
}

/**
 * Validates and normalises the manager's options, once: the plugin's resolver calls it at registration, and
 * `new SessionManager(options)` when a user builds a manager directly. Errors are FST_SESSION_INVALID_OPTION naming
 * the documented option.
 */
export function resolveManagerSettings (options: ManagerOptionValues): ManagerSettings {
  const idleTimeoutMs = boundedDuration('idleTimeout', options.idleTimeout, 30 * 60_000)
  const absoluteTimeoutMs = boundedDuration('absoluteTimeout', options.absoluteTimeout, 24 * 3_600_000)
  const touchIntervalMs = boundedDuration('touchInterval', options.touchInterval, 60_000)
  if (touchIntervalMs >= idleTimeoutMs) {
    // A session would expire before its first touch could slide the idle deadline.
    throw new errors.INVALID_OPTION(`"touchInterval" (${touchIntervalMs} ms) must be shorter than "idleTimeout" (${idleTimeoutMs} ms)`)
  }
  const maxSessionsPerUser = boundedCount('maxSessionsPerUser', options.maxSessionsPerUser, 5)
  const maxMetadataBytes = boundedCount('maxMetadataBytes', options.maxMetadataBytes, 4096)
  const maxMetadataKeys = boundedCount('maxMetadataKeys', options.maxMetadataKeys, DEFAULT_MAX_METADATA_KEYS)
  const limitPolicy = options.limitPolicy ?? 'evict-oldest'
  if (limitPolicy !== 'evict-oldest' && limitPolicy !== 'deny') {
    throw new errors.INVALID_OPTION(`"limitPolicy" must be one of "evict-oldest", "deny", got ${JSON.stringify(limitPolicy)}`)
  }
  const security = options.security ?? {}
  const rules = {
    maxDistinctIps: boundedCount('security.maxDistinctIps', security.maxDistinctIps, 2),
    maxDistinctUserAgents: boundedCount('security.maxDistinctUserAgents', security.maxDistinctUserAgents, 3),
    rapidCreationWindowMs: boundedDuration('security.rapidCreationWindow', security.rapidCreationWindow, 5 * 60_000)
  }
  const auditRetentionMs = boundedDuration('audit.retention', options.audit?.retention, 7 * 86_400_000)
  const auditActivity = options.audit?.activity === true
  const auditMaxEventsPerUser = boundedCount('audit.maxEventsPerUser', options.audit?.maxEventsPerUser, DEFAULT_AUDIT_MAX_EVENTS_PER_USER)
  const auditFeed = options.audit?.feed ?? false
  if (typeof auditFeed !== 'boolean') throw new errors.INVALID_OPTION(`"audit.feed": expected a boolean, got ${JSON.stringify(auditFeed)}`)

  const knownDevicesMs = security.knownDevices === false ? 0 : duration('security.knownDevices', security.knownDevices, KNOWN_DEVICES_DEFAULT_MS)
  if (knownDevicesMs > KNOWN_DEVICES_MAX_MS) {
    throw new errors.INVALID_OPTION(`"security.knownDevices": at most 400 days, got ${knownDevicesMs} ms`)
  }
  return {
    idleTimeoutMs,
    absoluteTimeoutMs,
    touchIntervalMs,
    maxSessionsPerUser,
    limitPolicy,
    maxMetadataBytes,
    maxMetadataKeys,
    rules,
    auditRetentionMs,
    auditActivity,
    auditMaxEventsPerUser,
    auditFeed,
    knownDevicesMs
  }
}

/**
 * The manager's events: name -> the arguments its listeners get (docs/api.md, Events). `on`, `once`, `off` and `emit`
 * are typed by it.
 */
export interface SessionManagerEvents {
  /** Every audit record, as it is written. */
  audit: [event: AuditEvent]
  /** Security events (type `security` or `unrecognized`), `invalid_tokens` bursts included. */
  security: [event: AuditEvent]
  /** A login from a device the user has not used within `security.knownDevices`. */
  newDevice: [event: NewDeviceEvent]
  /** A store call of the request path failed or timed out. */
  storeError: [error: Error]
  /** After each run of the cleanup service, skipped ones included. */
  cleanup: [result: CleanupRunResult]
  /** A cleanup run failed. */
  cleanupError: [error: Error]
  /** Only logged when nobody listens (EventEmitter would throw). */
  error: [error: unknown]
}

type SessionEventName = keyof SessionManagerEvents
type SessionEventListener<K extends SessionEventName> = (...args: SessionManagerEvents[K]) => void

// Typed overloads of the inherited EventEmitter methods (declaration merging with the class below).
export interface SessionManager {
  on<K extends SessionEventName> (event: K, listener: SessionEventListener<K>): this
  once<K extends SessionEventName> (event: K, listener: SessionEventListener<K>): this
  off<K extends SessionEventName> (event: K, listener: SessionEventListener<K>): this
  addListener<K extends SessionEventName> (event: K, listener: SessionEventListener<K>): this
  removeListener<K extends SessionEventName> (event: K, listener: SessionEventListener<K>): this
  emit<K extends SessionEventName> (event: K, ...args: SessionManagerEvents[K]): boolean
}

/**
 * The session manager: every operation is one atomic store step (one Redis round trip, see docs/design.md).
 * Only `get` and `rotate` take a token; everything else takes the public session id or a user id.
 *
 * Events: `'audit'` (AuditEvent) for every audit record written; `'security'` (AuditEvent) for security events.
 */
export class SessionManager extends EventEmitter {
  // The settings' fields are `declare`d: the constructor copies them from ManagerSettings in one Object.assign.
  readonly store: Store
  declare readonly idleTimeoutMs: number
  declare readonly absoluteTimeoutMs: number
  declare readonly touchIntervalMs: number
  declare readonly maxSessionsPerUser: number
  declare readonly limitPolicy: 'evict-oldest' | 'deny'
  declare readonly maxMetadataBytes: number
  declare readonly maxMetadataKeys: number
  readonly logger: SessionLogger
  declare readonly rules: ConcurrencyRules
  declare readonly auditRetentionMs: number
  declare readonly auditActivity: boolean
  declare readonly auditMaxEventsPerUser: number
  declare readonly auditFeed: boolean
  readonly now: () => number
  readonly timers: SessionTimers
  /** Secrets this process verified lately: a session's next request compares strings instead of hashing. */
  private readonly verifiedSecrets = new VerifiedSecrets(VERIFIED_SECRETS)
  /** Known-device memory in ms; 0 = off. */
  declare readonly knownDevicesMs: number

  constructor (options: SessionManagerOptions) {
    super()
    if (options === null || typeof options !== 'object' || options.store === undefined) {
      throw new errors.INVALID_OPTION('"store" is required: a Store (RedisStore, MemoryStore or your own)')
    }
    // The plugin passes the settings its resolver produced; a manager built directly resolves its own, the same way.
    const settings = isResolved(options)
      ? (options as ResolvedManagerOptions).settings
      : resolveManagerSettings(options)
    this.store = options.store
    Object.assign(this, settings)
    this.logger = options.logger ?? warningLogger
    this.now = options.now ?? Date.now
    this.timers = options.timers ?? globalTimers
    this.store.configure({
      idleTimeoutMs: this.idleTimeoutMs,
      auditRetentionMs: this.auditRetentionMs,
      auditMaxEventsPerUser: this.auditMaxEventsPerUser,
      auditFeed: this.auditFeed,
      rules: this.rules
    })
  }

  /**
   * Starts a session. At the limit, the least recently active sessions are evicted in the same atomic step
   * (`evict-oldest`) or the call fails with FST_SESSION_LIMIT_REACHED (`deny`). Everything (user id, metadata,
   * timeouts, `replace`) is validated before anything is written; see CreateOptions for `replace`.
   */
  async create (userId: string, data: SessionData = {}, options: CreateOptions = {}): Promise<{ token: string, session: Session, evicted: string[], replaced: boolean, newDevice: boolean }> {
    validUserId(userId)
    if (data === null || typeof data !== 'object') throw new errors.INVALID_ARGUMENT('data must be an object')
    const { ttl: ttlOption, idleTimeout, replace, notAfter } = optionsObject(options, 'the create options')
    checkNotAfter(notAfter)
    const ttl = duration('ttl', ttlOption, this.absoluteTimeoutMs)
    if (ttl > MAX_SESSION_TTL_MS) throw new errors.INVALID_OPTION(`"ttl": at most 400 days, got ${ttl} ms`)
    const idleTimeoutMs = duration('idleTimeout', idleTimeout, this.idleTimeoutMs)
    if (idleTimeout !== undefined && idleTimeoutMs > ttl) throw new errors.INVALID_OPTION(`"idleTimeout" (${idleTimeoutMs} ms) must not exceed the session's "ttl" (${ttl} ms)`)
    if (idleTimeoutMs <= this.touchIntervalMs) {
      throw new errors.INVALID_OPTION(`"idleTimeout" (${idleTimeoutMs} ms) must be longer than "touchInterval" (${this.touchIntervalMs} ms)`)
    }
    if (replace !== undefined && !isSessionId(replace)) throw new errors.INVALID_ARGUMENT('replace must be a session id')
    const { entries, bytes } = serializeMetadata(data.metadata ?? {}, false, this.maxMetadataKeys)
    if (bytes > this.maxMetadataBytes) throw new errors.METADATA_TOO_LARGE(this.maxMetadataBytes)
    const ipAddress = storedIpAddress(data.ipAddress)
    const userAgent = storedUserAgent(data.userAgent)
    const deviceFingerprint = clip(data.deviceFingerprint, MAX_FINGERPRINT_LENGTH, 'deviceFingerprint')
    const secret = newSecret()
    const now = this.now()
    const result = await this.store.create({
      userId,
      tokenHash: hashSecret(secret),
      now,
      absoluteDeadline: now + ttl,
      maxSessions: this.maxSessionsPerUser,
      policy: this.limitPolicy,
      ipAddress,
      userAgent,
      deviceFingerprint,
      metadata: entries as Record<string, string>,
      auditData: JSON.stringify({ ip: ipAddress, userAgent }),
      ...(idleTimeoutMs === this.idleTimeoutMs ? {} : { idleTimeoutMs }),
      ...(replace === undefined ? {} : { replace: { sessionId: replace, auditData: '{"reason":"new_login"}' } }),
      ...(notAfter === undefined ? {} : { notAfter }),
      ...(this.knownDevicesMs === 0
        ? {}
        : {
            device: {
              key: deviceKey(userAgent, ipAddress),
              windowMs: this.knownDevicesMs,
              auditData: JSON.stringify({ rule: 'new_device', ip: ipAddress, userAgent })
            }
          })
    })
    this.emitEvents(result.events)
    if (!result.ok && result.reason === 'late') throw lateError('create', result.lateAt, Date.now(), notAfter as number)
    if (!result.ok) throw new errors.LIMIT_REACHED(this.maxSessionsPerUser)
    const session = this.toSession(result.session)
    if (result.isNewDevice) {
      const event: NewDeviceEvent = { userId, sessionId: session.id, ipAddress, userAgent, timestamp: new Date(now) }
      this.emit('newDevice', event)
    }
    return { token: formatToken(result.session.id, secret), session, evicted: result.evicted, replaced: result.replaced, newDevice: result.isNewDevice }
  }

  /** The session a token opens, or null. A malformed token costs no store call. */
  async get (token: string, options: { touch?: boolean } = {}): Promise<Session | null> {
    const loaded = await this.load(token, options.touch !== false)
    return loaded === null ? null : loaded.session
  }

  /** `get` plus the concurrency flags the store keeps on the session (used by the plugin's request hook). */
  async load (token: string | ParsedToken, touch = true): Promise<LoadedSession | null> {
    const loaded = await this.resolve(token, touch)
    return loaded === null || loaded.session === null ? null : loaded
  }

  /**
   * `load`, and for a token whose session ended within the last day, why and when (`ended`), from the
   * same store read.
   */
  async resolve (token: string | ParsedToken, touch = true): Promise<Resolution> {
    const parsed = typeof token === 'string' ? parseToken(token) : token
    if (parsed === null) return null
    return await this.resolveParsed(parsed, touch)
  }

  /**
   * `resolve` for a parsed token, answered without a promise when the store knows the record without I/O
   * (`Store.loadNow`: the memory store, a near-cache hit) and no store work is due (a touch, an expiry, a repair).
   * The plugin's request hook calls it: the common request then allocates no promise at all.
   */
  resolveParsed (parsed: ParsedToken, touch: boolean): Resolution | Promise<Resolution> {
    let known: LoadResult | undefined
    let loading: Promise<LoadResult> | undefined
    try {
      known = this.store.loadNow?.(parsed.sessionId)
      // Promise.resolve: a custom store's thenable becomes a promise (a native one is returned as it is).
      if (known === undefined) loading = Promise.resolve(this.store.load(parsed.sessionId))
    } catch (error) {
      // A store that throws instead of rejecting: a store failure all the same.
      return Promise.reject(error)
    }
    if (loading === undefined) return this.settle(parsed, known as LoadResult, touch, true)
    return loading.then((stored) => this.settle(parsed, stored, touch, false))
  }

  /**
   * What a store read means for a token; a promise only when the store must act (repair, expiry, due touch).
   * `isShared`: the record came from `loadNow` and may be handed to the next request as well (its metadata is copied).
   */
  private settle (parsed: ParsedToken, stored: LoadResult, touch: boolean, isShared: boolean): Resolution | Promise<Resolution> {
    if (stored === null) return null
    if (stored === 'corrupt') return this.discardCorrupt(parsed.sessionId)
    if ('ended' in stored) return this.endedLoad(parsed.secret, stored.tokenHash, stored.ended.reason, stored.ended.at)
    if (!this.verifiedSecrets.matches(parsed.sessionId, parsed.secret, stored.tokenHash)) {
      // The token this session had before its last rotation
      if (stored.previousTokenHash === undefined || stored.previousTokenUntil === undefined) return null
      return this.endedLoad(parsed.secret, stored.previousTokenHash, 'rotated', stored.previousTokenUntil - ENDED_SESSION_MEMORY_MS)
    }
    const now = this.now()
    if (this.deadline(stored) <= now) return this.expireLoaded(stored, now)
    if (touch && now - stored.lastActivity >= this.touchIntervalMs) return this.touchLoaded(stored, now, isShared)
    return { session: this.toSession(stored, stored.lastActivity, isShared), concurrencyFlags: effectiveFlags(stored, stored.concurrencyFlags, now, this.rules) }
  }

  /** Damaged data is no session: removing it is best effort and never fails the request. */
  private async discardCorrupt (sessionId: string): Promise<null> {
    await this.bestEffort('discard', sessionId, async () => await this.store.discard(sessionId, this.now()))
    return null
  }

  private async expireLoaded (stored: StoredSession, now: number): Promise<EndedLoad> {
    await this.bestEffort('expire', stored.id, async () => await this.store.invalidate(stored.id, now, 'expired', '{"reason":"timeout"}'))
    return { session: null, ended: { reason: 'expired', at: new Date(this.deadline(stored)) } }
  }

  /** A request that finds its session's touch due: the touch script, then the session as touched. */
  private async touchLoaded (stored: StoredSession, now: number, isShared: boolean): Promise<LoadedSession | null> {
    let lastActivity = stored.lastActivity
    let flags = stored.concurrencyFlags
    const auditData = this.auditActivity ? JSON.stringify({ ip: stored.ipAddress }) : null
    try {
      const touched = await this.store.touch(stored.id, now, this.touchIntervalMs, auditData)
      this.emitEvents(touched.events)
      if (touched.status === 'gone') return null
      if (touched.status === 'touched') lastActivity = now
      flags = touched.concurrencyFlags
    } catch (error) {
      // The session was just read: a failed touch (Redis full, a dropped connection) only leaves its idle
      // deadline where it was; it does not turn a valid request away.
      this.emit('storeError', error)
    }
    return { session: this.toSession(stored, lastActivity, isShared), concurrencyFlags: effectiveFlags(stored, flags, now, this.rules) }
  }

  /**
   * Shallow-merges metadata (a `null` value removes a key) and replaces the request attributes given.
   * Other fields are ignored. Returns false when the session does not exist (or, with `userId`, is another
   * user's). With `ifRevision`, rejects with FST_SESSION_CONFLICT (409) when the session changed since that
   * revision: read it again and retry. Every update moves `revision` by one.
   */
  async update (sessionId: string, patch: SessionPatch, options: UpdateOptions = {}): Promise<boolean> {
    const checked = optionsObject(options, 'the update options')
    const userId = ownerOf(checked)
    const ifRevision = checked.ifRevision
    if (ifRevision !== undefined && !(Number.isSafeInteger(ifRevision) && ifRevision >= 0)) {
      throw new errors.INVALID_ARGUMENT('ifRevision must be a non-negative integer')
    }
    if (!isSessionId(sessionId)) return false
    if (patch === null || typeof patch !== 'object') throw new errors.INVALID_ARGUMENT('the update must be an object')
    const { entries } = serializeMetadata(patch.metadata ?? {}, true, this.maxMetadataKeys)
    const result = await this.store.update({
      sessionId,
      now: this.now(),
      ipAddress: patch.ipAddress === undefined ? undefined : storedIpAddress(patch.ipAddress),
      userAgent: patch.userAgent === undefined ? undefined : storedUserAgent(patch.userAgent),
      deviceFingerprint: patch.deviceFingerprint === undefined ? undefined : clip(patch.deviceFingerprint, MAX_FINGERPRINT_LENGTH, 'deviceFingerprint'),
      metadata: entries,
      maxMetadataBytes: this.maxMetadataBytes,
      maxMetadataKeys: this.maxMetadataKeys,
      auditData: JSON.stringify({ fields: Object.keys(patch).filter((key) => ['metadata', 'ipAddress', 'userAgent', 'deviceFingerprint'].includes(key)) }),
      ...(ifRevision === undefined ? {} : { ifRevision }),
      ...(userId === undefined ? {} : { userId })
    })
    this.emitEvents(result.events)
    if (result.status === 'too_large') throw new errors.METADATA_TOO_LARGE(this.maxMetadataBytes)
    if (result.status === 'too_many_keys') throw new errors.INVALID_METADATA(`at most ${this.maxMetadataKeys} keys are allowed (maxMetadataKeys)`)
    if (result.status === 'conflict') throw new errors.CONFLICT(ifRevision)
    return result.status === 'ok'
  }

  /**
   * Ends one session, whatever its record holds. With `userId`, only when it belongs to that user (ownership
   * check in the same step; when the key is present it must be a non-empty string).
   */
  async invalidate (sessionId: string, options: { reason?: string, userId?: string } = {}): Promise<boolean> {
    const checked = optionsObject(options, 'the invalidate options')
    const userId = ownerOf(checked)
    if (!isSessionId(sessionId)) return false
    const result = await this.store.invalidate(sessionId, this.now(), 'invalidated',
      JSON.stringify({ reason: clip(checked.reason ?? 'logout', MAX_REASON_LENGTH, 'reason') }), userId)
    this.emitEvents(result.events)
    return result.count === 1
  }

  /** Ends every session of a user, except `except` when given. Returns how many were ended. */
  async invalidateAll (userId: string, options: { except?: string, reason?: string } = {}): Promise<number> {
    validUserId(userId)
    const except = options.except !== undefined && isSessionId(options.except) ? options.except : null
    const result = await this.store.invalidateAll(userId, this.now(), except,
      JSON.stringify({ reason: clip(options.reason ?? 'invalidate_all', MAX_REASON_LENGTH) }))
    this.emitEvents(result.events)
    return result.count
  }

  /** The user's live sessions, most recently active first. */
  async list (userId: string): Promise<Session[]> {
    return (await this.listStored(userId)).map((stored) => this.toSession(stored))
  }

  /** A new token for the same session; the old token stops working at once. Null when the token is not valid. */
  async rotate (token: string, options: { notAfter?: number } = {}): Promise<{ token: string, session: Session } | null> {
    const { notAfter } = optionsObject(options, 'the rotate options')
    checkNotAfter(notAfter)
    const parsed = parseToken(token)
    if (parsed === null) return null
    const secret = newSecret()
    const result = await this.store.rotate(parsed.sessionId, hashSecret(parsed.secret), hashSecret(secret), this.now(), '{"reason":"rotate"}', notAfter)
    this.emitEvents(result.events)
    if (result.lateAt !== undefined) throw lateError('rotation', result.lateAt, Date.now(), notAfter as number)
    if (!result.ok) return null
    const loaded = await this.store.load(parsed.sessionId)
    if (loaded === null || loaded === 'corrupt' || 'ended' in loaded) return null
    return { token: formatToken(parsed.sessionId, secret), session: this.toSession(loaded) }
  }

  /** Evaluates the concurrent-session rules for `currentSessionId` against the user's other sessions. */
  async detectConcurrentSessions (userId: string, currentSessionId: string): Promise<ConcurrencyReport> {
    const stored = await this.listStored(userId)
    const inputs = stored.map((s) => ({ id: s.id, ipAddress: s.ipAddress, userAgent: s.userAgent, createdAt: s.createdAt }))
    let flags = concurrencyFlags(currentSessionId, inputs, this.rules)
    // A burst of logins whose window has passed with no newer login is over.
    const newest = newestOtherCreation(currentSessionId, inputs)
    if ((flags & FLAG_RAPID_CREATION) !== 0 && newest !== undefined && this.now() - newest > this.rules.rapidCreationWindowMs) flags &= ~FLAG_RAPID_CREATION
    const reasons = flagReasons(flags)
    const others = stored.filter((s) => s.id !== currentSessionId)
    return {
      concurrentSessions: others.length,
      suspiciousActivity: reasons.length > 0,
      reasons,
      sessions: others.map((s) => this.toSession(s))
    }
  }

  /** Ends every session of the user and records a security event. Returns how many sessions were ended. */
  async forceReauthentication (userId: string, reason: string): Promise<number> {
    const count = await this.invalidateAll(userId, { reason: `force_reauthentication: ${String(reason)}` })
    await this.recordSecurityEvent(userId, '', { rule: 'force_reauthentication', reason: clip(reason, MAX_REASON_LENGTH), count })
    return count
  }

  /**
   * Records a security event: `'security'` and `'audit'` events, and the audit log unless `persist` is false
   * (for events whose audit record the store has already written, such as limit evictions).
   */
  async recordSecurityEvent (userId: string, sessionId: string, data: Record<string, unknown>, persist = true): Promise<void> {
    const json = JSON.stringify(data)
    // JSON.stringify escapes a lone surrogate as \udXXX, which Lua's cjson cannot read back.
    if (json === undefined || json.length > MAX_SECURITY_DATA_LENGTH || /\\u[dD][89a-fA-F]/.test(json)) {
      throw new errors.INVALID_ARGUMENT(`security event data must be a JSON object of at most ${MAX_SECURITY_DATA_LENGTH} characters of well-formed text`)
    }
    const event: RawAuditEvent = { type: 'security', userId, sessionId, timestamp: this.now(), data: json }
    if (persist && this.auditRetentionMs > 0) await this.store.recordEvent(event)
    this.emitEvents([event])
  }

  /** The user's audit events, newest first (see `auditLogPage` to learn whether the per-user cap cut them). */
  async auditLog (userId: string, options: { since?: Date | number, limit?: number } = {}): Promise<AuditEvent[]> {
    return (await this.auditLogPage(userId, options)).events
  }

  /**
   * The user's audit events, newest first, and whether the per-user cap (`audit.maxEventsPerUser`) dropped events
   * of the window (at or after `since`, within the retention). Costs O(limit), whatever other users write.
   */
  async auditLogPage (userId: string, options: { since?: Date | number, limit?: number } = {}): Promise<AuditLogPage> {
    validUserId(userId)
    const since = options.since === undefined ? 0 : Number(options.since)
    const limit = options.limit ?? 100
    if (!Number.isFinite(since) || !Number.isSafeInteger(limit) || limit < 1 || limit > 10_000) {
      throw new errors.INVALID_ARGUMENT('since must be a date and limit an integer from 1 to 10000')
    }
    const page = await this.store.auditLog(userId, { since, limit, now: this.now() })
    const events = page.events.map(toAuditEvent)
    if (page.droppedAt === null) return { events, truncated: false }
    return { events, truncated: true, droppedBefore: new Date(page.droppedAt + 1) }
  }

  /** Removes everything that has expired; emits an `expired` audit event for each session. */
  async cleanup (batchSize = DEFAULT_CLEANUP_BATCH_SIZE): Promise<{ expired: number, orphaned: number }> {
    // A batch of 0 would examine nothing and be asked for again forever.
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new errors.INVALID_ARGUMENT(`batchSize must be an integer >= 1, got ${String(batchSize)}`)
    return await this.store.cleanup(this.now(), batchSize, (events) => this.emitEvents(events))
  }

  /**
   * Reads served by the store's in-process cache (the Redis near cache) since it was created, and the share they
   * are of all session reads; null when the store has no such cache.
   */
  cacheStats (): { hits: number, misses: number, hitRatio: number } | null {
    const stats = this.store.cacheStats?.() ?? null
    if (stats === null) return null
    const reads = stats.hits + stats.misses
    return { hits: stats.hits, misses: stats.misses, hitRatio: reads === 0 ? 0 : stats.hits / reads }
  }

  async close (): Promise<void> {
    await this.store.close()
  }

  // ---- step-up (issue 14) ----

  /**
   * Records that the user just proved it is them (second factor, password) on this session: `authenticatedAt`
   * moves to now, the given IP and device become the session's baseline, and the user's current concurrency
   * flags are acknowledged until something new happens. Audited as `confirmed`. False when the session does not
   * exist (or is not `userId`'s).
   */
  async confirm (sessionId: string, options: ConfirmOptions): Promise<boolean> {
    if (options === null || typeof options !== 'object') throw new errors.INVALID_ARGUMENT('confirm options must be an object')
    const owner = ownerArgument(options, false)
    if (typeof options.method !== 'string' || !CONFIRM_METHOD.test(options.method)) {
      throw new errors.INVALID_ARGUMENT(`method must be 1 to ${MAX_CONFIRM_METHOD_LENGTH} characters of A-Z a-z 0-9 _ . : -`)
    }
    if (!isSessionId(sessionId)) return false
    const ipAddress = storedIpAddress(options.ipAddress)
    const result = await this.store.confirm({
      sessionId,
      userId: owner,
      now: this.now(),
      ipAddress,
      userAgent: storedUserAgent(options.userAgent),
      deviceFingerprint: clip(options.deviceFingerprint, MAX_FINGERPRINT_LENGTH),
      method: options.method,
      auditData: JSON.stringify({ method: options.method, ip: ipAddress })
    })
    this.emitEvents(result.events)
    return result.ok
  }

  /** Names a session of `userId` (plain text, at most 64 characters; null removes the name). False when there is no such session. */
  async rename (sessionId: string, options: { userId: string, name: string | null }): Promise<boolean> {
    if (options === null || typeof options !== 'object') throw new errors.INVALID_ARGUMENT('rename options must be an object')
    const owner = ownerArgument(options, true)
    const name = validDeviceName(options.name)
    if (name === undefined) throw new errors.INVALID_ARGUMENT('name must be null or 1 to 64 characters of plain text (no control characters, < or >)')
    if (!isSessionId(sessionId)) return false
    const result = await this.store.rename(sessionId, owner, name, this.now(), JSON.stringify({ fields: ['name'] }))
    this.emitEvents(result.events)
    return result.ok
  }

  /**
   * "This wasn't me": ends a session of `userId` (and with `endOthers`, every other session of the user but
   * `except`), audited `unrecognized` and emitted as `'security'` events. Returns how many sessions were ended
   * (0 when `sessionId` is not a live session of the user).
   */
  async reportUnrecognized (sessionId: string, options: { userId: string, endOthers?: boolean, except?: string }): Promise<number> {
    if (options === null || typeof options !== 'object') throw new errors.INVALID_ARGUMENT('reportUnrecognized options must be an object')
    const owner = ownerArgument(options, true)
    if (options.except !== undefined && !isSessionId(options.except)) throw new errors.INVALID_ARGUMENT('except must be a session id')
    if (!isSessionId(sessionId)) return 0
    const result = await this.store.reportUnrecognized(sessionId, owner, this.now(), options.endOthers === true,
      options.except ?? null, JSON.stringify({ reason: 'unrecognized', reportedSessionId: sessionId }))
    this.emitEvents(result.events)
    if (this.listenerCount('security') > 0) {
      for (const raw of result.events) if (raw.type === 'unrecognized') this.emit('security', toAuditEvent(raw))
    }
    return result.ended.length
  }

  /** The answer for a token of an ended session: only the holder of its secret learns why, for ENDED_SESSION_MEMORY_MS. */
  private endedLoad (secret: string, tokenHash: string, reason: string, at: number): EndedLoad | null {
    if (tokenHash === '' || !secretMatches(secret, tokenHash) || this.now() - at >= ENDED_SESSION_MEMORY_MS) return null
    return { session: null, ended: { reason: reason as SessionEndReason, at: new Date(at) } }
  }

  private async listStored (userId: string): Promise<StoredSession[]> {
    validUserId(userId)
    const result = await this.store.list(userId, this.now())
    this.emitEvents(result.events)
    return result.sessions
  }

  private deadline (stored: StoredSession): number {
    return sessionDeadline(stored, this.idleTimeoutMs)
  }

  /**
   * Emits to each listener in isolation: a listener that throws (or rejects) is logged once with the event's name
   * and changes nothing else: the other listeners still run and the operation that emitted goes on.
   */
  override emit (event: string | symbol, ...args: unknown[]): boolean {
    const listeners = this.rawListeners(event)
    if (listeners.length === 0) {
      // EventEmitter throws an 'error' event nobody listens to: here it is only logged.
      if (event === 'error') this.reportListenerError(event, args[0], 'no listener')
      return false
    }
    for (const listener of listeners) {
      try {
        const returned: unknown = (listener as (...values: unknown[]) => unknown).apply(this, args)
        if (returned instanceof Promise) returned.catch((error: unknown) => this.reportListenerError(event, error, listener.name))
      } catch (error) {
        this.reportListenerError(event, error, listener.name)
      }
    }
    return true
  }

  private reportListenerError (event: string | symbol, error: unknown, listener: string): void {
    logQuietly(this.logger, 'error', { err: error, event: String(event), listener: listener === '' ? '(anonymous)' : listener },
      `fastify-distributed-session: a listener of the '${String(event)}' event threw; the operation went on`)
  }

  /** A clean-up a request does not depend on: its failure is logged (and emitted as 'storeError'), never thrown. */
  private async bestEffort (operation: string, sessionId: string, run: () => Promise<{ events: RawAuditEvent[] }>): Promise<void> {
    try {
      this.emitEvents((await run()).events)
    } catch (error) {
      logQuietly(this.logger, 'warn', { err: error, operation, sessionId }, 'fastify-distributed-session: a best-effort clean-up failed; the request went on')
      this.emit('storeError', error)
    }
  }

  /**
   * A fresh Session (the caller may change it); `lastActivity` overrides the record's. The record is only read:
   * with `isShared` (a `loadNow` answer, which a cache hands to every request) the metadata is copied, so a handler
   * that changes its session's metadata cannot change what the next request reads.
   */
  private toSession (stored: StoredSession, lastActivity = stored.lastActivity, isShared = false): Session {
    return {
      id: stored.id,
      userId: stored.userId,
      createdAt: new Date(stored.createdAt),
      lastActivity: new Date(lastActivity),
      expiresAt: new Date(sessionDeadline({ lastActivity, absoluteDeadline: stored.absoluteDeadline, idleTimeoutMs: stored.idleTimeoutMs }, this.idleTimeoutMs)),
      absoluteDeadline: new Date(stored.absoluteDeadline),
      idleTimeoutMs: stored.idleTimeoutMs ?? this.idleTimeoutMs,
      revision: stored.revision,
      ipAddress: stored.ipAddress,
      userAgent: stored.userAgent,
      deviceFingerprint: stored.deviceFingerprint,
      metadata: (isShared ? copyMetadata(stored.metadata) : stored.metadata) as SessionMetadata & Record<string, unknown>,
      authenticatedAt: new Date(stored.authenticatedAt ?? stored.createdAt),
      name: stored.name ?? null
    }
  }

  private emitEvents (events: RawAuditEvent[]): void {
    if (events.length === 0) return
    for (const raw of events) {
      if (raw.type === 'corrupt') {
        logQuietly(this.logger, 'warn', { userId: raw.userId, sessionId: raw.sessionId, data: raw.data }, 'fastify-distributed-session: damaged data in the store was removed or repaired')
      }
    }
    const wantsAudit = this.listenerCount('audit') > 0
    const wantsSecurity = this.listenerCount('security') > 0
    if (!wantsAudit && !wantsSecurity) return
    for (const raw of events) {
      const event = toAuditEvent(raw)
      if (wantsAudit) this.emit('audit', event)
      if (wantsSecurity && event.type === 'security') this.emit('security', event)
    }
  }
}

function toAuditEvent (raw: RawAuditEvent): AuditEvent {
  let data: Record<string, unknown>
  try {
    data = JSON.parse(raw.data) as Record<string, unknown>
  } catch {
    data = {}
  }
  return { type: raw.type, timestamp: new Date(raw.timestamp), userId: raw.userId, sessionId: raw.sessionId, data }
}
