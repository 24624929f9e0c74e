// The capacity model on the command line (issue 17):
//   npm run capacity -- --users 10000000 --sessions-per-user 2 --rps 50000 --logins-per-s 500 [--json]
// Unit costs come from bench/results/capacity-units.json (`npm run capacity:measure`) or --units <path>.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { DEFAULTS, plan, validateInput } from './model.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
export const DEFAULT_UNITS = path.join(here, '..', 'results', 'capacity-units.json')

/** CLI flag -> model parameter; every one takes a number. */
const FLAGS = {
  users: 'users',
  'sessions-per-user': 'sessionsPerUser',
  rps: 'rps',
  'logins-per-s': 'loginsPerS',
  'logout-share': 'logoutShare',
  'eviction-share': 'evictionShare',
  'touch-share': 'touchShare',
  'near-cache-hit-ratio': 'nearCacheHitRatio',
  'near-cache-entries': 'nearCacheEntries',
  'lists-per-login': 'listsPerLogin',
  'revoke-alls-per-login': 'revokeAllsPerLogin',
  'audit-queries-per-login': 'auditQueriesPerLogin',
  'audit-events-per-user': 'auditEventsPerUser',
  'audit-retention-days': 'auditRetentionDays',
  'audit-events-per-session': 'auditEventsPerSession',
  'tombstone-hours': 'tombstoneHours',
  'cleanup-interval-s': 'cleanupIntervalS',
  'target-utilization': 'targetUtilization',
  'redis-overhead': 'redisOverhead',
  headroom: 'headroom',
  'max-memory-per-master-gib': 'maxMemoryPerMasterGiB',
  'replicas-per-master': 'replicasPerMaster',
  'core-speed': 'coreSpeed',
  'node-cores-per-instance': 'nodeCoresPerInstance',
  'node-us-per-request': 'nodeUsPerRequest'
}

export class UsageError extends Error {}

export function parse (argv) {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        ...Object.fromEntries(Object.keys(FLAGS).map((flag) => [flag, { type: 'string' }])),
        units: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false }
      },
      strict: true,
      allowPositionals: false
    })
  } catch (error) {
    throw new UsageError(error.message)
  }
  const { values } = parsed
  const input = {}
  for (const [flag, name] of Object.entries(FLAGS)) {
    if (values[flag] === undefined) continue
    const number = Number(values[flag])
    if (values[flag].trim() === '' || !Number.isFinite(number)) throw new UsageError(`--${flag}: expected a number, got ${JSON.stringify(values[flag])}`)
    input[name] = number
  }
  return { input, unitsPath: values.units ?? DEFAULT_UNITS, isJson: values.json, isHelp: values.help }
}

const GB = 1024 ** 3
const round = (value, digits = 0) => Number(value.toFixed(digits)).toLocaleString('en-US', { maximumFractionDigits: digits })
const bytes = (value) => value >= GB / 10 ? `${round(value / GB, 2)} GiB` : `${round(value / 1024 ** 2, 1)} MiB`

