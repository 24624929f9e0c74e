/**
 * The contract every store implements. Stores know nothing of Fastify or of tokens: they receive the
 * SHA-256 of a token secret and never its secret. Every method is one atomic step; times are epoch
 * milliseconds from the manager's clock (`now`), so tests can inject one.
 */

/** A session as a store keeps it. */
export interface StoredSession {
  id: string
  userId: string
  tokenHash: string
  createdAt: number
  lastActivity: number
  /** Absolute deadline (creation + absolute lifetime). */
  absoluteDeadline: number
  ipAddress: string
  userAgent: string
  deviceFingerprint: string
  metadata: Record<string, unknown>
  /** Bit set of concurrency rules that fire for this session (see security/concurrency.ts), kept up to date by the store. */
  concurrencyFlags: number
  /** Moved by one by every update of the session's metadata or attributes (record field `r`; 0 when absent). */
  revision: number
  /** The session's own idle timeout (record field `d`); undefined: the store's `idleTimeoutMs`. */
  idleTimeoutMs?: number | undefined
  // Step-up fields (issue 14): optional, so stores and records without them stay valid. The built-in stores return
  // every field, an absent one as undefined (one object shape on the request path).
  /** Last authentication: the login, moved by a confirmation (record field `t`; absent = createdAt). */
  authenticatedAt?: number | undefined
  /** How the last confirmation was made (record field `k`). */
  confirmMethod?: string | undefined
  /** The name the user gave the device (record field `n`). */
  name?: string | undefined
  /** Concurrency flags the user acknowledged by confirming (record field `z`); cleared when something new happens. */
  acknowledgedFlags?: number | undefined
  /** Newest creation time among the user's other sessions, kept with the burst-of-logins flag (record field `w`). */
  newestOtherCreatedAt?: number | undefined
  /** The token hash this session had before its last rotation, and until when that token reports 'rotated' (fields `p`, `q`). */
  previousTokenHash?: string | undefined
  previousTokenUntil?: number | undefined
}

/**
 * The deadline of a session: the earlier of its idle deadline (its own idle timeout, else the default) and its
 * absolute deadline. The Lua \`deadline()\` in store/redis/scripts.ts applies the same rule.
 */
export function sessionDeadline (session: Pick<StoredSession, 'lastActivity' | 'absoluteDeadline' | 'idleTimeoutMs'>, defaultIdleTimeoutMs: number): number {
  return Math.min(session.lastActivity + (session.idleTimeoutMs ?? defaultIdleTimeoutMs), session.absoluteDeadline)
}

/** What is left of an ended session for a while: why and when it ended (a tombstone under the session key). */
export interface EndedRecord {
  ended: { reason: string, at: number }
  /** Hash of the token secret the session had when it ended: only its holder learns the reason. */
  tokenHash: string
}

/** Thresholds of the concurrent-session rules; the store applies them whenever a user's sessions change. */
export interface ConcurrencyRules {
  maxDistinctIps: number
  maxDistinctUserAgents: number
  rapidCreationWindowMs: number
}

/** Most audit events kept per user unless `audit.maxEventsPerUser` says otherwise. */
export const DEFAULT_AUDIT_MAX_EVENTS_PER_USER = 5000

export interface StoreConfig {
  idleTimeoutMs: number
  /** Audit retention; 0 disables the audit log. */
  auditRetentionMs: number
  /** Most audit events kept per user; the oldest go first (5000 when absent). */
  auditMaxEventsPerUser?: number
  /** Also append every audit event to the shard's feed (Redis: a stream per shard for SIEM consumers). */
  auditFeed?: boolean
  rules: ConcurrencyRules
}

export type AuditEventType =
  | 'created'
  | 'updated'
  | 'invalidated'
  | 'evicted'
  | 'expired'
  | 'corrupt'
  | 'all_user_sessions_invalidated'
  | 'rotated'
  | 'activity'
  | 'security'
  | 'confirmed'
  | 'unrecognized'

