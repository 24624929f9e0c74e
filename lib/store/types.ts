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
  /** Bit set of concurrency rules that fire for this session (see security.ts), kept up to date by the store. */
  concurrencyFlags: number
  // stepup (issue 14): optional, so stores and records without them stay valid.
  /** Last authentication: the login, moved by a confirmation (record field `t`; absent = createdAt). */
  authenticatedAt?: number
  /** How the last confirmation was made (record field `k`). */
  confirmMethod?: string
  /** The name the user gave the device (record field `n`). */
  name?: string
  /** Concurrency flags the user acknowledged by confirming (record field `z`); cleared when something new happens. */
  acknowledgedFlags?: number
  /** Newest creation time among the user's other sessions, kept with the burst-of-logins flag (record field `w`). */
  newestOtherCreatedAt?: number
  /** The token hash this session had before its last rotation, and until when that token reports 'rotated' (fields `p`, `q`). */
  previousTokenHash?: string
  previousTokenUntil?: number
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

export interface StoreConfig {
  idleTimeoutMs: number
  /** Audit retention; 0 disables the audit log. */
  auditRetentionMs: number
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
}

export type CreateResult =
  | { ok: true, session: StoredSession, evicted: string[], events: RawAuditEvent[] }
  | { ok: false, reason: 'limit', events: RawAuditEvent[] }

export interface UpdateInput {
  sessionId: string
  now: number
  ipAddress?: string
  userAgent?: string
  deviceFingerprint?: string
  /** key -> JSON value, or null to delete the key (shallow merge). */
  metadata: Record<string, string | null>
  maxMetadataBytes: number
  auditData: string
}

export type UpdateResult =
  | { status: 'ok', events: RawAuditEvent[] }
  | { status: 'gone' | 'too_large', events: RawAuditEvent[] }

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

export interface Store {
  /** Called once by the manager before any other method. */
  configure (config: StoreConfig): void
  create (input: CreateInput): Promise<CreateResult>
  /** Read-only: one command, no write. */
  load (sessionId: string): Promise<LoadResult>
  touch (sessionId: string, now: number, touchIntervalMs: number, auditData: string | null): Promise<TouchResult>
  update (input: UpdateInput): Promise<UpdateResult>
  /** Removes one session; with `userId`, only when it belongs to that user. */
  invalidate (sessionId: string, now: number, type: 'invalidated' | 'expired', auditData: string, userId?: string): Promise<RemoveResult>
  invalidateAll (userId: string, now: number, exceptSessionId: string | null, auditData: string): Promise<RemoveResult>
  list (userId: string, now: number): Promise<{ sessions: StoredSession[], events: RawAuditEvent[] }>
  rotate (sessionId: string, oldHash: string, newHash: string, now: number, auditData: string): Promise<{ ok: boolean, events: RawAuditEvent[] }>
  /** Removes data that failed validation. */
  discard (sessionId: string, now: number): Promise<RemoveResult>
  /** Records an event that belongs to no session operation (security events). */
  recordEvent (event: RawAuditEvent): Promise<void>
  auditLog (userId: string, options: { since: number, limit: number }): Promise<RawAuditEvent[]>
  /** Removes everything that has expired, in bounded batches, handing each batch's audit events to `onEvents`. */
  cleanup (now: number, batchSize: number, onEvents: (events: RawAuditEvent[]) => void): Promise<CleanupResult>
  close (): Promise<void>
  // stepup (issue 14)
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
   * Remembers that the user used a device now; `isNew` when the user has remembered devices and this is not one
   * of them (within `windowMs`). At most MAX_KNOWN_DEVICES per user, forgotten after `windowMs` without use.
   */
  noteDevice (userId: string, deviceKey: string, sessionId: string, now: number, windowMs: number, auditData: string): Promise<{ isNew: boolean, events: RawAuditEvent[] }>
}