export function format (result, units, unitsPath) {
  const { params: p, redis, memory, node, cleanupPerHour, auditPerHour, operations } = result
  const lines = []
  const add = (line = '') => lines.push(line)
  add(`Capacity plan: ${round(p.users)} users x ${p.sessionsPerUser} sessions = ${round(memory.sessions)} sessions, ${round(p.rps)} authenticated requests/s, ${round(p.loginsPerS)} logins/s`)
  add()
  add('Redis memory')
  add(`  sessions (records, indexes, queues, first events, devices)  ${bytes(memory.sessionsBytes)}`)
  add(`  audit (${round(memory.auditEventsPerUser, 1)} events kept per user, ${round(Math.max(0, memory.auditEventsPerUser - p.sessionsPerUser), 1)} beyond the logins)  ${bytes(memory.auditBytes)}`)
  add(`  tombstones of ended sessions (${round(memory.tombstones)} for ${p.tombstoneHours} h)  ${bytes(memory.tombstoneBytes)}`)
  add(`  near-cache tracking table (one Redis; a Cluster keeps none, see nearCacheBroadcast below)  ${bytes(memory.trackingBytes)}`)
  add(`  data ${bytes(memory.dataBytes)} + Redis overhead ${round(p.redisOverhead * 100)}% ${bytes(memory.overheadBytes)} + headroom ${round(p.headroom * 100)}% ${bytes(memory.headroomBytes)} = ${bytes(memory.totalBytes)}`)
  add()
  add(`Redis CPU: ${round(redis.cpuUsPerS / 1e6, 2)} cores busy, ${round(redis.roundTripsPerS)} round trips/s; at ${round(p.targetUtilization * 100)}% target utilisation ${round(redis.cores, 2)} cores`)
  add(`  masters needed: ${redis.mastersForCpu} for CPU, ${redis.mastersForMemory} for memory (at most ${p.maxMemoryPerMasterGiB} GiB each)`)
  add(redis.isCluster
    ? `  => Redis Cluster: ${redis.masters} masters + ${redis.replicas} replicas, ${bytes(redis.memoryPerMasterBytes)} per node on average; the busiest master holds ${round(redis.busiestMasterShare * 100, 1)}% of the mean (its share of the 4096 shard tags): ${bytes(redis.busiestMasterBytes)}, ${round(redis.busiestMasterUtilization * 100)}% of a core`
    : `  => one Redis (standalone or Sentinel) + ${redis.replicas} replica(s), ${bytes(redis.memoryPerMasterBytes)}`)
  add()
  add(`App: ${round(node.usPerRequest, 1)} us Node CPU per request + store-side CPU of other operations = ${round(node.cores, 2)} cores at ${round(p.targetUtilization * 100)}%  => ${node.appInstances} instance(s) of ${p.nodeCoresPerInstance} core(s)`)
  add('  (the plugin and Fastify only: your handlers and password hashing come on top)')
  add()
  add('Share of Redis CPU by operation')
  add(`  ${'operation'.padEnd(14)} ${'per s'.padStart(10)} ${'us each'.padStart(9)} ${'RT each'.padStart(8)} ${'share'.padStart(7)}`)
  for (const [name, op] of Object.entries(operations)) {
    add(`  ${name.padEnd(14)} ${round(op.perSecond, op.perSecond < 10 ? 3 : 0).padStart(10)} ${round(op.redisCpuUsEach, 1).padStart(9)} ${round(op.roundTripsEach, 2).padStart(8)} ${(round(op.share * 100, 1) + '%').padStart(7)}`)
  }
  add()
  add(`Cleanup per hour: ${round(cleanupPerHour.expired)} expired sessions, ${round(cleanupPerHour.redisCpuSeconds, 1)} s of Redis CPU, ${round(cleanupPerHour.roundTrips)} round trips` +
    (cleanupPerHour.lockSeconds === null ? '' : `, ${round(cleanupPerHour.lockSeconds, 1)} s of the fleet-wide lock at the measured ${round(units.cleanup.expiredPerSecond)} sessions/s`))
  add(`Audit per hour: ${round(auditPerHour.events)} events, ${bytes(auditPerHour.bytesWritten)} written (kept ${p.auditRetentionDays} days, at most ${p.auditCapPerUser} per user)`)
  add()
  add('Assumptions (change them with the flags of the same name)')
  add(`  touch-share ${p.touchShare}, near-cache-hit-ratio ${p.nearCacheHitRatio}, logout-share ${p.logoutShare}, eviction-share ${p.evictionShare} (the rest of the sessions expire)`)
  add(`  lists-per-login ${p.listsPerLogin}, revoke-alls-per-login ${p.revokeAllsPerLogin}, audit-queries-per-login ${p.auditQueriesPerLogin}, audit-events-per-session ${p.auditEventsPerSession}`)
  add(`  redis-overhead ${p.redisOverhead} (fragmentation, buffers), headroom ${p.headroom} (copy-on-write during a save or full sync), target-utilization ${p.targetUtilization}, core-speed ${p.coreSpeed}`)
  add(`  cleanup-interval-s ${p.cleanupIntervalS}, tombstone-hours ${p.tombstoneHours}, replicas-per-master ${p.replicasPerMaster}`)
  add('Sources')
  add(`  unit costs: ${path.relative(process.cwd(), unitsPath) || unitsPath}, measured ${units.generatedAt} by ${units.command ?? 'npm run capacity:measure'} on ${units.machine?.cpus} x ${units.machine?.cpuModel}, node ${units.machine?.node}, redis ${units.machine?.redis}, load average ${units.machine?.loadAverage?.join(' ')}`)
  add(`  Redis CPU per operation: ${units.settings?.redisCpuUs ?? 'see the units file'}`)
  add(`  Node CPU per request: ${p.nodeUsPerRequest === null ? units.node?.source : '--node-us-per-request'}`)
  return lines.join('\n')
}

export function main (argv, { stdout = process.stdout, stderr = process.stderr } = {}) {
  try {
    const { input, unitsPath, isJson, isHelp } = parse(argv)
    if (isHelp) {
      stdout.write(`usage: npm run capacity -- --users N [--${Object.keys(FLAGS).filter((flag) => flag !== 'users').join(' N] [--')} N] [--units path] [--json]\n` +
        `defaults: ${JSON.stringify(DEFAULTS)}\n`)
      return 0
    }
    validateInput(input)
    let units
    try {
      units = JSON.parse(fs.readFileSync(unitsPath, 'utf8'))
    } catch (error) {
      throw new UsageError(`--units: cannot read ${unitsPath} (${error.code ?? error.message}); run npm run capacity:measure first`)
    }
    const result = plan(input, units)
    stdout.write((isJson ? JSON.stringify({ units: { path: unitsPath, generatedAt: units.generatedAt, machine: units.machine }, ...result }, null, 2) : format(result, units, unitsPath)) + '\n')
    return 0
  } catch (error) {
    if (!(error instanceof UsageError) && !(error instanceof RangeError)) throw error
    stderr.write(`capacity: ${error.message}\n`)
    return 2
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv.slice(2))
