import { Redis, type Cluster } from 'ioredis'
import { DEFAULT_KEY_PREFIX, lockKey, sessionIdOfKey, sessionKey, shardKey } from './keys'
import { rateLimited, warningLogger, type SessionLogger } from '../../core/logger'
import { FORBIDDEN_KEYS, isWellFormed } from '../../core/metadata'
import { randomId, SESSION_ID_LENGTH, shardTag, TAG_LENGTH, TOKEN_HASH_LENGTH } from '../../core/token'
import { errors } from '../../core/errors'
import { shown } from '../../core/bounds'
import { isCluster, type RedisClient } from './client'
import { NearCache, type NearCacheOptions } from './near-cache'
import { packUserAgent, unpackUserAgent } from './user-agent'
import { WriteBatch } from './write-batch'
import * as scripts from './scripts'
import type {
  AuditEventType, AuditPage, CacheStats, CleanupResult, ConfirmInput, CreateInput, CreateResult, EndResult, EndedRecord, LoadResult,
  RawAuditEvent, RemoveResult, Store, StoreConfig, StoredSession, TouchResult, UpdateInput, UpdateResult
} from '../types'
import { DEFAULT_AUDIT_MAX_EVENTS_PER_USER } from '../types'

export interface RedisStoreOptions {
  /**
   * An ioredis-compatible `Redis` or `Cluster` you created (never closed by the store): any ioredis 5 or 6 copy,
   * iovalkey, @fastify/redis's `app.redis`; or a URL (the store owns that client).
   */
  client: RedisClient | string
  /**
   * Prefix of every key, after any ioredis `keyPrefix`.
   * @default 'sess:'
   */
  prefix?: string
  /**
   * Keep session records in process, invalidated by Redis (CLIENT TRACKING) when they change anywhere: repeat
   * requests cost no round trip. Standalone, Sentinel or Cluster (reading from masters). Off by default; see
   * docs/benchmarks.md.
   */
  nearCache?: boolean | NearCacheOptions
  /**
   * Send the commands of one event-loop turn to a Redis node in one socket write (see docs/design.md, "One write per
   * turn"): under load, far fewer system calls in this process and in Redis. `false` sends each command as it comes,
   * as a plain ioredis call does. @default true
   */
  batchWrites?: boolean
  /**
   * Where the store reports the connection errors of a client it created from a URL (at most one line per 10 s,
   * with the number left out). @default process warnings
   */
  logger?: SessionLogger
}

/**
 * The client as the store's code sees it: ioredis's own classes describe the commands it and the cleanup service
 * call, which every client accepted by `RedisClient` has (ioredis 5/6, iovalkey); nothing relies on the class itself.
 */
type Client = Redis | Cluster
type Reply = [string, unknown, unknown[]]
type ScriptCall = (key: string, ...args: string[]) => Promise<Reply>
type ScriptName = 'create' | 'touch' | 'update' | 'invalidate' | 'invalidateAll' | 'list' | 'rotate' | 'discard' | 'record' | 'auditQuery' | 'cleanup'
  | 'confirm' | 'rename' | 'reportUnrecognized'

const COMMANDS: Record<ScriptName, string> = {
  create: scripts.CREATE,
  touch: scripts.TOUCH,
  update: scripts.UPDATE,
  invalidate: scripts.INVALIDATE,
  invalidateAll: scripts.INVALIDATE_ALL,
  list: scripts.LIST,
  rotate: scripts.ROTATE,
  discard: scripts.DISCARD,
  record: scripts.RECORD,
  auditQuery: scripts.AUDIT_QUERY,
  cleanup: scripts.CLEANUP,
  confirm: scripts.CONFIRM,
  rename: scripts.RENAME,
  reportUnrecognized: scripts.REPORT_UNRECOGNIZED
}
/** Name under which the scripts are defined on the client (ioredis `defineCommand`). */
const COMMAND_PREFIX = 'fdsess_'

const TAG_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
/** Every shard tag: 4096 of them, spread over the cluster's slots. */
export const ALL_TAGS: readonly string[] = Array.from(TAG_ALPHABET, (a) => Array.from(TAG_ALPHABET, (b) => a + b)).flat()