/** An audit record as stores write it and return it. `data` is a JSON object string. */
export interface RawAuditEvent {
  type: AuditEventType
  userId: string
  sessionId: string
  timestamp: number
  data: string
}

/** One read of a user's audit timeline. */
export interface AuditPage {
  /** Newest first. */
  events: RawAuditEvent[]
  /**
   * The newest timestamp of an event that the per-user cap dropped inside the queried window (at or after `since`
   * and within the retention), or null when the cap dropped none there.
   */
  droppedAt: number | null
}

export interface CreateInput {
  userId: string
  tokenHash: string
  now: number
  absoluteDeadline: number
  maxSessions: number
  policy: 'evict-oldest' | 'deny'
  ipAddress: string
  userAgent: string
  deviceFingerprint: string
  /** Serialized values, key -> JSON. */
  metadata: Record<string, string>
  auditData: string
  /** The session's own idle timeout; undefined: the store's. */
  idleTimeoutMs?: number
  /**
   * A session to end in the same step (the device's previous session), when it is live; the limit is checked
   * without it and before it is ended.
   */
  replace?: { sessionId: string, auditData: string }
  /**
   * Remember the device the session was created on (known devices, issue 14) in the same step: `key` names the
   * device, `windowMs` how long a device stays known, `auditData` the `security` record written when it is new.
   */
  device?: { key: string, windowMs: number, auditData: string }
  /**
   * Epoch ms after which the create must change nothing (the caller has given up on it): the store answers
   * `{ ok: false, reason: 'late', lateAt }` with its own clock's time instead. A store that applies a create at
   * once may ignore it.
   */
  notAfter?: number
}

export type CreateResult =
  | { ok: true, session: StoredSession, evicted: string[], events: RawAuditEvent[], replaced: boolean, isNewDevice: boolean }
  | { ok: false, reason: 'limit', events: RawAuditEvent[] }
  | { ok: false, reason: 'late', lateAt: number, events: RawAuditEvent[] }

export interface UpdateInput {
  sessionId: string
  now: number
  ipAddress?: string
  userAgent?: string
  deviceFingerprint?: string
  /** key -> JSON value, or null to delete the key (shallow merge). */
  metadata: Record<string, string | null>
  maxMetadataBytes: number
  /** Most keys the merged metadata may hold. */
  maxMetadataKeys: number
  auditData: string
  /** Only when the session's revision is still this one (else `conflict`). */
  ifRevision?: number
  /** Only when the session belongs to this user (else `gone`). */
  userId?: string
}

export type UpdateResult =
  | { status: 'ok', revision: number, events: RawAuditEvent[] }
  | { status: 'gone' | 'too_large' | 'too_many_keys' | 'conflict', events: RawAuditEvent[] }

export interface TouchResult {
  /** `touched`: written now; `fresh`: another writer touched it within the interval; `gone`: no session. */
  status: 'touched' | 'fresh' | 'gone'
  concurrencyFlags: number
  events: RawAuditEvent[]
}

export interface RemoveResult {
  count: number
  events: RawAuditEvent[]
}

export interface CleanupResult {
  expired: number
  orphaned: number
}

/** What `load` found: a session, nothing, an ended session's tombstone, or data that is not a valid session. */
export type LoadResult = StoredSession | null | 'corrupt' | EndedRecord

export interface ConfirmInput {
  sessionId: string
  /** The owner the caller expects ('' = any). */
  userId: string
  now: number
  ipAddress: string
  userAgent: string
  deviceFingerprint: string
  method: string
  auditData: string
}

export interface EndResult {
  /** Public ids of the sessions ended. */
  ended: string[]
  events: RawAuditEvent[]
}

/** Reads served from an in-process cache (`hits`) and from the server (`misses`). */
export interface CacheStats {
  hits: number
  misses: number
}

