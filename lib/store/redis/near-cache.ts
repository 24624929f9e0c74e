import type { Cluster, Redis, RedisOptions } from 'ioredis'
import { withinTime } from '../../core/duration'

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

/** The session id a key names, or null for another key (see sessionKey in keys.ts). */
export type IdOfKey = (redisKey: string) => string | null

const INVALIDATE_CHANNEL = '__redis__:invalidate'
/** After a set-up that failed on connections that are up, the next try. */
const SETUP_RETRY_MS = 1000
/** How often a Cluster's nodes are listed (CLUSTER NODES), to track a node before any failover needs it. */
const DISCOVERY_MS = 1000
/** Longest wait for CLUSTER NODES (the Cluster client has no command timeout by default: a frozen node). */
const LIST_TIMEOUT_MS = 2000
/** How long set-ups may find connections not ready before it is reported (a node the app cannot reach). */
const OFF_REPORT_MS = 30_000
/**
 * For the connections to a Cluster's nodes, copied from the client's own: those do not reconnect by default (the
 * client finds nodes again through its slot map), ours must, and a connection to a replica sends no READONLY.
 */
const NODE_CONNECTION: Partial<RedisOptions> = {
  readOnly: false,
  retryStrategy: (times: number) => Math.min(times * 100, 2000),
  // A frozen node must not hold the set-up forever.
  commandTimeout: 2000
}

/**
 * How Redis is told to report changes, for one kind of deployment. The cache calls `establish` whenever a connection
 * became ready or the deployment changed, and `read` for a miss while tracking is on.
 */
interface Tracking {
  /** Reads a record for a miss; a read that may be cached goes through `cache.trackedRead`. */
  read: (id: string, key: string, epoch: number) => Promise<string | null>
  /** Turns tracking on over every connection; false when a connection is not ready (a later 'ready' calls again). */
  establish: () => Promise<boolean>
  /** The connections that are not ready, for the report of a cache that stays off. */
  notReady: () => string[]
  close: () => void
}

/**
 * A near cache of session records: server-assisted client-side caching (Redis CLIENT TRACKING, RESP2 redirect of the
 * invalidations to a connection subscribed to `__redis__:invalidate`). Every change of a session key that Redis
 * reports drops the entry, so a revocation on any instance reaches every instance's cache as soon as the message
 * arrives. Two ways of tracking, chosen by the client:
 * - standalone or Sentinel (`OptInTracking`): reads go through a dedicated `reader` connection whose reads Redis
 *   tracks (OPTIN: a key is first read untracked and, when it holds a record, read again tracked, one round trip more
 *   the first time an instance sees a session; random tokens fill neither the cache nor Redis's tracking table);
 * - Cluster (`BroadcastTracking`): on every node, masters and replicas alike, a pair of connections asks for every
 *   change under the store's key prefix (BCAST). Reads go through the Cluster client.
 *
 * Correctness rules:
 * - A reply is cached only if no invalidation of its key arrived while the read was in flight (the invalidation
 *   of a read can arrive before the read's own reply: they travel on different connections).
 * - Nothing is cached, and the cache is emptied, whenever a tracking connection is not set up or the deployment
 *   changes (after a disconnect, invalidations may have been lost); a read started before a reset is not cached.
 *   Every set-up starts from an empty cache (it turns tracking off and on again).
 * - `maxAgeMs` bounds what a silently broken listener connection could serve.
 */
export class NearCache {
  /** By session id: a hit is one lookup of the id the token names, no key to build. */
  private readonly entries = new Map<string, NearCacheEntry>()
  private readonly pending = new Map<string, Pending>()
  private readonly maxEntries: number
  private readonly maxAgeMs: number
  private readonly tracking: Tracking
  /** Bumped on every reset: a read that started in an older epoch is not cached. */
  private epoch = 0
  private isReady = false
  private isClosed = false
  private setupRunning: Promise<void> | null = null
  private isSetupWanted = false
  private retryTimer: NodeJS.Timeout | null = null
  /** Since when set-ups have found connections not ready (null: the cache is on, or no set-up found any). */
  private offSince: number | null = null

