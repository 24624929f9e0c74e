// The capacity model (issue 17): pure arithmetic from measured unit costs (bench/results/capacity-units.json, written
// by `npm run capacity:measure`) and a deployment's load to memory, Redis cores / Cluster masters and app cores.
// No I/O here: the CLI (bench/capacity/cli.mjs), the doc generator and test/capacity.test.ts all call `plan()`.
import { spread } from './slots.mjs'

/** The operation types the model prices, in the order it prints them. */
export const OPERATIONS = ['request', 'requestTouch', 'nearCacheHit', 'login', 'loginEvict', 'logout', 'list', 'revokeAll', 'auditQuery', 'cleanup']

/** Defaults of every load parameter; each one is stated in the output as an assumption. */
export const DEFAULTS = Object.freeze({
  sessionsPerUser: 1,
  rps: 0,
  loginsPerS: 0,
  /** Logouts per login: sessions that end by a logout rather than by expiry or eviction. */
  logoutShare: 0.2,
  /** Share of logins that find the user at the session limit and evict the oldest. */
  evictionShare: 0,
  /** Share of authenticated requests that find a touch due (at most one per session per touchInterval, 60 s). */
  touchShare: 0.05,
  /** Share of plain (no touch) requests answered by the near cache with no round trip (0: no near cache). */
  nearCacheHitRatio: 0,
  /** Session lists, revoke-alls and audit queries per login. */
  listsPerLogin: 0.1,
  revokeAllsPerLogin: 0.01,
  auditQueriesPerLogin: 0.01,
  /** Audit events kept per user; default: what the event rate leaves within the retention, at most the cap. */
  auditEventsPerUser: null,
  auditRetentionDays: 7,
  auditCapPerUser: 5000,
  /** Audit events per session: the login and its end (logout, eviction or expiry). */
  auditEventsPerSession: 2,
  /** How long an ended session's tombstone stays (ENDED_SESSION_MEMORY_MS, lib/security/stepup.ts). */
  tombstoneHours: 24,
  cleanupIntervalS: 3600,
  /** Near-cache entries per app instance (NearCacheOptions.maxEntries): keys in the tracking table of one Redis. */
  nearCacheEntries: 10_000,
  targetUtilization: 0.5,
  /** Redis memory beyond the data: allocator fragmentation, client and replication buffers (fraction of data). */
  redisOverhead: 0.25,
  /** Free memory on top (fraction of data + overhead): copy-on-write during an RDB save or a replica's full sync. */
  headroom: 0.5,
  maxMemoryPerMasterGiB: 25,
  replicasPerMaster: 1,
  /** Speed of the target machine's cores relative to the one that measured the unit costs (CPU figures divide by it). */
  coreSpeed: 1,
  nodeCoresPerInstance: 1,
  /** Node CPU per request, µs; default: the units file's. */
  nodeUsPerRequest: null
})

const NON_NEGATIVE = ['users', 'sessionsPerUser', 'rps', 'loginsPerS', 'logoutShare', 'evictionShare', 'touchShare', 'nearCacheHitRatio',
  'listsPerLogin', 'revokeAllsPerLogin', 'auditQueriesPerLogin', 'auditRetentionDays', 'auditEventsPerSession', 'tombstoneHours', 'nearCacheEntries',
  'redisOverhead', 'headroom', 'replicasPerMaster']
const SHARES = ['logoutShare', 'evictionShare', 'touchShare', 'nearCacheHitRatio']
const POSITIVE = ['cleanupIntervalS', 'targetUtilization', 'maxMemoryPerMasterGiB', 'coreSpeed', 'nodeCoresPerInstance', 'auditCapPerUser']

const GB = 1024 ** 3
/** Expired sessions one cleanup script ends (the cleanup's batch, lib/core/cleanup.ts): one write per batch. */
const CLEANUP_BATCH = 500

