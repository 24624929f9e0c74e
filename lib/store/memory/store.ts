import { allConcurrencyFlags, FLAG_RAPID_CREATION } from '../../security/concurrency'
import { ENDED_SESSION_MEMORY_MS, endReasonOf, MAX_KNOWN_DEVICES } from '../../security/stepup'
import { randomId, SESSION_ID_LENGTH } from '../../core/token'
import { metadataBytes } from '../../core/metadata'
import type {
  AuditEventType, AuditPage, CleanupResult, ConfirmInput, CreateInput, CreateResult, EndResult, LoadResult, RawAuditEvent,
  RemoveResult, Store,
  StoreConfig, StoredSession, TouchResult, UpdateInput, UpdateResult
} from '../types'
import { DEFAULT_AUDIT_MAX_EVENTS_PER_USER, sessionDeadline } from '../types'

/** A session as kept in process: metadata as key -> JSON, as the Redis store keeps it. */
interface Entry extends Omit<StoredSession, 'metadata'> {
  metadata: Map<string, string>
  /** `metadata` parsed, for `loadNow` answers (read only, shared by them); kept while `metadata` is that same map. */
  shared?: { of: Map<string, string>, parsed: Record<string, unknown> }
}

/** What is kept of an ended session : the Redis store's tombstone. */
interface Tombstone {
  reason: string
  at: number
  tokenHash: string
  until: number
}

const SWEEP_INTERVAL_MS = 60_000

/**
 * The store contract in process: for development, the demo and single-process apps. Each method runs
 * synchronously to completion, which is what makes it atomic. Expired sessions are removed when a
 * user's sessions are read, on a sweep at most once a minute (driven by writes), and by cleanup().
 */
export class MemoryStore implements Store {
  private config: StoreConfig | null = null
  private readonly sessions = new Map<string, Entry>()
  private readonly users = new Map<string, Set<string>>()
  private readonly audits = new Map<string, RawAuditEvent[]>()
  /** Per user: the newest timestamp the per-user cap dropped. */
  private readonly auditDrops = new Map<string, number>()
  /** Ended sessions, sessionId -> tombstone, dropped by the sweep after ENDED_SESSION_MEMORY_MS. */
  private readonly tombstones = new Map<string, Tombstone>()
  /** Known devices, userId -> device key -> last seen. */
  private readonly devices = new Map<string, Map<string, number>>()
  private deviceWindowMs = Infinity
  private lastSweep = -Infinity

  configure (config: StoreConfig): void {
    this.config = config
  }

  /** Number of sessions held, expired ones included until they are swept. */
  get size (): number {
    return this.sessions.size
  }