  /**
   * @param client the store's client: misses while tracking is not on are read through it.
   * @param idOfKey the session id of a key as Redis names it (with the client's ioredis `keyPrefix`); null for
   * another key (only the Cluster's broadcast tracking reports other keys).
   * @param prefix every session key's prefix as Redis sees it (ioredis `keyPrefix` + the store's prefix): what a
   * Cluster's broadcast tracking asks Redis to report.
   * @param onSetupError told when turning tracking on fails (a refused command, a connection lost meanwhile): the
   * cache stays off, reads go to Redis, and the set-up is tried again.
   */
  constructor (private readonly client: Redis | Cluster, private readonly idOfKey: IdOfKey, prefix: string,
    options: NearCacheOptions = {}, private readonly onSetupError: (error: unknown) => void = () => {},
    private readonly now: () => number = Date.now) {
    this.maxEntries = options.maxEntries ?? 10_000
    this.maxAgeMs = options.maxAgeMs ?? 5_000
    this.tracking = client.isCluster
      ? new BroadcastTracking(this, client as Cluster, prefix)
      : new OptInTracking(this, client as Redis)
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
    return this.tracking.read(id, key, this.epoch)
  }

  /** Whether a read started in `epoch` may still be cached. */
  isCurrent (epoch: number): boolean {
    return epoch === this.epoch && this.isReady
  }

  /** Runs a read whose reply Redis reports changes of, and caches the record unless it changed meanwhile. */
  trackedRead (id: string, epoch: number, read: () => Promise<string | null>): Promise<string | null> {
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
    return read().then((record) => {
      if (record !== null && !inFlight.isInvalidated && this.isCurrent(epoch)) this.remember(id, record)
      release()
      return record
    }, (error: unknown) => {
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
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.reset()
    this.tracking.close()
  }

  private remember (id: string, record: string): void {
    if (!this.entries.has(id) && this.entries.size >= this.maxEntries) {
      this.entries.delete(this.entries.keys().next().value as string)
    }
    this.entries.set(id, { record, at: this.now(), parsed: undefined })
  }

  /** An invalidation message: the keys that changed, or null when anything may have (a flush). */
  invalidate (keys: Buffer[] | null): void {
    if (keys === null) {
      // A flush, or Redis dropped its tracking table: everything may have changed.
      this.reset()
      this.setup()
      return
    }
    for (const raw of keys) {
      const id = this.idOfKey(raw.toString())
      if (id !== null) this.evict(id)
    }
  }

  /** Stops caching and empties the cache: invalidations may have been lost. */
  reset (): void {
    this.isReady = false
    this.epoch++
    this.entries.clear()
    for (const pending of this.pending.values()) pending.isInvalidated = true
  }

  /**
   * (Re)connects tracking. A request that comes while a set-up runs (another connection became ready, or dropped)
   * runs it again afterwards.
   */
  setup (): void {
    this.isSetupWanted = true
    if (this.isClosed || this.setupRunning !== null) return
    const run = async (): Promise<void> => {
      while (this.isSetupWanted && !this.isClosed) {
        this.isSetupWanted = false
        // A set-up starts from an empty cache: it turns tracking off and on again, and changes made in between go
        // unreported (OPTIN also forgets the keys it tracked).
        if (this.isReady) this.reset()
        const epoch = this.epoch
        try {
          // A disconnect or a change of the deployment during the set-up bumped the epoch: caching waits for the
          // set-up that its event asks for.
          const isEstablished = await this.tracking.establish()
          if (isEstablished && epoch === this.epoch && !this.isClosed) {
            this.isReady = true
            this.offSince = null
          } else if (!isEstablished) {
            // A connection not ready yet: its 'ready' asks again, but one to a node that died may never be (only the
            // cluster's word that the node failed lets the set-up go on without it), or one the app cannot reach.
            this.retrySoon()
            this.reportIfOffTooLong()
          }
        } catch (error) {
          // A command failed: try again later, as no 'ready' may come to ask for it. Told only when no connection
          // dropped meanwhile (a drop bumped the epoch and explains the failure; its 'ready' sets up again).
          const isExplained = epoch !== this.epoch
          this.reset()
          this.retrySoon()
          if (!isExplained) this.onSetupError(error)
        }
      }
    }
    this.setupRunning = run().finally(() => { this.setupRunning = null })
  }

  /** A cache that stays off for OFF_REPORT_MS because connections do not come up says which. */
  private reportIfOffTooLong (): void {
    const now = Date.now()
    this.offSince ??= now
    if (now - this.offSince < OFF_REPORT_MS) return
    this.onSetupError(new Error(`connections not ready for ${Math.round((now - this.offSince) / 1000)} s: ${this.tracking.notReady().join(', ')}`))
  }

  private retrySoon (): void {
    if (this.retryTimer !== null || this.isClosed) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      this.setup()
    }, SETUP_RETRY_MS)
    this.retryTimer.unref()
  }
}