const CLEANUP_CONCURRENCY = 32
const UNCHANGED = '\0'

/**
 * Sessions in Redis or Redis Cluster. Every method is one Lua script on one hash slot: the slot of the session id's
 * first characters, or for an operation addressed by user id, of the user's shard tag (`shardTag`, a hash of the id).
 */
export class RedisStore implements Store {
  readonly client: Client
  readonly prefix: string
  private readonly ownsClient: boolean
  private config: StoreConfig | null = null
  /** The near cache, when enabled. */
  readonly nearCache: NearCache | null
  /** Sends the commands of one event-loop turn to a node in one write; null with `batchWrites: false`. */
  private readonly batch: WriteBatch | null

  constructor (options: RedisStoreOptions) {
    // Checked before a client is created from a URL: a refused option leaves no connection behind.
    if (options.batchWrites !== undefined && typeof options.batchWrites !== 'boolean') {
      throw new errors.INVALID_OPTION(`"batchWrites": expected true or false, got ${shown(options.batchWrites)}`)
    }
    const logger = options.logger ?? warningLogger
    if (typeof options.client === 'string') {
      this.client = new Redis(options.client, { maxRetriesPerRequest: 1 })
      // Without a listener ioredis prints "Unhandled error event" with a stack on every failed retry.
      this.client.on('error', rateLimited(logger, 'fastify-distributed-session: Redis connection error'))
      this.ownsClient = true
    } else {
      this.client = options.client as unknown as Client
      this.ownsClient = false
    }
    this.prefix = options.prefix ?? DEFAULT_KEY_PREFIX
    this.batch = options.batchWrites === false
      ? null
      : new WriteBatch(this.client as unknown as ConstructorParameters<typeof WriteBatch>[0], this.client.options.keyPrefix ?? '')
    const near = options.nearCache ?? false
    if (near !== false && isCluster(this.client)) {
      const scaleReads = (this.client as Cluster).options.scaleReads ?? 'master'
      if (scaleReads !== 'master') {
        // A replica's copy lags: a record read there after its revocation was reported would be cached.
        throw new errors.INVALID_OPTION(`"nearCache": needs a Cluster client that reads from masters (scaleReads: 'master'), got scaleReads ${typeof scaleReads === 'string' ? `'${scaleReads}'` : 'as a function'}`)
      }
    }
    this.nearCache = near === false
      ? null
      : new NearCache(this.client, sessionIdOfKey, `${this.client.options.keyPrefix ?? ''}${this.prefix}`, near === true ? {} : near,
        rateLimited(logger, 'fastify-distributed-session: the near cache is off, it could not set up Redis tracking (CLIENT ' +
          'TRACKING, and CLUSTER NODES on a Cluster); sessions are read from Redis until it can, and it tries again every second',
        NEAR_CACHE_REPORT_EVERY_MS))
    for (const [name, lua] of Object.entries(COMMANDS)) {
      this.client.defineCommand(COMMAND_PREFIX + name, { numberOfKeys: 1, lua })
    }
    this.client.defineCommand(COMMAND_PREFIX + 'releaseLock', { numberOfKeys: 1, lua: scripts.RELEASE_LOCK })
  }

  configure (config: StoreConfig): void {
    this.config = config
  }