  async create (input: CreateInput): Promise<CreateResult> {
    const events: RawAuditEvent[] = []
    this.maybeSweep(input.now, events)
    let live = this.liveSessions(input.userId, input.now, events)
    // The device's previous session, when live, is not counted against the limit and ends in this same step.
    const previous = input.replace === undefined ? undefined : this.sessions.get(input.replace.sessionId)
    const replaced = previous !== undefined && !this.isExpired(previous, input.now) ? previous : undefined
    const counted = replaced !== undefined && replaced.userId === input.userId ? live.length - 1 : live.length
    if (counted >= input.maxSessions && input.policy === 'deny') return { ok: false, reason: 'limit', events }
    if (replaced !== undefined && input.replace !== undefined) {
      this.remove(replaced, 'invalidated', input.replace.auditData, input.now, events)
      if (replaced.userId === input.userId) live = live.filter((entry) => entry !== replaced)
      else this.applyFlags(this.liveSessions(replaced.userId, input.now, events))
    }
    const evicted: string[] = []
    if (live.length >= input.maxSessions) {
      live.sort((a, b) => a.lastActivity - b.lastActivity)
      for (const entry of live.splice(0, live.length - input.maxSessions + 1)) {
        this.remove(entry, 'evicted', reason('limit'), input.now, events)
        evicted.push(entry.id)
      }
    }
    const entry: Entry = {
      id: randomId(SESSION_ID_LENGTH),
      userId: input.userId,
      tokenHash: input.tokenHash,
      createdAt: input.now,
      lastActivity: input.now,
      absoluteDeadline: input.absoluteDeadline,
      ipAddress: input.ipAddress,
      userAgent: input.userAgent,
      deviceFingerprint: input.deviceFingerprint,
      metadata: new Map(Object.entries(input.metadata)),
      concurrencyFlags: 0,
      revision: 0,
      shared: undefined,
      ...(input.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: input.idleTimeoutMs })
    }
    this.sessions.set(entry.id, entry)
    for (const other of live) delete other.acknowledgedFlags // a new session is something new
    let index = this.users.get(input.userId)
    if (index === undefined) {
      index = new Set()
      this.users.set(input.userId, index)
    }
    index.add(entry.id)
    live.push(entry)
    this.applyFlags(live)
    this.audit(input.userId, entry.id, 'created', input.auditData, input.now, events)
    const device = input.device
    const isNewDevice = device !== undefined && this.rememberDevice(input.userId, device.key, entry.id, input.now, device.windowMs, device.auditData, events)
    return { ok: true, session: snapshot(entry), evicted, events, replaced: replaced !== undefined, isNewDevice }
  }

  async load (sessionId: string): Promise<LoadResult> {
    return this.read(sessionId, false)
  }

  /** As `load`, with the entry's metadata parsed once and shared by every answer (the manager copies it). */
  loadNow (sessionId: string): LoadResult {
    return this.read(sessionId, true)
  }

  private read (sessionId: string, isShared: boolean): LoadResult {
    const entry = this.sessions.get(sessionId)
    if (entry === undefined) {
      const tombstone = this.tombstones.get(sessionId)
      return tombstone === undefined ? null : { ended: { reason: tombstone.reason, at: tombstone.at }, tokenHash: tombstone.tokenHash }
    }
    if (!isShared) return snapshot(entry)
    if (entry.shared?.of !== entry.metadata) entry.shared = { of: entry.metadata, parsed: parseMetadata(entry.metadata) }
    return snapshot(entry, entry.shared.parsed)
  }

  async touch (sessionId: string, now: number, touchIntervalMs: number, auditData: string | null): Promise<TouchResult> {
    const events: RawAuditEvent[] = []
    const entry = this.liveEntry(sessionId, '', now, events)
    if (entry === undefined) return { status: 'gone', concurrencyFlags: 0, events }
    if (now - entry.lastActivity < touchIntervalMs) return { status: 'fresh', concurrencyFlags: entry.concurrencyFlags, events }
    entry.lastActivity = now
    this.applyFlags(this.liveSessions(entry.userId, now, events))
    if (auditData !== null) this.audit(entry.userId, entry.id, 'activity', auditData, now, events)
    return { status: 'touched', concurrencyFlags: entry.concurrencyFlags, events }
  }

  async update (input: UpdateInput): Promise<UpdateResult> {
    const events: RawAuditEvent[] = []
    const entry = this.liveEntry(input.sessionId, input.userId ?? '', input.now, events)
    if (entry === undefined) return { status: 'gone', events }
    if (input.ifRevision !== undefined && entry.revision !== input.ifRevision) return { status: 'conflict', events }
    const merged = new Map(entry.metadata)
    for (const [key, value] of Object.entries(input.metadata)) {
      if (value === null) merged.delete(key)
      else merged.set(key, value)
    }
    if (metadataBytes(merged) > input.maxMetadataBytes) return { status: 'too_large', events }
    if (merged.size > input.maxMetadataKeys) return { status: 'too_many_keys', events }
    entry.metadata = merged
    entry.revision++
    let changed = false
    if (input.ipAddress !== undefined) { entry.ipAddress = input.ipAddress; changed = true }
    if (input.userAgent !== undefined) { entry.userAgent = input.userAgent; changed = true }
    if (input.deviceFingerprint !== undefined) entry.deviceFingerprint = input.deviceFingerprint
    if (changed) {
      const live = this.liveSessions(entry.userId, input.now, events)
      for (const other of live) delete other.acknowledgedFlags // a new IP or user agent is something new
      this.applyFlags(live)
    }
    this.audit(entry.userId, entry.id, 'updated', input.auditData, input.now, events)
    return { status: 'ok', revision: entry.revision, events }
  }

  async invalidate (sessionId: string, now: number, type: 'invalidated' | 'expired', auditData: string, userId?: string): Promise<RemoveResult> {
    const events: RawAuditEvent[] = []
    const entry = this.sessions.get(sessionId)
    if (entry === undefined || (userId !== undefined && entry.userId !== userId)) return { count: 0, events }
    if (type === 'expired' && !this.isExpired(entry, now)) return { count: 0, events }
    this.remove(entry, type, auditData, now, events)
    this.applyFlags(this.liveSessions(entry.userId, now, events))
    return { count: 1, events }
  }

  async invalidateAll (userId: string, now: number, exceptSessionId: string | null, auditData: string): Promise<RemoveResult> {
    const events: RawAuditEvent[] = []
    const kept: Entry[] = []
    let count = 0
    for (const entry of this.liveSessions(userId, now, events)) {
      if (entry.id === exceptSessionId) {
        kept.push(entry)
      } else {
        this.remove(entry, 'invalidated', auditData, now, events)
        count++
      }
    }
    this.applyFlags(kept)
    this.audit(userId, exceptSessionId ?? '', 'all_user_sessions_invalidated', auditData, now, events)
    return { count, events }
  }

  async list (userId: string, now: number): Promise<{ sessions: StoredSession[], events: RawAuditEvent[] }> {
    const events: RawAuditEvent[] = []
    const live = this.liveSessions(userId, now, events)
    this.applyFlags(live)
    live.sort((a, b) => b.lastActivity - a.lastActivity)
    return { sessions: live.map((entry) => snapshot(entry)), events }
  }

  async rotate (sessionId: string, oldHash: string, newHash: string, now: number, auditData: string): Promise<{ ok: boolean, events: RawAuditEvent[] }> {
    const events: RawAuditEvent[] = []
    const entry = this.sessions.get(sessionId)
    if (entry === undefined || entry.tokenHash !== oldHash || this.isExpired(entry, now)) return { ok: false, events }
    entry.previousTokenHash = entry.tokenHash
    entry.previousTokenUntil = now + ENDED_SESSION_MEMORY_MS
    entry.tokenHash = newHash
    this.audit(entry.userId, entry.id, 'rotated', auditData, now, events)
    return { ok: true, events }
  }

  async discard (): Promise<RemoveResult> {
    // Nothing malformed can be stored in process.
    return { count: 0, events: [] }
  }

  async recordEvent (event: RawAuditEvent): Promise<void> {
    this.audit(event.userId, event.sessionId, event.type, event.data, event.timestamp, [])
  }

  async auditLog (userId: string, options: { since: number, limit: number, now: number }): Promise<AuditPage> {
    const retention = this.settings.auditRetentionMs
    const floor = Math.max(options.since, options.now - retention)
    const log = this.audits.get(userId) ?? []
    const events: RawAuditEvent[] = []
    for (let n = log.length - 1; n >= 0 && events.length < options.limit; n--) {
      const event = log[n] as RawAuditEvent
      if (event.timestamp < floor) break
      events.push({ ...event })
    }
    const dropped = this.auditDrops.get(userId)
    return { events, droppedAt: dropped !== undefined && dropped >= floor ? dropped : null }
  }

  async cleanup (now: number, _batchSize: number, onEvents: (events: RawAuditEvent[]) => void): Promise<CleanupResult> {
    const events: RawAuditEvent[] = []
    const expired = this.sweep(now, events)
    onEvents(events)
    return { expired, orphaned: 0 }
  }

  /** Always ready: the memory store lives in this process. */
  async check (): Promise<void> {}

  // ---- step-up (issue 14) ----

  async confirm (input: ConfirmInput): Promise<{ ok: boolean, events: RawAuditEvent[] }> {
    const events: RawAuditEvent[] = []
    const entry = this.liveEntry(input.sessionId, input.userId, input.now, events)
    if (entry === undefined) return { ok: false, events }
    entry.authenticatedAt = input.now
    entry.confirmMethod = input.method
    entry.ipAddress = input.ipAddress
    entry.userAgent = input.userAgent
    entry.deviceFingerprint = input.deviceFingerprint
    this.applyFlags(this.liveSessions(entry.userId, input.now, events))
    if (entry.concurrencyFlags !== 0) entry.acknowledgedFlags = entry.concurrencyFlags
    else delete entry.acknowledgedFlags
    this.audit(entry.userId, entry.id, 'confirmed', input.auditData, input.now, events)
    return { ok: true, events }
  }

  async rename (sessionId: string, userId: string, name: string | null, now: number, auditData: string): Promise<{ ok: boolean, events: RawAuditEvent[] }> {
    const events: RawAuditEvent[] = []
    const entry = this.sessions.get(sessionId)
    if (entry === undefined || entry.userId !== userId || this.isExpired(entry, now)) return { ok: false, events }
    if (name === null) delete entry.name
    else entry.name = name
    this.audit(userId, sessionId, 'updated', auditData, now, events)
    return { ok: true, events }
  }

  async reportUnrecognized (sessionId: string, userId: string, now: number, endOthers: boolean, exceptSessionId: string | null, auditData: string): Promise<EndResult> {
    const events: RawAuditEvent[] = []
    const entry = this.sessions.get(sessionId)
    if (entry === undefined || entry.userId !== userId) return { ended: [], events }
    this.remove(entry, 'unrecognized', auditData, now, events)
    const ended = [sessionId]
    let live = this.liveSessions(userId, now, events)
    if (endOthers) {
      const kept: Entry[] = []
      for (const other of live) {
        if (other.id === exceptSessionId) {
          kept.push(other)
        } else {
          this.remove(other, 'unrecognized', auditData, now, events)
          ended.push(other.id)
        }
      }
      live = kept
    }
    this.applyFlags(live)
    return { ended, events }
  }

  /** Known devices (issue 14): remembers the device now; true when the user has known devices and this is not one. */
  private rememberDevice (userId: string, deviceKey: string, sessionId: string, now: number, windowMs: number, auditData: string, events: RawAuditEvent[]): boolean {
    this.deviceWindowMs = windowMs
    let known = this.devices.get(userId)
    if (known === undefined) {
      known = new Map()
      this.devices.set(userId, known)
    }
    for (const [key, seen] of known) if (seen <= now - windowMs) known.delete(key)
    const isNew = known.size > 0 && !known.has(deviceKey)
    // Re-inserted so the map stays ordered by last use, least recent first.
    known.delete(deviceKey)
    known.set(deviceKey, now)
    while (known.size > MAX_KNOWN_DEVICES) known.delete(known.keys().next().value as string)
    if (isNew) this.audit(userId, sessionId, 'security', auditData, now, events)
    return isNew
  }

  /**
   * Always granted: a memory store holds one process's own sessions, so every instance cleans its own and there is
   * no fleet to keep out.
   */
  async tryLock (_name: string, _owner: string, _ttlMs: number): Promise<boolean> {
    return true
  }

  async release (_name: string, _owner: string): Promise<boolean> {
    return true
  }

  async close (): Promise<void> {
    this.tombstones.clear()
    this.devices.clear()
    this.sessions.clear()
    this.users.clear()
    this.audits.clear()
    this.auditDrops.clear()
  }

  private get settings (): StoreConfig {
    /* c8 ignore next -- the manager configures its store in its constructor */
    if (this.config === null) throw new Error('fastify-distributed-session: store used before configure()')
    return this.config
  }

  /**
   * The live entry of a session owned by `owner` ('' = any owner), or undefined. An entry past its deadline is removed
   * here (audited 'expired', the user's flags recomputed), as the Redis scripts' liveRecord does.
   */
  private liveEntry (sessionId: string, owner: string, now: number, events: RawAuditEvent[]): Entry | undefined {
    const entry = this.sessions.get(sessionId)
    if (entry === undefined || (owner !== '' && entry.userId !== owner)) return undefined
    if (this.isExpired(entry, now)) {
      this.remove(entry, 'expired', reason('timeout'), now, events)
      this.applyFlags(this.liveSessions(entry.userId, now, events))
      return undefined
    }
    return entry
  }

  private isExpired (entry: Entry, now: number): boolean {
    return sessionDeadline(entry, this.settings.idleTimeoutMs) <= now
  }

  /** The user's live sessions; removes the expired ones. */
  private liveSessions (userId: string, now: number, events: RawAuditEvent[]): Entry[] {
    const index = this.users.get(userId)
    if (index === undefined) return []
    const live: Entry[] = []
    for (const id of index) {
      const entry = this.sessions.get(id) as Entry
      if (this.isExpired(entry, now)) this.remove(entry, 'expired', reason('timeout'), now, events)
      else live.push(entry)
    }
    return live
  }

  private applyFlags (live: Entry[]): void {
    const flags = allConcurrencyFlags(live, this.settings.rules)
    // The newest creation among each session's others: the newest overall, or the second newest for the newest itself.
    let newest: Entry | undefined
    let secondNewest: number | undefined
    for (const entry of live) {
      if (newest === undefined || entry.createdAt > newest.createdAt) {
        secondNewest = newest?.createdAt
        newest = entry
      } else if (secondNewest === undefined || entry.createdAt > secondNewest) {
        secondNewest = entry.createdAt
      }
    }
    live.forEach((entry, index) => {
      entry.concurrencyFlags = flags[index] as number
      // The newest other creation goes with the burst bit, so the request path can age it.
      const newestOther = entry === newest ? secondNewest : newest?.createdAt
      if ((entry.concurrencyFlags & FLAG_RAPID_CREATION) !== 0 && newestOther !== undefined) entry.newestOtherCreatedAt = newestOther
      else delete entry.newestOtherCreatedAt
    })
  }

  private remove (entry: Entry, type: AuditEventType, data: string, now: number, events: RawAuditEvent[]): void {
    this.sessions.delete(entry.id)
    // Why it ended; an expired session ended at its deadline, whenever that is noticed.
    const at = type === 'expired' ? Math.min(now, Math.min(entry.lastActivity + this.settings.idleTimeoutMs, entry.absoluteDeadline)) : now
    this.tombstones.set(entry.id, { reason: endReasonOf(type, data), at, tokenHash: entry.tokenHash, until: now + ENDED_SESSION_MEMORY_MS })
    const index = this.users.get(entry.userId)
    if (index !== undefined) {
      index.delete(entry.id)
      if (index.size === 0) this.users.delete(entry.userId)
    }
    this.audit(entry.userId, entry.id, type, data, now, events)
  }

  private audit (userId: string, sessionId: string, type: AuditEventType, data: string, now: number, events: RawAuditEvent[]): void {
    const event: RawAuditEvent = { type, userId, sessionId, timestamp: now, data }
    events.push(event)
    const retention = this.settings.auditRetentionMs
    if (retention <= 0) return
    let log = this.audits.get(userId)
    if (log === undefined) {
      log = []
      this.audits.set(userId, log)
    }
    log.push({ ...event })
    let drop = 0
    while (drop < log.length && (log[drop] as RawAuditEvent).timestamp < now - retention) drop++
    const cap = this.settings.auditMaxEventsPerUser ?? DEFAULT_AUDIT_MAX_EVENTS_PER_USER
    if (log.length - drop > cap) {
      // The cap drops the oldest, as the Redis store does, and remembers the newest time it dropped.
      drop = log.length - cap
      this.auditDrops.set(userId, (log[drop - 1] as RawAuditEvent).timestamp)
    }
    if (drop > 0) log.splice(0, drop)
  }

  private maybeSweep (now: number, events: RawAuditEvent[]): void {
    if (now - this.lastSweep < SWEEP_INTERVAL_MS) return
    this.sweep(now, events)
  }

  private sweep (now: number, events: RawAuditEvent[]): number {
    this.lastSweep = now
    for (const [sessionId, tombstone] of this.tombstones) if (tombstone.until <= now) this.tombstones.delete(sessionId)
    for (const [userId, known] of this.devices) { // Users whose newest device was forgotten
      let newest = -Infinity
      for (const seen of known.values()) newest = Math.max(newest, seen)
      if (newest < now - this.deviceWindowMs) this.devices.delete(userId)
    }
    let expired = 0
    const users = new Set<string>()
    for (const entry of this.sessions.values()) {
      if (this.isExpired(entry, now)) {
        this.remove(entry, 'expired', reason('timeout'), now, events)
        users.add(entry.userId)
        expired++
      }
    }
    for (const userId of users) this.applyFlags(this.liveSessions(userId, now, events))
    const retention = this.settings.auditRetentionMs
    for (const [userId, log] of this.audits) {
      const last = log[log.length - 1]
      if (last === undefined || last.timestamp < now - retention) this.audits.delete(userId)
    }
    for (const [userId, dropped] of this.auditDrops) {
      if (dropped < now - retention) this.auditDrops.delete(userId)
    }
    return expired
  }
}