/**
 * A listener connection subscribed to the invalidation channel, and the id that a tracking connection redirects to.
 * Any drop resets the cache; any 'ready' asks for a set-up.
 */
class Listener {
  readonly connection: Redis
  /**
   * The subscription of this connection, once asked for, resolving with the connection's id: a set-up that overlaps
   * another waits for the same subscription (a subscribed connection accepts no CLIENT ID). A new connection needs a
   * new one.
   */
  private subscription: Promise<number> | null = null

  constructor (cache: NearCache, base: Redis, overrides: Partial<RedisOptions> = {}) {
    // RESP2: invalidations then arrive as ordinary messages on the __redis__:invalidate channel.
    // No command resent after a reconnect: a SUBSCRIBE in flight at a drop would leave the new connection subscribed
    // before the set-up asks its CLIENT ID (refused there).
    this.connection = base.duplicate({ ...overrides, protocol: 2, autoResubscribe: false, autoResendUnfulfilledCommands: false, lazyConnect: false })
    this.connection.on('close', () => { this.subscription = null })
    this.connection.on('messageBuffer', (_channel: Buffer, keys: Buffer[] | null) => { cache.invalidate(keys) })
    watch(cache, this.connection)
  }

  /** Subscribes when not yet, and returns the id to redirect to. */
  subscribed (): Promise<number> {
    if (this.subscription !== null) return this.subscription
    const subscription = (async () => {
      const id = await this.connection.client('ID') as number
      await this.connection.subscribe(INVALIDATE_CHANNEL)
      return id
    })()
    this.subscription = subscription
    // A failed subscription is asked for again by the next set-up.
    subscription.catch(() => { if (this.subscription === subscription) this.subscription = null })
    return subscription
  }
}

/** A drop of one of the cache's connections resets it and starts a set-up; its 'ready' asks for one too. */
function watch (cache: NearCache, connection: Redis): void {
  connection.on('error', () => {}) // reported by the commands that fail; the cache just stops being used
  connection.on('close', () => {
    cache.reset()
    // Its 'ready' sets up again, but a node that died may never come back: the set-up keeps trying meanwhile, and
    // goes on without the node once the cluster has failed it.
    cache.setup()
  })
  connection.on('ready', () => { cache.setup() })
}

/** "tracker/listener" statuses when either connection is not ready, null when both are. */
function notReady (tracker: Redis, listener: Listener): string | null {
  const statuses = [tracker.status, listener.connection.status]
  return statuses.every((status) => status === 'ready') ? null : statuses.join('/')
}

/**
 * Turns tracking on for `tracker`, its invalidations redirected to `listener` (subscribed first), in `mode`. Off first:
 * a connection still tracking with an old redirect or prefix refuses a second ON.
 */