/** The parameters with their defaults, or a RangeError naming the first bad one. */
export function validateInput (input) {
  const params = { ...DEFAULTS, ...input }
  if (params.users === undefined) throw new RangeError('users: required (the number of users with at least one session)')
  for (const name of [...NON_NEGATIVE, ...POSITIVE, 'auditEventsPerUser', 'nodeUsPerRequest']) {
    const value = params[name]
    if (value === null && (name === 'auditEventsPerUser' || name === 'nodeUsPerRequest')) continue
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new RangeError(`${name}: expected a finite number, got ${JSON.stringify(value)}`)
    if (value < 0) throw new RangeError(`${name}: must not be negative, got ${value}`)
  }
  for (const name of POSITIVE) if (params[name] <= 0) throw new RangeError(`${name}: must be greater than 0, got ${params[name]}`)
  for (const name of SHARES) if (params[name] > 1) throw new RangeError(`${name}: a share between 0 and 1, got ${params[name]}`)
  if (params.targetUtilization > 1) throw new RangeError(`targetUtilization: between 0 and 1, got ${params.targetUtilization}`)
  if (params.users > 0 && params.sessionsPerUser < 1) throw new RangeError(`sessionsPerUser: at least 1 (an average over users who have a session), got ${params.sessionsPerUser}`)
  if (params.logoutShare + params.evictionShare > 1) throw new RangeError('logoutShare + evictionShare: at most 1 (every session ends once)')
  return params
}

function unit (units, name) {
  const op = units.ops?.[name]
  if (op === undefined || typeof op.redisCpuUs !== 'number' || typeof op.roundTrips !== 'number') {
    throw new RangeError(`units: ops.${name} needs redisCpuUs and roundTrips (regenerate with npm run capacity:measure)`)
  }
  return op
}

/** Redis CPU, µs, a node spends reporting one write to one listening instance (the Cluster near cache). */
function broadcastUnit (units) {
  const value = units.nearCacheBroadcast?.redisCpuUsPerWritePerInstance
  if (typeof value !== 'number') throw new RangeError('units: nearCacheBroadcast.redisCpuUsPerWritePerInstance missing (regenerate with npm run capacity:measure)')
  return value
}

function memoryUnit (units, name) {
  const value = units.memory?.[name]
  if (typeof value !== 'number') throw new RangeError(`units: memory.${name} missing (regenerate with npm run capacity:measure)`)
  return value
}

/**
 * The plan for one deployment. `input` holds the load (users, rps, loginsPerS, ... see DEFAULTS), `units` the
 * measured unit costs. Returns every intermediate figure, unrounded except the counts (cores, masters, instances),
 * which are rounded up.
 */