  async create (input: CreateInput): Promise<CreateResult> {
    const replace = input.replace
    const tag = shardTag(input.userId)
    const sessionId = tag + randomId(SESSION_ID_LENGTH - TAG_LENGTH)
    // The previous session ends inside CREATE when it lives on the same shard (one slot, one atomic step).
    const isReplacedHere = replace !== undefined && tagOf(replace.sessionId) === tag
    const reply = await this.call('create', tag, input.now, sessionId, input.userId, input.tokenHash,
      String(input.absoluteDeadline), String(input.maxSessions), input.policy, input.ipAddress, packUserAgent(input.userAgent),
      input.deviceFingerprint, input.auditData, input.idleTimeoutMs === undefined ? '' : String(input.idleTimeoutMs),
      isReplacedHere ? replace.sessionId : '', replace?.auditData ?? '', JSON.stringify(input.metadata),
      input.device?.key ?? '', String(input.device?.windowMs ?? 0), input.device?.auditData ?? '',
      input.notAfter === undefined ? '' : String(input.notAfter))
    const events = this.eventsOf(reply, ...(isReplacedHere ? [replace.sessionId] : []))
    if (reply[0] === 'LIMIT') return { ok: false, reason: 'limit', events }
    if (reply[0] === 'LATE') return { ok: false, reason: 'late', lateAt: Number(reply[1]), events }
    const [evicted, record, replacedFlag, newDeviceFlag] = reply[1] as [string[], string, string, string]
    const session = parseRecord(sessionId, record)
    /* c8 ignore next -- the script returns the record it has just written */
    if (session === null || session === 'corrupt' || 'ended' in session) throw new Error('fastify-distributed-session: create returned no session')
    let replaced = replacedFlag === '1'
    if (replace !== undefined && !isReplacedHere) {
      // Another shard (the previous session is another user's): it ends in a second step, after the login
      // succeeded, so a refused login never signs the device out.
      const removed = await this.invalidate(replace.sessionId, input.now, 'invalidated', replace.auditData)
      for (const event of removed.events) events.push(event)
      replaced = removed.count === 1
    }
    return { ok: true, session, evicted, events, replaced, isNewDevice: newDeviceFlag === '1' }
  }

  /** A near-cache hit, parsed once per cached record; undefined without a near cache or on a miss. */
  loadNow (sessionId: string): LoadResult | undefined {
    const entry = this.nearCache?.peek(sessionId)
    if (entry === undefined) return undefined
    if (entry.parsed === undefined) entry.parsed = parseRecord(sessionId, entry.record)
    // The same object for every hit: a loadNow answer is read only, and the manager copies its metadata.
    return entry.parsed as LoadResult
  }

  cacheStats (): CacheStats | null {
    return this.nearCache === null ? null : { hits: this.nearCache.hits, misses: this.nearCache.misses }
  }

  load (sessionId: string): Promise<LoadResult> {
    // The request path: one GET, no script, no extra promise layer.
    const key = sessionKey(this.prefix, sessionId)
    if (this.nearCache === null) this.batch?.hold(key)
    return (this.nearCache === null ? this.client.get(key) : this.nearCache.get(sessionId, key)).then(
      (record) => parseRecord(sessionId, record),
      (error: unknown) => {
        if (error instanceof Error && error.message.startsWith('WRONGTYPE')) return 'corrupt'
        throw error
      })
  }

  async touch (sessionId: string, now: number, touchIntervalMs: number, auditData: string | null): Promise<TouchResult> {
    const reply = await this.call('touch', tagOf(sessionId), now, sessionId, String(touchIntervalMs), auditData ?? '')
    const status = reply[0] === 'OK' ? 'touched' : reply[0] === 'FRESH' ? 'fresh' : 'gone'
    return { status, concurrencyFlags: Number(reply[1]) || 0, events: this.eventsOf(reply, sessionId) }
  }

  async update (input: UpdateInput): Promise<UpdateResult> {
    // One JSON argument: cjson reads it in the script; a deleted key is `false`.
    const patch: Record<string, string | false> = {}
    for (const key of Object.keys(input.metadata)) patch[key] = input.metadata[key] ?? false
    const reply = await this.call('update', tagOf(input.sessionId), input.now, input.sessionId,
      String(input.maxMetadataBytes), input.ipAddress ?? UNCHANGED, input.userAgent === undefined ? UNCHANGED : packUserAgent(input.userAgent),
      input.deviceFingerprint ?? UNCHANGED, input.auditData, input.ifRevision === undefined ? '' : String(input.ifRevision),
      input.userId ?? '', String(input.maxMetadataKeys), JSON.stringify(patch))
    const events = this.eventsOf(reply, input.sessionId)
    if (reply[0] === 'OK') return { status: 'ok', revision: Number(reply[1]), events }
    const status = reply[0] === 'TOO_LARGE' ? 'too_large' : reply[0] === 'TOO_MANY_KEYS' ? 'too_many_keys' : reply[0] === 'CONFLICT' ? 'conflict' : 'gone'
    return { status, events }
  }