async function turnOn (tracker: Redis, listener: Listener, ...mode: string[]): Promise<void> {
  const id = await listener.subscribed()
  await tracker.call('CLIENT', 'TRACKING', 'OFF')
  await tracker.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(id), ...mode)
}

/** Standalone or Sentinel: a tracked reader (OPTIN) and a listener. */
class OptInTracking implements Tracking {
  private readonly reader: Redis
  private readonly listener: Listener

  constructor (private readonly cache: NearCache, client: Redis) {
    this.listener = new Listener(cache, client)
    this.reader = client.duplicate({ lazyConnect: false })
    watch(cache, this.reader)
  }

  read (id: string, key: string, epoch: number): Promise<string | null> {
    return this.reader.get(key).then((first) => {
      if (first === null || !this.cache.isCurrent(epoch)) return first
      // Holds a record: read it again, tracked this time.
      return this.cache.trackedRead(id, epoch, () => this.reader.pipeline().client('CACHING', 'YES').get(key).exec().then((results) => {
        const [error, reply] = (results as Array<[Error | null, unknown]>)[1] as [Error | null, unknown]
        if (error !== null) throw error
        return reply as string | null
      }))
    })
  }

  async establish (): Promise<boolean> {
    if (notReady(this.reader, this.listener) !== null) return false
    await turnOn(this.reader, this.listener, 'OPTIN')
    return true
  }

  notReady (): string[] {
    const statuses = notReady(this.reader, this.listener)
    return statuses === null ? [] : [`reader/listener (${statuses})`]
  }

  close (): void {
    this.reader.disconnect()
    this.listener.connection.disconnect()
  }
}

/** One Cluster node's pair: a connection that asks for broadcast invalidations, redirected to a listener. */
interface NodePair {
  tracker: Redis
  listener: Listener
}

/** A node's address as the Cluster client names it ("host:port"), and where to connect. */
interface NodeAddress {
  key: string
  host: string
  port: number
}

/**
 * Redis Cluster: tracking is per node, so every node gets a pair of connections with
 * `CLIENT TRACKING ON REDIRECT <listener> BCAST PREFIX <prefix>`: the node reports every change of a key under the
 * prefix, whoever made it, and a replica reports the changes it replicates. Reads need no tracked connection, so they
 * go through the Cluster client and its routing.
 *
 * The nodes tracked are those of the client's pool and those that `CLUSTER NODES` lists as not failed, replicas
 * included, asked every DISCOVERY_MS: a replica that a failover promotes is then already tracked, even one that the
 * client's slot map never listed (Redis leaves a replica that has not synced yet out of CLUSTER SLOTS) and even when
 * the old master froze without closing a connection. Any change of that set (a node added to or dropped from the pool,
 * a node found or failed) empties the cache until every node of the new set is tracked; a tracking connection that
 * drops does too.
 */
class BroadcastTracking implements Tracking {
  private readonly pairs = new Map<string, NodePair>()
  /** The healthy nodes of the last `CLUSTER NODES`, by key, and the keys of the nodes it said had failed. */
  private discovered = new Map<string, NodeAddress>()
  private failed = new Set<string>()
  private readonly discovery: NodeJS.Timeout
  private isDiscovering = false
  private isClosed = false
  /** Which ready tracking connection asks CLUSTER NODES next. */
  private turn = 0

  constructor (private readonly cache: NearCache, private readonly cluster: Cluster, private readonly prefix: string) {
    cluster.on('+node', this.onPoolChanged)
    cluster.on('-node', this.onPoolChanged)
    this.reconcile()
    this.discovery = setInterval(() => { this.discover() }, DISCOVERY_MS)
    this.discovery.unref()
  }

  /**
   * The client's pool changed: a node added (a failover, a MOVED, a refresh of the slot map) or dropped (its
   * connection ended, which a live node's can too). Either way, changes may have gone unreported: empty the cache.
   */
  private readonly onPoolChanged = (): void => {
    this.reconcile()
    this.cache.reset()
    this.cache.setup()
  }