export function plan (input, units) {
  const p = validateInput(input)
  const speed = p.coreSpeed
  const loginsPlain = p.loginsPerS * (1 - p.evictionShare)
  const loginsEvict = p.loginsPerS * p.evictionShare
  const touches = p.rps * p.touchShare
  const plain = p.rps - touches
  const nearHits = plain * p.nearCacheHitRatio
  const logoutsPerS = p.loginsPerS * p.logoutShare
  // Steady state: every session created ends once, by a logout, an eviction or its deadline.
  const expiredPerS = p.loginsPerS * (1 - p.logoutShare - p.evictionShare)
  const endedPerS = p.loginsPerS

  const rates = {
    request: plain - nearHits,
    requestTouch: touches,
    nearCacheHit: nearHits,
    login: loginsPlain,
    loginEvict: loginsEvict,
    logout: logoutsPerS,
    list: p.loginsPerS * p.listsPerLogin,
    revokeAll: p.loginsPerS * p.revokeAllsPerLogin,
    auditQuery: p.loginsPerS * p.auditQueriesPerLogin,
    cleanup: expiredPerS
  }
  const cleanupUnit = units.cleanup?.perExpired ?? unit(units, 'cleanup')
  const idleRun = units.cleanup?.idleRun ?? { redisCpuUs: 0, roundTrips: 0 }
  const costOf = (name) => name === 'cleanup' ? cleanupUnit : unit(units, name)

  const operations = {}
  let redisUsPerS = 0
  let roundTripsPerS = 0
  let nodeStoreUsPerS = 0
  for (const name of OPERATIONS) {
    const cost = costOf(name)
    const redisUs = rates[name] * cost.redisCpuUs / speed
    operations[name] = { perSecond: rates[name], redisCpuUsEach: cost.redisCpuUs / speed, roundTripsEach: cost.roundTrips, redisCpuUsPerS: redisUs }
    redisUsPerS += redisUs
    roundTripsPerS += rates[name] * cost.roundTrips
    // Requests are priced by the whole-request Node figure below; the other operations by their store-side CPU.
    if (name !== 'request' && name !== 'requestTouch' && name !== 'nearCacheHit') nodeStoreUsPerS += rates[name] * (cost.nodeCpuUs ?? 0) / speed
  }
  // The cleanup job's fixed price: one run per interval visits every shard whatever it finds.
  const idleUsPerS = idleRun.redisCpuUs / p.cleanupIntervalS / speed
  operations.cleanupRuns = { perSecond: 1 / p.cleanupIntervalS, redisCpuUsEach: idleRun.redisCpuUs / speed, roundTripsEach: idleRun.roundTrips, redisCpuUsPerS: idleUsPerS }
  redisUsPerS += idleUsPerS
  roundTripsPerS += idleRun.roundTrips / p.cleanupIntervalS

  const nodeUsPerRequest = p.nodeUsPerRequest ?? units.node?.cpuUsPerRequest
  if (typeof nodeUsPerRequest !== 'number') throw new RangeError('units: node.cpuUsPerRequest missing (or pass nodeUsPerRequest)')
  const nodeUsPerS = p.rps * nodeUsPerRequest / speed + nodeStoreUsPerS
  const nodeCores = nodeUsPerS / 1e6 / p.targetUtilization
  const appInstances = Math.max(p.rps > 0 || p.loginsPerS > 0 ? 1 : 0, Math.ceil(nodeCores / p.nodeCoresPerInstance))

  // Memory. userWith1Session holds a session, its login event and its device; each further session adds
  // perExtraSession (its record, index and queue entries, login event and device).
  const sessions = p.users * p.sessionsPerUser
  const retentionS = p.auditRetentionDays * 86_400
  const eventsPerS = p.loginsPerS * p.auditEventsPerSession
  const auditEventsPerUser = p.auditEventsPerUser ?? (p.users === 0 ? 0 : Math.min(p.auditCapPerUser, eventsPerS * retentionS / p.users))
  const extraEventsPerUser = Math.max(0, auditEventsPerUser - p.sessionsPerUser)
  const tombstones = endedPerS * p.tombstoneHours * 3600
  const memory = {
    sessionsBytes: p.users * (memoryUnit(units, 'userWith1Session') + (p.sessionsPerUser - 1) * memoryUnit(units, 'perExtraSession')),
    auditBytes: p.users * extraEventsPerUser * memoryUnit(units, 'perAuditEvent'),
    tombstoneBytes: tombstones * memoryUnit(units, 'perTombstone'),
    trackingBytes: 0
  }

  const maxBytesPerMaster = p.maxMemoryPerMasterGiB * GB
  const totalOf = (data) => data * (1 + p.redisOverhead) * (1 + p.headroom)
  // The near cache. On one Redis, each app instance's entries are keys in its tracking table. On a Cluster there is
  // no table (broadcast tracking), but the node that runs a write script reports it to every instance.
  if (p.nearCacheHitRatio > 0) {
    const trackingBytes = appInstances * p.nearCacheEntries * memoryUnit(units, 'trackingPerKey')
    const data = memory.sessionsBytes + memory.auditBytes + memory.tombstoneBytes + trackingBytes
    if (redisUsPerS / 1e6 / p.targetUtilization <= 1 && totalOf(data) <= maxBytesPerMaster) {
      memory.trackingBytes = trackingBytes
    } else {
      const writesPerS = touches + loginsPlain + loginsEvict + logoutsPerS + rates.revokeAll + expiredPerS / CLEANUP_BATCH
      const each = broadcastUnit(units) / speed
      operations.nearCacheBroadcast = { perSecond: writesPerS * appInstances, redisCpuUsEach: each, roundTripsEach: 0, redisCpuUsPerS: writesPerS * appInstances * each }
      redisUsPerS += writesPerS * appInstances * each
    }
  }
  for (const op of Object.values(operations)) op.share = redisUsPerS === 0 ? 0 : op.redisCpuUsPerS / redisUsPerS
  const redisCores = redisUsPerS / 1e6 / p.targetUtilization

  const dataBytes = memory.sessionsBytes + memory.auditBytes + memory.tombstoneBytes + memory.trackingBytes
  const overheadBytes = dataBytes * p.redisOverhead
  const headroomBytes = (dataBytes + overheadBytes) * p.headroom
  const totalBytes = dataBytes + overheadBytes + headroomBytes

  const mastersForCpu = Math.ceil(redisCores)
  const mastersForMemory = Math.ceil(totalBytes / maxBytesPerMaster)
  // A Cluster needs three masters for a majority to survive one failure. Its masters are not equally loaded: each
  // holds the users of its shard tags, and the 4096 tags fall unevenly on contiguous slot ranges (slots.mjs), so
  // masters are added until the busiest one fits both limits.
  const isCluster = Math.max(1, mastersForCpu, mastersForMemory) > 1
  let clusterMasters = isCluster ? Math.max(3, mastersForCpu, mastersForMemory) : 1
  let skew = isCluster ? spread(clusterMasters).maxOverMean : 1
  const isBusiestTooBig = () => totalBytes / clusterMasters * skew > maxBytesPerMaster || redisCores / clusterMasters * skew > 1
  if (isCluster) {
    while (isBusiestTooBig()) {
      clusterMasters++
      skew = spread(clusterMasters).maxOverMean
    }
  }

  const cleanupRate = units.cleanup?.expiredPerSecond
  const cleanupPerHour = {
    expired: expiredPerS * 3600,
    redisCpuSeconds: (expiredPerS * 3600 * cleanupUnit.redisCpuUs + (3600 / p.cleanupIntervalS) * idleRun.redisCpuUs) / speed / 1e6,
    roundTrips: expiredPerS * 3600 * cleanupUnit.roundTrips + (3600 / p.cleanupIntervalS) * idleRun.roundTrips,
    // One instance at a time holds the fleet-wide lock; this is how long it needs per hour at the measured rate.
    lockSeconds: typeof cleanupRate === 'number' && cleanupRate > 0 ? expiredPerS * 3600 / cleanupRate : null
  }
  const auditPerHour = {
    events: eventsPerS * 3600,
    bytesWritten: eventsPerS * 3600 * memoryUnit(units, 'perAuditEvent'),
    eventsPerUserKept: auditEventsPerUser
  }

  return {
    params: p,
    rates: { ...rates, logoutsPerS, expiredPerS, endedPerS },
    operations,
    redis: {
      cpuUsPerS: redisUsPerS,
      roundTripsPerS,
      cores: redisCores,
      mastersForCpu,
      mastersForMemory,
      masters: clusterMasters,
      isCluster,
      replicas: clusterMasters * p.replicasPerMaster,
      memoryPerMasterBytes: totalBytes / clusterMasters,
      busiestMasterShare: skew,
      busiestMasterBytes: totalBytes / clusterMasters * skew,
      busiestMasterUtilization: redisUsPerS / 1e6 / clusterMasters * skew
    },
    memory: { ...memory, sessions, tombstones, auditEventsPerUser, dataBytes, overheadBytes, headroomBytes, totalBytes },
    node: { usPerRequest: nodeUsPerRequest, usPerS: nodeUsPerS, cores: nodeCores, appInstances },
    cleanupPerHour,
    auditPerHour
  }
}

/** Requests/s one Redis core sustains for a mix { op: share } (shares sum to 1), from the unit costs. */
export function saturationThroughput (mix, units) {
  let usPerOp = 0
  let total = 0
  for (const [name, share] of Object.entries(mix)) {
    if (!(share >= 0)) throw new RangeError(`mix.${name}: a share >= 0, got ${share}`)
    usPerOp += share * unit(units, name).redisCpuUs
    total += share
  }
  if (Math.abs(total - 1) > 1e-9) throw new RangeError(`mix: shares must sum to 1, got ${total}`)
  return 1e6 / usPerOp
}

/** Predicted used_memory growth for `users` users with one session each (the validation's case). */
export function predictedMemory (users, units) {
  return users * memoryUnit(units, 'userWith1Session')
}