  async invalidate (sessionId: string, now: number, type: 'invalidated' | 'expired', auditData: string, userId?: string): Promise<RemoveResult> {
    const reply = await this.call('invalidate', tagOf(sessionId), now, sessionId, type, auditData, userId ?? '')
    return { count: reply[0] === 'OK' ? 1 : 0, events: this.eventsOf(reply, sessionId) }
  }

  async invalidateAll (userId: string, now: number, exceptSessionId: string | null, auditData: string): Promise<RemoveResult> {
    const reply = await this.call('invalidateAll', shardTag(userId), now, userId, exceptSessionId ?? '', auditData)
    return { count: Number(reply[1]), events: this.eventsOf(reply) }
  }

  async list (userId: string, now: number): Promise<{ sessions: StoredSession[], events: RawAuditEvent[] }> {
    const reply = await this.call('list', shardTag(userId), now, userId)
    const flat = reply[1] as string[]
    const sessions: StoredSession[] = []
    for (let n = 0; n < flat.length; n += 2) {
      const session = parseRecord(flat[n] as string, flat[n + 1] as string)
      if (session !== null && session !== 'corrupt' && !('ended' in session)) sessions.push(session)
    }
    return { sessions, events: this.eventsOf(reply) }
  }

  async rotate (sessionId: string, oldHash: string, newHash: string, now: number, auditData: string, notAfter?: number): Promise<{ ok: boolean, events: RawAuditEvent[], lateAt?: number }> {
    const reply = await this.call('rotate', tagOf(sessionId), now, sessionId, oldHash, newHash, auditData, notAfter === undefined ? '' : String(notAfter))
    const events = this.eventsOf(reply, sessionId)
    return reply[0] === 'LATE' ? { ok: false, events, lateAt: Number(reply[1]) } : { ok: reply[0] === 'OK', events }
  }

  async discard (sessionId: string, now: number): Promise<RemoveResult> {
    const reply = await this.call('discard', tagOf(sessionId), now, sessionId)
    return { count: reply[0] === 'OK' ? 1 : 0, events: this.eventsOf(reply, sessionId) }
  }

  async recordEvent (event: RawAuditEvent): Promise<void> {
    await this.call('record', shardTag(event.userId), event.timestamp, event.userId, event.sessionId, event.type, event.data)
  }

  async auditLog (userId: string, options: { since: number, limit: number, now: number }): Promise<AuditPage> {
    const reply = await this.call('auditQuery', shardTag(userId), options.now, userId, String(options.since), String(options.limit))
    const [flat, dropped] = reply[1] as [string[], string]
    const events: RawAuditEvent[] = []
    for (let n = 0; n + 3 < flat.length; n += 4) {
      const timestamp = Number(flat[n])
      events.push({ type: flat[n + 1] as AuditEventType, userId, sessionId: flat[n + 2] as string, timestamp, data: flat[n + 3] as string })
    }
    return { events, droppedAt: dropped === '' ? null : Number(dropped) }
  }

  async cleanup (now: number, batchSize: number, onEvents: (events: RawAuditEvent[]) => void): Promise<CleanupResult> {
    const result: CleanupResult = { expired: 0, orphaned: 0 }
    let next = 0
    const run = { hasFailed: false }
    const worker = async (): Promise<void> => {
      while (next < ALL_TAGS.length && !run.hasFailed) {
        const tag = ALL_TAGS[next++] as string
        let examined = batchSize
        while (examined >= batchSize) {
          const reply = await this.call('cleanup', tag, now, String(batchSize))
          const counts = reply[1] as number[]
          result.expired += Number(counts[0])
          result.orphaned += Number(counts[1])
          examined = Number(counts[2])
          onEvents(this.eventsOf(reply))
        }
      }
    }
    // One failed batch fails the run; the other workers stop, and the run ends only once they have.
    const outcomes = await Promise.allSettled(Array.from({ length: CLEANUP_CONCURRENCY }, () => worker().catch((error: unknown) => {
      run.hasFailed = true
      throw error
    })))
    const failure = outcomes.find((outcome) => outcome.status === 'rejected')
    if (failure !== undefined) throw failure.reason
    return result
  }