function reason (text: string): string {
  return JSON.stringify({ reason: text })
}

function parseMetadata (metadata: Map<string, string>): Record<string, unknown> {
  const parsed: Record<string, unknown> = {}
  for (const [key, value] of metadata) parsed[key] = JSON.parse(value)
  return parsed
}

/** A StoredSession of an entry, with its metadata parsed afresh unless given. */
function snapshot (entry: Entry, metadata = parseMetadata(entry.metadata)): StoredSession {
  const hasPrevious = entry.previousTokenHash !== undefined && entry.previousTokenUntil !== undefined
  // The field order of the Redis store's parseRecord: records of both stores have one shape, and no spread.
  return {
    id: entry.id,
    userId: entry.userId,
    tokenHash: entry.tokenHash,
    createdAt: entry.createdAt,
    lastActivity: entry.lastActivity,
    absoluteDeadline: entry.absoluteDeadline,
    ipAddress: entry.ipAddress,
    userAgent: entry.userAgent,
    deviceFingerprint: entry.deviceFingerprint,
    metadata,
    concurrencyFlags: entry.concurrencyFlags,
    revision: entry.revision,
    idleTimeoutMs: entry.idleTimeoutMs,
    authenticatedAt: entry.authenticatedAt,
    confirmMethod: entry.confirmMethod,
    name: entry.name,
    acknowledgedFlags: entry.acknowledgedFlags,
    newestOtherCreatedAt: entry.newestOtherCreatedAt,
    previousTokenHash: hasPrevious ? entry.previousTokenHash : undefined,
    previousTokenUntil: hasPrevious ? entry.previousTokenUntil : undefined
  }
}