  /**
   * The nodes to track: the discovered ones and the pool's, but not one the cluster has failed (it takes no writes; a
   * frozen one would hold the set-up until the client's slot map drops it).
   */
  private wanted (): Map<string, NodeAddress> {
    const wanted = new Map(this.discovered)
    for (const node of this.cluster.nodes('all')) {
      const key = nodeKey(node)
      if (!this.failed.has(key)) wanted.set(key, { key, host: node.options.host ?? '', port: node.options.port ?? 0 })
    }
    return wanted
  }

  /** Opens a pair for every wanted node without one and ends the pairs of the others; true when anything changed. */
  private reconcile (): boolean {
    if (this.isClosed) return false
    const wanted = this.wanted()
    // The options of a pool connection (password, TLS...), for the node's own address.
    const base = this.cluster.nodes('all')[0]
    let isChanged = false
    for (const [key, pair] of this.pairs) {
      if (wanted.has(key)) continue
      this.pairs.delete(key)
      disconnect(pair)
      isChanged = true
    }
    if (base === undefined) return isChanged
    for (const address of wanted.values()) {
      if (this.pairs.has(address.key)) continue
      const options = { ...NODE_CONNECTION, host: address.host, port: address.port }
      const tracker = base.duplicate({ ...options, lazyConnect: false })
      watch(this.cache, tracker)
      this.pairs.set(address.key, { tracker, listener: new Listener(this.cache, base, options) })
      isChanged = true
    }
    return isChanged
  }

  /**
   * The healthy nodes the cluster lists now, asked over the cache's own tracking connections in turn (they time out
   * after 2 s, and a frozen node is not asked twice in a row), or the Cluster client before any is ready (bounded by
   * the same 2 s). A node that does not answer fails the set-up, which is tried again. False when no connection is
   * ready to ask (a command would wait in the client's offline queue, one more at every retry).
   */
  private async listNodes (): Promise<boolean> {
    const ready = [...this.pairs.values()].filter((pair) => pair.tracker.status === 'ready')
    if (ready.length === 0 && this.cluster.status !== 'ready') return false
    const asked = ready.length === 0 ? this.cluster : (ready[this.turn++ % ready.length] as NodePair).tracker
    const text = await withinTime(asked.cluster('NODES') as Promise<string>, LIST_TIMEOUT_MS, `CLUSTER NODES did not answer within ${LIST_TIMEOUT_MS} ms`)
    const poolHosts = new Set(this.cluster.nodes('all').map((node) => node.options.host ?? ''))
    const nodes = clusterNodes(text, this.cluster.options.natMap, poolHosts)
    this.discovered = nodes.healthy
    this.failed = nodes.failed
    return true
  }

  /** Asks the cluster which nodes exist, every DISCOVERY_MS: a new one, or one that failed, changes the set to track. */
  private discover (): void {
    if (this.isDiscovering || this.isClosed || !this.cache.ready) return
    this.isDiscovering = true
    this.listNodes().then((isListed) => {
      if (isListed && this.reconcile()) {
        this.cache.reset()
        this.cache.setup()
      }
    }, () => {}).finally(() => { this.isDiscovering = false }) // an unreachable cluster: the pairs' own drops tell
  }

  read (id: string, key: string, epoch: number): Promise<string | null> {
    return this.cache.trackedRead(id, epoch, () => this.cluster.get(key))
  }

  async establish (): Promise<boolean> {
    // Caching starts only once the cluster's own list of nodes is known and tracked.
    if (!await this.listNodes()) return false
    this.reconcile()
    const wanted = this.wanted()
    if (wanted.size === 0 || [...wanted.keys()].some((key) => !this.pairs.has(key))) return false
    const pairs = [...this.pairs]
    if (pairs.some(([, pair]) => notReady(pair.tracker, pair.listener) !== null)) return false
    // Every pair's commands settle before the next set-up can start: two set-ups never interleave on one tracker.
    const results = await Promise.allSettled(pairs.map(async ([key, pair]) => {
      try {
        await turnOn(pair.tracker, pair.listener, 'BCAST', 'PREFIX', this.prefix)
      } catch (error) {
        // A pair ended meanwhile (its node left the set) fails for that reason alone.
        if (this.pairs.get(key) === pair) throw error
      }
    }))
    const failed = results.find((result) => result.status === 'rejected')
    if (failed !== undefined) throw failed.reason
    // With a pair ended meanwhile, the set-up that its end asked for decides.
    return pairs.every(([key, pair]) => this.pairs.get(key) === pair)
  }

