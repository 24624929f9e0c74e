import type { Redis } from 'ioredis'

export interface NearCacheOptions {
  /** Records kept in process, first in first out. @default 10000 */
  maxEntries?: number
  /** Longest a record is served from memory without asking Redis, whatever the invalidations say. @default 5000 */
  maxAgeMs?: number
}

export interface NearCacheEntry {
  record: string
  at: number
  /** The store's parsed form of `record`, kept by the store on first use (read only: every hit shares it). */
  parsed: unknown
}

/** Reads of one key in flight; set when an invalidation of the key arrives before their reply. */
interface Pending {
  count: number
  isInvalidated: boolean
}

const INVALIDATE_CHANNEL = '__redis__:invalidate'

/**
 * A near cache of session records: server-assisted client-side caching (Redis CLIENT TRACKING in RESP2 redirect
 * mode) on one standalone or Sentinel-managed Redis. The store reads session keys through a dedicated `reader`
 * connection whose reads Redis tracks; every later change of such a key (a write, a delete, an expiry, a flush)
 * makes Redis publish the key on a second, `listener` connection, and the entry is dropped. A revocation on any
 * instance therefore reaches every instance's cache as soon as that message arrives.
 *
 * Correctness rules:
 * - A reply is cached only if no invalidation of its key arrived while the read was in flight (the invalidation
 *   of a read can arrive before the read's own reply: they travel on different connections).
 * - Nothing is cached, and the cache is emptied, whenever either connection is not set up (after a disconnect,
 *   invalidations may have been lost); a read started before a reset is not cached.
 * - `maxAgeMs` bounds what a silently broken listener connection could serve.
 * - Only records that exist are cached, and only they are tracked: tracking is OPTIN, a key is first read
 *   untracked and, when it holds a record, read again tracked (\`CLIENT CACHING YES\` + GET, one round trip
 *   more the first time an instance sees a session). Random tokens cannot fill the cache nor Redis's tracking
 *   table (in the default mode Redis kept ~145 bytes per distinct key read, unknown tokens included).
 */
export class NearCache {
  private readonly reader: Redis
  private readonly listener: Redis
  /** By session id: a hit is one lookup of the id the token names, no key to build. */
  private readonly entries = new Map<string, NearCacheEntry>()
  private readonly pending = new Map<string, Pending>()
  private readonly maxEntries: number
  private readonly maxAgeMs: number
  /** Bumped on every reset: a read that started in an older epoch is not cached. */
  private epoch = 0
  private isReady = false
  private isClosed = false
  private setupRunning: Promise<void> | null = null
  private isSetupWanted = false
  /** The listener's connection id once it is subscribed; a new connection needs a new subscription. */
  private listenerId: number | null = null
  /**
   * @param idOfKey the session id of a session key as Redis names it (with the client's ioredis `keyPrefix`): how an
   * invalidation message finds its entry. Only session keys are read tracked, so every invalidated key is one.
   */
  constructor (private readonly client: Redis, private readonly idOfKey: (redisKey: string) => string,
    options: NearCacheOptions = {}, private readonly now: () => number = Date.now) {
    this.maxEntries = options.maxEntries ?? 10_000
    this.maxAgeMs = options.maxAgeMs ?? 5_000
    // RESP2 for the listener: invalidations then arrive as ordinary messages on the __redis__:invalidate channel.
    this.listener = client.duplicate({ protocol: 2, autoResubscribe: false, lazyConnect: false })
    this.reader = client.duplicate({ lazyConnect: false })
    this.listener.on('close', () => { this.listenerId = null })
    for (const connection of [this.listener, this.reader]) {
      connection.on('error', () => {}) // reported by the commands that fail; the cache just stops being used
      connection.on('close', () => this.reset())
      connection.on('ready', () => { this.setup() })
    }
    this.listener.on('messageBuffer', (_channel: Buffer, keys: Buffer[] | null) => this.invalidate(keys))
  }

  /** Reads answered from memory. */
  hits = 0
  /** Reads that went to Redis (while tracking or not). */
  misses = 0

  /** The cached entry of session `id` when it is known to be current, without I/O; undefined otherwise (then call `get`). */
  peek (id: string): NearCacheEntry | undefined {
    if (!this.isReady) return undefined
    const entry = this.entries.get(id)
    if (entry === undefined || this.now() - entry.at >= this.maxAgeMs) return undefined
    this.hits++
    return entry
  }