  // ---- step-up (issue 14) ----

  async confirm (input: ConfirmInput): Promise<{ ok: boolean, events: RawAuditEvent[] }> {
    const reply = await this.call('confirm', tagOf(input.sessionId), input.now, input.sessionId, input.userId,
      input.ipAddress, packUserAgent(input.userAgent), input.deviceFingerprint, input.method, input.auditData)
    return { ok: reply[0] === 'OK', events: this.eventsOf(reply, input.sessionId) }
  }

  async rename (sessionId: string, userId: string, name: string | null, now: number, auditData: string): Promise<{ ok: boolean, events: RawAuditEvent[] }> {
    const reply = await this.call('rename', tagOf(sessionId), now, sessionId, userId, name ?? '', auditData)
    return { ok: reply[0] === 'OK', events: this.eventsOf(reply, sessionId) }
  }

  async reportUnrecognized (sessionId: string, userId: string, now: number, endOthers: boolean, exceptSessionId: string | null, auditData: string): Promise<EndResult> {
    const reply = await this.call('reportUnrecognized', tagOf(sessionId), now, sessionId, userId, endOthers ? '1' : '0',
      exceptSessionId ?? '', auditData)
    return { ended: reply[0] === 'OK' ? reply[1] as string[] : [], events: this.eventsOf(reply, sessionId) }
  }

