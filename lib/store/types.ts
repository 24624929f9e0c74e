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

/** What `load` found: a session, nothing, or data that is not a valid session. */
export type LoadResult = StoredSession | null | 'corrupt'

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
  /**
   * Resolves once the store can serve requests (Redis: connected, authenticated, database selected, PING answered);
   * rejects with an Error whose message names the problem. The plugin calls it at registration (`startupCheck`).
   */
  check (): Promise<void>
}