export interface Store {
  /** Called once by the manager before any other method. */
  configure (config: StoreConfig): void
  create (input: CreateInput): Promise<CreateResult>
  /** Read-only: one command, no write. */
  load (sessionId: string): Promise<LoadResult>
  /**
   * Optional: what `load` would answer, when the store knows it without I/O (an in-process store, a near-cache hit);
   * `undefined` otherwise. The request path tries it first and skips a promise per request. The answer may be
   * shared (a cache hands the same object to every request, metadata included): the manager never changes it and
   * gives each request a copy of its metadata.
   */
  loadNow? (sessionId: string): LoadResult | undefined
  /** Optional: hits and misses of the store's in-process cache since it was created; null without one. */
  cacheStats? (): CacheStats | null
  touch (sessionId: string, now: number, touchIntervalMs: number, auditData: string | null): Promise<TouchResult>
  update (input: UpdateInput): Promise<UpdateResult>
  /** Removes one session; with `userId`, only when it belongs to that user. */
  invalidate (sessionId: string, now: number, type: 'invalidated' | 'expired', auditData: string, userId?: string): Promise<RemoveResult>
  invalidateAll (userId: string, now: number, exceptSessionId: string | null, auditData: string): Promise<RemoveResult>
  list (userId: string, now: number): Promise<{ sessions: StoredSession[], events: RawAuditEvent[] }>
  /**
   * `notAfter`: epoch ms after which the rotation must change nothing (the caller has given up on it); the store
   * then answers `{ ok: false, lateAt }` with its own clock's time. A store that rotates at once may ignore it.
   */
  rotate (sessionId: string, oldHash: string, newHash: string, now: number, auditData: string, notAfter?: number): Promise<{ ok: boolean, events: RawAuditEvent[], lateAt?: number }>
  /** Removes data that failed validation. */
  discard (sessionId: string, now: number): Promise<RemoveResult>
  /** Records an event that belongs to no session operation (security events). */
  recordEvent (event: RawAuditEvent): Promise<void>
  /** The user's events with timestamp >= `since` and within the retention at `now`, newest first, at most `limit`. */
  auditLog (userId: string, options: { since: number, limit: number, now: number }): Promise<AuditPage>
  /** Removes everything that has expired, in bounded batches, handing each batch's audit events to `onEvents`. */
  cleanup (now: number, batchSize: number, onEvents: (events: RawAuditEvent[]) => void): Promise<CleanupResult>
  close (): Promise<void>
  /**
   * Resolves once the store can serve requests (Redis: connected, authenticated, database selected, PING answered);
   * rejects with an Error whose message names the problem. The plugin calls it at registration (`startupCheck`).
   */
  check (): Promise<void>
  // Step-up (issue 14)
  /** Confirms a session: authenticatedAt = now, new IP/device baseline, the user's current flags acknowledged. */
  confirm (input: ConfirmInput): Promise<{ ok: boolean, events: RawAuditEvent[] }>
  /** Names (or, with null, unnames) a session of `userId`. */
  rename (sessionId: string, userId: string, name: string | null, now: number, auditData: string): Promise<{ ok: boolean, events: RawAuditEvent[] }>
  /**
   * Ends a session of `userId` reported as not the user's ('unrecognized'), and with `endOthers` every other
   * session of the user but `exceptSessionId`. Nothing is ended when `sessionId` is not a live session of the user.
   */
  reportUnrecognized (sessionId: string, userId: string, now: number, endOthers: boolean, exceptSessionId: string | null, auditData: string): Promise<EndResult>
  /**
   * The fleet-wide lock named `name` (the cleanup service's claim on an interval): resolves true when `owner` holds
   * it after the call, because it was free and is now taken for `ttlMs`, or because `owner` already held it (its TTL
   * is then left as it was). False while another owner holds it.
   */
  tryLock (name: string, owner: string, ttlMs: number): Promise<boolean>
  /** Frees the lock `name` only while `owner` holds it (compare-and-delete); true when it was freed. */
  release (name: string, owner: string): Promise<boolean>
}