  notReady (): string[] {
    const waiting: string[] = []
    for (const [key, pair] of this.pairs) {
      const statuses = notReady(pair.tracker, pair.listener)
      if (statuses !== null) waiting.push(`${key} (${statuses})`)
    }
    return waiting
  }

  close (): void {
    this.isClosed = true
    clearInterval(this.discovery)
    this.cluster.off('+node', this.onPoolChanged)
    this.cluster.off('-node', this.onPoolChanged)
    for (const pair of this.pairs.values()) disconnect(pair)
    this.pairs.clear()
  }
}

/**
 * A `CLUSTER NODES` reply: the nodes to track (not failed, in handshake or without an address) and the keys of the
 * failed ones, named as the Cluster client names nodes (after its `natMap`).
 */
export function clusterNodes (text: string, natMap?: unknown, poolHosts: ReadonlySet<string> = new Set()): { healthy: Map<string, NodeAddress>, failed: Set<string> } {
  const healthy = new Map<string, NodeAddress>()
  const failed = new Set<string>()
  const lines = text.split('\n').map((line) => line.trim().split(' '))
  // Hostname endpoints (cluster-preferred-endpoint-type hostname): the client's pool names nodes by the hostnames that
  // CLUSTER SLOTS gives, and so does this.
  const preferHostname = lines.some((fields) => poolHosts.has((fields[1] ?? '').split(',')[1] ?? ''))
  for (const fields of lines) {
    const address = fields[1]
    const flags = (fields[2] ?? '').split(',')
    if (address === undefined || flags.some((flag) => flag === 'handshake' || flag === 'noaddr')) continue
    // ip:port@cport[,hostname]; an IPv6 address has colons of its own.
    const [hostPort = '', hostname = ''] = address.split(',')
    const ipPort = hostPort.split('@')[0] ?? ''
    const colon = ipPort.lastIndexOf(':')
    const port = Number(ipPort.slice(colon + 1))
    if (colon <= 0 || !Number.isInteger(port) || port <= 0) continue
    const host = preferHostname && hostname !== '' ? hostname : ipPort.slice(0, colon)
    const mapped = mapNat(natMap, `${host}:${port}`) ?? { host, port }
    const key = `${mapped.host}:${mapped.port}`
    if (flags.includes('fail')) failed.add(key)
    else healthy.set(key, { key, host: mapped.host, port: mapped.port })
  }
  return { healthy, failed }
}

/** What ioredis's `natMap` (an object or a function) makes of "host:port", if anything. */
function mapNat (natMap: unknown, key: string): { host: string, port: number } | undefined {
  const mapped: unknown = typeof natMap === 'function'
    ? (natMap as (key: string) => unknown)(key)
    : natMap !== null && typeof natMap === 'object' ? (natMap as Record<string, unknown>)[key] : undefined
  if (mapped === null || typeof mapped !== 'object') return undefined
  const { host, port } = mapped as { host?: unknown, port?: unknown }
  return typeof host === 'string' && typeof port === 'number' ? { host, port } : undefined
}

function nodeKey (node: Redis): string {
  return `${node.options.host ?? ''}:${node.options.port ?? ''}`
}

/** Ends a pair this cache no longer needs: its connections closing is no reason to reset the cache. */
function disconnect (pair: NodePair): void {
  for (const connection of [pair.tracker, pair.listener.connection]) {
    connection.removeAllListeners('close')
    connection.removeAllListeners('ready')
    connection.disconnect()
  }
}