  /** The record of session `id`, stored under `key`, from memory when it is known to be current. */
  get (id: string, key: string): Promise<string | null> {
    const entry = this.peek(id)
    if (entry !== undefined) return Promise.resolve(entry.record)
    this.misses++
    // Not tracking (starting, or reconnecting): the store's own connection, as without a near cache.
    if (!this.isReady) return this.client.get(key)
    const epoch = this.epoch
    return this.reader.get(key).then((first) => {
      if (first === null || epoch !== this.epoch || !this.isReady) return first
      return this.trackedGet(id, key, epoch)
    })
  }

  /** Reads a key that holds a record again, tracked this time, and caches it unless it changed meanwhile. */
  private trackedGet (id: string, key: string, epoch: number): Promise<string | null> {
    let pending = this.pending.get(id)
    if (pending === undefined) {
      pending = { count: 0, isInvalidated: false }
      this.pending.set(id, pending)
    }
    pending.count++
    const inFlight = pending
    const release = (): void => {
      if (--inFlight.count === 0 && this.pending.get(id) === inFlight) this.pending.delete(id)
    }
    return this.reader.pipeline().client('CACHING', 'YES').get(key).exec().then((results) => {
      const [error, reply] = (results as Array<[Error | null, unknown]>)[1] as [Error | null, unknown]
      if (error !== null) throw error
      const record = reply as string | null
      if (record !== null && !inFlight.isInvalidated && epoch === this.epoch && this.isReady) this.remember(id, record)
      release()
      return record
    }).catch((error: unknown) => {
      release()
      throw error
    })
  }

  /**
   * Drops a key this instance has just changed, without waiting for Redis's message: a request that follows the
   * change on this instance never sees the old record. A read in flight for the key is not cached either.
   */
  evict (id: string): void {
    this.entries.delete(id)
    const pending = this.pending.get(id)
    if (pending !== undefined) pending.isInvalidated = true
  }

  /** Records held (for tests and metrics). */
  get size (): number {
    return this.entries.size
  }

  /** Whether reads are being cached now. */
  get ready (): boolean {
    return this.isReady
  }

  async close (): Promise<void> {
    this.isClosed = true
    this.reset()
    this.reader.disconnect()
    this.listener.disconnect()
  }

  private remember (id: string, record: string): void {
    if (!this.entries.has(id) && this.entries.size >= this.maxEntries) {
      this.entries.delete(this.entries.keys().next().value as string)
    }
    this.entries.set(id, { record, at: this.now(), parsed: undefined })
  }

  private invalidate (keys: Buffer[] | null): void {
    if (keys === null) {
      // A flush, or Redis dropped its tracking table: everything may have changed.
      this.reset()
      if (!this.isClosed) this.setup()
      return
    }
    for (const raw of keys) this.evict(this.idOfKey(raw.toString()))
  }

  private reset (): void {
    this.isReady = false
    this.epoch++
    this.entries.clear()
    for (const pending of this.pending.values()) pending.isInvalidated = true
  }

  /**
   * (Re)connects tracking: the listener subscribes, then the reader redirects its invalidations to it. A request
   * that comes while a set-up runs (another connection became ready, or dropped) runs it again afterwards.
   */
  private setup (): void {
    this.isSetupWanted = true
    if (this.isClosed || this.setupRunning !== null) return
    const run = async (): Promise<void> => {
      while (this.isSetupWanted && !this.isClosed) {
        this.isSetupWanted = false
        if (this.listener.status !== 'ready' || this.reader.status !== 'ready') return
        const epoch = this.epoch
        try {
          if (this.listenerId === null) {
            const id = await this.listener.client('ID') as number
            await this.listener.subscribe(INVALIDATE_CHANNEL)
            this.listenerId = id
          }
          await this.reader.call('CLIENT', 'TRACKING', 'OFF')
          await this.reader.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(this.listenerId), 'OPTIN')
          // A disconnect during the set-up bumped the epoch: caching waits for the set-up its 'ready' asks for.
          if (epoch === this.epoch && !this.isClosed) this.isReady = true
        } catch {
          this.reset()
        }
      }
    }
    this.setupRunning = run().finally(() => { this.setupRunning = null })
  }
}