  async tryLock (name: string, owner: string, ttlMs: number): Promise<boolean> {
    const key = lockKey(this.prefix, name)
    if (await this.client.set(key, owner, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX') === 'OK') return true
    return await this.client.get(key) === owner
  }

  async release (name: string, owner: string): Promise<boolean> {
    const command = (this.client as unknown as Record<string, (key: string, owner: string) => Promise<number>>)[COMMAND_PREFIX + 'releaseLock'] as (key: string, owner: string) => Promise<number>
    return await command.call(this.client, lockKey(this.prefix, name), owner) === 1
  }

  async close (): Promise<void> {
    await this.nearCache?.close()
    if (!this.ownsClient) return
    // QUIT needs a live connection; a client still connecting or reconnecting is simply dropped.
    if (this.client.status === 'ready') await this.client.quit().catch(() => this.client.disconnect())
    else this.client.disconnect()
  }

  /**
   * Waits for the client to be connected, authenticated and on its database, then PINGs. Rejects with a message naming
   * the problem: unreachable, authentication (WRONGPASS / NOAUTH) or a database index the server does not have
   * (ioredis does not report a failed SELECT on connect: sessions would silently go to database 0).
   */
  async check (): Promise<void> {
    const client = this.client
    const db = client.isCluster ? 0 : ((client as Redis).options.db ?? 0)
    try {
      await connected(client)
      await client.ping()
      if (db !== 0) await (client as Redis).select(db)
      // Every write is a script: a user who may read but not run scripts (an ACL without +@scripting) would pass a
      // PING and then fail every login.
      await (client as Redis).eval('return 1', 0)
    } catch (error) {
      throw new Error(describeConnectionError(error, db), { cause: error })
    }
  }

  /** Keeps the near cache in step with this instance's own writes (see NearCache.evict). */
  private forget (sessionIds: Iterable<string>): void {
    if (this.nearCache === null) return
    for (const sessionId of sessionIds) this.nearCache.evict(sessionId)
  }

  /** The audit events of a reply; the sessions they name are dropped from the near cache. */
  private eventsOf (reply: Reply, ...changed: string[]): RawAuditEvent[] {
    const events = parseEvents(reply[2])
    if (this.nearCache !== null) this.forget([...changed, ...events.map((event) => event.sessionId).filter((id) => id !== '')])
    return events
  }

  private call (name: ScriptName, tag: string, now: number, ...args: string[]): Promise<Reply> {
    const config = this.config
    /* c8 ignore next -- the manager configures its store in its constructor */
    if (config === null) throw new Error('fastify-distributed-session: store used before configure()')
    const command = (this.client as unknown as Record<string, ScriptCall>)[COMMAND_PREFIX + name] as ScriptCall
    const key = shardKey(this.prefix, tag)
    this.batch?.hold(key)
    return command.call(this.client, key, String(now), String(config.idleTimeoutMs),
      auditSettings(config), String(config.rules.maxDistinctIps),
      String(config.rules.maxDistinctUserAgents), String(config.rules.rapidCreationWindowMs), ...args)
  }
}

/** ARGV[3] of every script: 'retention/cap/feed' (see scripts.ts). */
function auditSettings (config: StoreConfig): string {
  return `${config.auditRetentionMs}/${config.auditMaxEventsPerUser ?? DEFAULT_AUDIT_MAX_EVENTS_PER_USER}/${config.auditFeed === true ? 1 : 0}`
}

/** How often a near cache that cannot turn tracking on says so. */
const NEAR_CACHE_REPORT_EVERY_MS = 60_000

function tagOf (sessionId: string): string {
  return sessionId.slice(0, TAG_LENGTH)
}

function parseEvents (flat: unknown[]): RawAuditEvent[] {
  const events: RawAuditEvent[] = []
  for (let n = 0; n + 4 < flat.length; n += 5) {
    events.push({
      type: flat[n] as AuditEventType,
      userId: flat[n + 1] as string,
      sessionId: flat[n + 2] as string,
      timestamp: Number(flat[n + 3]),
      data: flat[n + 4] as string
    })
  }
  return events
}

/** A lone surrogate escaped in JSON text (cjson refuses it; JSON.parse accepts it). */
const ESCAPED_SURROGATE = /\\u[dD][89a-fA-F]/

/** Whether every string and key in a parsed JSON value is well-formed UTF-16 (iterative: no recursion depth). */
function isWellFormedValue (root: unknown): boolean {
  const stack: unknown[] = [root]
  while (stack.length > 0) {
    const value = stack.pop()
    if (typeof value === 'string') {
      if (!isWellFormed(value)) return false
    } else if (value !== null && typeof value === 'object') {
      for (const key of Object.keys(value)) {
        if (!isWellFormed(key)) return false
        stack.push((value as Record<string, unknown>)[key])
      }
    }
  }
  return true
}

/**
 * Validates a stored record; anything that is not exactly a session is 'corrupt'. The same rules as the scripts'
 * readRec (store/redis/scripts.ts): a record one side refuses is refused by both, so a logout never reports a session
 * ended that the request path still opens.
 */
export function parseRecord (sessionId: string, raw: string | null): LoadResult {
  if (raw === null) return null
  let record: unknown
  try {
    record = JSON.parse(raw)
  } catch {
    return 'corrupt'
  }
  if (record === null || typeof record !== 'object') return 'corrupt'
  // An ended session's tombstone is no session, never corrupt.
  const ended = parseTombstone(record as Record<string, unknown>)
  if (ended !== undefined) return ended
  const { u, h, c, l, a, i, g, f, s, m, r, d } = record as Record<string, unknown>
  if (typeof u !== 'string' || u === '' || typeof h !== 'string' || h.length !== TOKEN_HASH_LENGTH ||
    !Number.isFinite(c) || !Number.isFinite(l) || !Number.isFinite(a) ||
    (r !== undefined && !(Number.isSafeInteger(r) && (r as number) >= 0)) ||
    (d !== undefined && !(Number.isSafeInteger(d) && (d as number) > 0))) {
    return 'corrupt'
  }
  // Every string of the record must survive cjson: one lone surrogate anywhere fails the whole record in Lua.
  if (ESCAPED_SURROGATE.test(raw) && !isWellFormedValue(record)) return 'corrupt'
  const metadata: Record<string, unknown> = {}
  // cjson cannot tell an empty object from an empty array: the scripts accept both as no metadata.
  if (m !== undefined && !(Array.isArray(m) && m.length === 0)) {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) return 'corrupt'
    for (const key of Object.keys(m)) {
      const value = (m as Record<string, unknown>)[key]
      if (FORBIDDEN_KEYS.has(key) || typeof value !== 'string') return 'corrupt'
      try {
        metadata[key] = JSON.parse(value)
      } catch {
        return 'corrupt'
      }
      if (ESCAPED_SURROGATE.test(value) && !isWellFormedValue(metadata[key])) return 'corrupt'
    }
  }
  const { t, k, n, z, w, p, q } = record as Record<string, unknown>
  const hasPrevious = typeof p === 'string' && Number.isFinite(q)
  // One object literal with every field (an absent one undefined): every record has the same shape, and no spread.
  return {
    id: sessionId,
    userId: u,
    tokenHash: h,
    createdAt: c as number,
    lastActivity: l as number,
    absoluteDeadline: a as number,
    ipAddress: typeof i === 'string' ? i : '',
    userAgent: typeof g === 'string' ? unpackUserAgent(g) : '',
    deviceFingerprint: typeof f === 'string' ? f : '',
    metadata,
    concurrencyFlags: typeof s === 'number' ? s : 0,
    revision: r === undefined ? 0 : r as number,
    idleTimeoutMs: d as number | undefined,
    // The record fields of issue 14 (t, k, n, z, w, p, q); a field of the wrong type is left out.
    authenticatedAt: Number.isFinite(t) ? t as number : undefined,
    confirmMethod: typeof k === 'string' ? k : undefined,
    name: typeof n === 'string' ? n : undefined,
    acknowledgedFlags: Number.isSafeInteger(z) ? z as number : undefined,
    newestOtherCreatedAt: Number.isFinite(w) ? w as number : undefined,
    previousTokenHash: hasPrevious ? p as string : undefined,
    previousTokenUntil: hasPrevious ? q as number : undefined
  }
}

/** A tombstone `{ x: reason, at, h }`, or undefined when the record is not one. */
function parseTombstone (record: Record<string, unknown>): EndedRecord | undefined {
  if (record.x === undefined || record.u !== undefined) return undefined
  return {
    ended: { reason: typeof record.x === 'string' ? record.x : 'revoked', at: Number.isFinite(record.at) ? record.at as number : 0 },
    tokenHash: typeof record.h === 'string' ? record.h : ''
  }
}

/** Resolves when the client is ready; rejects with the first connection error (it does not wait for retries). */
function connected (client: Client): Promise<void> {
  if (client.status === 'ready') return Promise.resolve()
  if (client.status === 'end') return Promise.reject(new Error('the client is closed'))
  return new Promise((resolve, reject) => {
    const onReady = (): void => { stop(); resolve() }
    const onError = (error: unknown): void => { stop(); reject(error) }
    const onEnd = (): void => { stop(); reject(new Error('the connection was closed')) }
    const stop = (): void => {
      client.off('ready', onReady)
      client.off('error', onError)
      client.off('end', onEnd)
    }
    client.on('ready', onReady)
    client.on('error', onError)
    client.on('end', onEnd)
    // A lazyConnect client: connecting reports its failure through 'error' as well.
    if (client.status === 'wait') client.connect().catch(() => {})
  })
}

function describeConnectionError (error: unknown, db: number): string {
  const message = error instanceof Error ? error.message : String(error)
  if (message.startsWith('WRONGPASS') || /invalid password/i.test(message)) {
    return `Redis refused the credentials (wrong password or username): ${message}`
  }
  if (message.startsWith('NOAUTH')) return `Redis requires a password and none was given: ${message}`
  if (message.startsWith('NOPERM')) {
    return `the Redis user may not run what the store needs (scripts: EVAL/EVALSHA, and the commands they call; grant +@scripting and the key commands): ${message}`
  }
  if (/DB index is out of range|invalid DB index/i.test(message)) {
    return `Redis has no database ${db} (SELECT ${db}: ${message}); the server's 'databases' setting bounds the index`
  }
  return `Redis is unreachable: ${message}`
}
