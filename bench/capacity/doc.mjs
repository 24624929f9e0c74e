// Regenerates the tables of docs/capacity.md from bench/results/capacity-units.json (npm run capacity:measure) and
// bench/results/capacity-validation.json (npm run capacity:validate), through the model and the slot arithmetic:
//   npm run capacity:doc
// Each table sits between `<!-- capacity:NAME -->` and `<!-- /capacity:NAME -->`; the prose around them is by hand.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { plan } from './model.mjs'
import { distinctSlots, spread } from './slots.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.join(here, '..', '..')
const DOC = path.join(root, 'docs', 'capacity.md')
const units = JSON.parse(fs.readFileSync(path.join(root, 'bench', 'results', 'capacity-units.json'), 'utf8'))
const validationPath = path.join(root, 'bench', 'results', 'capacity-validation.json')
const validation = fs.existsSync(validationPath) ? JSON.parse(fs.readFileSync(validationPath, 'utf8')) : null

/** The reference deployments: 2 sessions per user, one authenticated request/s per 200 users, one login/s per 20,000. */
export const DEPLOYMENTS = [
  { name: '10k users', input: { users: 10_000, sessionsPerUser: 2, rps: 50, loginsPerS: 0.5 } },
  { name: '1M users', input: { users: 1_000_000, sessionsPerUser: 2, rps: 5000, loginsPerS: 50 } },
  { name: '10M users (issue 17)', input: { users: 10_000_000, sessionsPerUser: 2, rps: 50_000, loginsPerS: 500 } },
  { name: '100M users', input: { users: 100_000_000, sessionsPerUser: 2, rps: 500_000, loginsPerS: 5000 } }
]
const FLAG = { users: 'users', sessionsPerUser: 'sessions-per-user', rps: 'rps', loginsPerS: 'logins-per-s' }

const n = (value, digits = 0) => Number(value.toFixed(digits)).toLocaleString('en-US', { maximumFractionDigits: digits })
const GIB = 1024 ** 3
const gib = (bytes) => bytes >= GIB ? `${n(bytes / GIB, 1)} GiB` : `${n(bytes / 1024 ** 2, 0)} MiB`
const mib = (bytes) => `${n(bytes / 1024 ** 2, 1)} MiB`
const pct = (value) => `${value >= 0 ? '+' : ''}${n(value * 100, 1)}%`
const commandLine = (input) => `npm run capacity -- ${Object.entries(input).map(([key, value]) => `--${FLAG[key]} ${value}`).join(' ')}`

function unitsTable () {
  const { ops, memory, cleanup, node, machine } = units
  const rows = [
    ['authenticated request, no touch due', 'request'],
    ['authenticated request, touch due', 'requestTouch'],
    ['near-cache hit', 'nearCacheHit'],
    ['login, no eviction', 'login'],
    ['login at the limit (evicts the oldest)', 'loginEvict'],
    ['logout', 'logout'],
    ['list (user with 2 sessions)', 'list'],
    ['revoke all (user with 5 sessions)', 'revokeAll'],
    ['audit query (limit 50)', 'auditQuery']
  ]
  const lines = [
    `Measured ${units.generatedAt} by \`${units.command}\` in ${units.seconds} s: ${machine.cpus} x ${machine.cpuModel}, node ${machine.node}, Redis ${machine.redis}, load average ${machine.loadAverage.join(' ')} at the start, ${machine.loadAverageAtEnd.join(' ')} at the end; ${units.settings.opsPerType} operations per type, ${units.settings.concurrency} in flight.`,
    '',
    '| operation | Redis CPU µs (used_cpu) | execution µs (commandstats) | round trips | Node µs (store call) |',
    '|---|---:|---:|---:|---:|'
  ]
  for (const [label, name] of rows) {
    const op = ops[name]
    lines.push(`| ${label} | ${n(op.redisCpuUs, 1)} | ${n(op.execUs, 1)} | ${n(op.roundTrips, 2)} | ${n(op.nodeCpuUs, 0)} |`)
  }
  lines.push(`| cleanup, per expired session | ${n(cleanup.perExpired.redisCpuUs, 1)} | ${n(cleanup.perExpired.execUs, 1)} | ${n(cleanup.perExpired.roundTrips, 3)} | ${n(cleanup.perExpired.nodeCpuUs, 1)} |`)
  lines.push(`| cleanup run that finds nothing (${n(cleanup.idleRun.liveSessions)} live sessions) | ${n(cleanup.idleRun.redisCpuUs)} | ${n(cleanup.idleRun.execUs)} | ${n(cleanup.idleRun.roundTrips)} | |`)
  lines.push(`| PING (the per-round-trip floor) | ${n(units.rawPing.usedCpuUs, 1)} | ${n(units.rawPing.execUs, 1)} | 1 | ${n(units.rawPing.nodeCpuUs, 0)} |`)
  lines.push('')
  if (ops.requestBatched !== undefined) {
    lines.push(`Every type above is measured with \`batchWrites: false\`: each command sent in a write of its own, the most it costs. With batching (the default: the commands of one event-loop turn go to a node in one write), a request cost ${n(ops.requestBatched.redisCpuUs, 1)} µs of Redis CPU in the same measurement instead of ${n(ops.request.redisCpuUs, 1)}. How much of that a deployment gets depends on how many commands each app instance sends one node per turn, which grows with its load and shrinks as a Cluster spreads them over more masters, so the plans below do not count it: their Redis figures are upper bounds.`)
    lines.push('')
  }
  lines.push(`Cleanup rate: ${n(cleanup.expiredPerSecond)} expired sessions/s (one \`manager.cleanup()\` over ${n(cleanup.expiredSessions)}). Node CPU per authenticated HTTP request: ${n(node.cpuUsPerRequest, 1)} µs (${node.source})${node.cpuUsPerRequestNearCache === null ? '' : `; ${n(node.cpuUsPerRequestNearCache, 1)} µs with the near cache`}.`)
  lines.push('')
  lines.push('| memory | bytes |')
  lines.push('|---|---:|')
  const memoryRows = [
    ['a user with 1 session (record, index, queue entry, login event, device; defaults)', memory.userWith1Session],
    ['a user with 5 sessions (5 devices)', memory.userWith5Sessions],
    ['each further session of a user', memory.perExtraSession],
    ['a user with 1 session, audit and known devices off', memory.sessionWithoutAuditOrDevices],
    ['the first remembered device of a user', memory.perDevice],
    ['the first audit event of a user (the timeline key): the first row less the two above', memory.userWith1Session - memory.sessionWithoutAuditOrDevices - memory.perDevice],
    ['each further audit event (an entry the size of a login event)', memory.perAuditEvent],
    ['an ended-session tombstone (kept 24 h)', memory.perTombstone],
    ['a key in the near cache\'s tracking table', memory.trackingPerKey]
  ]
  for (const [label, value] of memoryRows) lines.push(`| ${label} | ${n(value)} |`)
  lines.push('')
  lines.push(`Keys of one user with one session (\`MEMORY USAGE\`, ${memory.breakdown.user}); per-shard keys naming no user (${memory.breakdown.sharedKeys} of them) add ${n(memory.breakdown.sharedBytesPerUser, 1)} B per user at ${n(units.settings.users)} users:`)
  lines.push('')
  lines.push('| key | type / encoding | bytes |')
  lines.push('|---|---|---:|')
  for (const [key, value] of Object.entries(memory.breakdown.userKeys)) lines.push(`| \`${key}\` | ${value.type} / ${value.encoding} | ${n(value.bytes)} |`)
  return lines.join('\n')
}

function deploymentsTable () {
  const plans = DEPLOYMENTS.map((d) => ({ ...d, plan: plan(d.input, units) }))
  const row = (label, cell) => `| ${label} | ${plans.map((p) => cell(p.plan)).join(' | ')} |`
  const lines = [
    `| | ${plans.map((p) => p.name).join(' | ')} |`,
    `|---|${plans.map(() => '---:').join('|')}|`,
    row('sessions', (p) => n(p.memory.sessions)),
    row('requests/s, logins/s', (p) => `${n(p.params.rps)}, ${n(p.params.loginsPerS, 1)}`),
    row('memory: sessions', (p) => gib(p.memory.sessionsBytes)),
    row('memory: audit beyond the logins', (p) => `${gib(p.memory.auditBytes)} (${n(p.memory.auditEventsPerUser, 1)} events/user)`),
    row('memory: tombstones (24 h)', (p) => gib(p.memory.tombstoneBytes)),
    row('memory: data + 25% overhead + 50% headroom', (p) => `**${gib(p.memory.totalBytes)}**`),
    row('Redis CPU busy (cores)', (p) => n(p.redis.cpuUsPerS / 1e6, 3)),
    row('Redis round trips/s', (p) => n(p.redis.roundTripsPerS)),
    row('Redis at 50% utilisation', (p) => p.redis.isCluster ? `**Cluster, ${p.redis.masters} masters + ${p.redis.replicas} replicas**` : '**1 primary + 1 replica**'),
    row('memory per Redis node (mean; busiest)', (p) => p.redis.isCluster ? `${gib(p.redis.memoryPerMasterBytes)}; ${gib(p.redis.busiestMasterBytes)}` : gib(p.redis.memoryPerMasterBytes)),
    row('app instances (1 core, 50%)', (p) => `**${n(p.node.appInstances)}** (${n(p.node.cores, 2)} cores)`),
    row('cleanup per hour: expired / Redis CPU / lock held', (p) => `${n(p.cleanupPerHour.expired)} / ${n(p.cleanupPerHour.redisCpuSeconds, 1)} s / ${n(p.cleanupPerHour.lockSeconds ?? 0, 1)} s`),
    row('audit per hour: events / bytes written', (p) => `${n(p.auditPerHour.events)} / ${gib(p.auditPerHour.bytesWritten)}`),
    row('share of Redis CPU: requests / touches / logins / cleanup', (p) => [p.operations.request, p.operations.requestTouch, p.operations.login, p.operations.cleanup].map((o) => `${n(o.share * 100, 0)}%`).join(' / '))
  ]
  lines.push('')
  lines.push('Command lines (everything else at its default, printed by the command as its assumptions):')
  lines.push('')
  lines.push('```sh')
  for (const d of plans) lines.push(commandLine(d.input))
  lines.push('```')
  return lines.join('\n')
}

function clusterTable () {
  const big = plan(DEPLOYMENTS.at(-1).input, units)
  const masters = big.redis.masters
  const s = spread(masters)
  const usersPerTag = big.params.users / 4096
  return [
    `- **${masters} masters, ${big.redis.replicas} replicas** (one per master, in another zone); ${gib(big.redis.memoryPerMasterBytes)} per node with overhead and headroom (${gib(big.memory.dataBytes / masters)} of data).`,
    `- Per master: ${n(big.redis.cpuUsPerS / 1e6 / masters * 100, 0)}% of one core on average at peak, ${n(big.redis.roundTripsPerS / masters)} round trips/s.`,
    `- Tags per master: ${s.min} to ${s.max} (mean ${n(s.mean, 1)}), so the busiest master holds ${n(s.maxOverMean * 100, 1)}% of the mean load and data (${gib(big.redis.busiestMasterBytes)}, ${n(big.redis.busiestMasterUtilization * 100, 0)}% of a core at peak); the model adds masters until that one fits. ${n(usersPerTag)} users per tag on average.`
  ].join('\n')
}

function slotsTable () {
  const lines = [
    `The 4096 tags hash (CRC16) to ${distinctSlots()} distinct slots of 16384. Tags per master, masters holding contiguous equal slot ranges (\`node bench/capacity/slots.mjs\`):`,
    '',
    '| masters | mean | min | max | max / mean |',
    '|---:|---:|---:|---:|---:|'
  ]
  for (const masters of [3, 6, 12, 24, 48, 96]) {
    const s = spread(masters)
    lines.push(`| ${masters} | ${n(s.mean, 1)} | ${s.min} | ${s.max} | ${n(s.maxOverMean * 100, 1)}% |`)
  }
  return lines.join('\n')
}

function validationTable () {
  if (validation === null) return '_Not run yet: `npm run capacity:validate`._'
  const { memory, throughput, machine } = validation
  const lines = [
    `Run ${validation.generatedAt} by \`${validation.command}\` with the unit costs of ${validation.units.generatedAt}; load average ${machine.loadAverage.join(' ')} at the start, ${machine.loadAverageAtEnd.join(' ')} at the end.`,
    '',
    '| check | predicted | measured | error |',
    '|---|---:|---:|---:|'
  ]
  if (memory !== undefined) {
    lines.push(`| used_memory, ${n(memory.sessions)} users with one session | ${mib(memory.predictedBytes)} | ${mib(memory.measuredBytes)} (${n(memory.measuredBytes / memory.sessions)} B/user) | ${pct(memory.error)} |`)
  }
  lines.push(`| operations per second of one Redis core, the mix below | ${n(throughput.predictedPerCore)} | ${n(throughput.measuredPerCore)} | ${pct(throughput.error)} |`)
  lines.push('')
  lines.push(`Mix: ${Object.entries(throughput.mix).map(([name, share]) => `${name} ${n(share * 100, 1)}%`).join(', ')}. ${n(throughput.operations)} operations in ${n(throughput.seconds, 1)} s (${n(throughput.opsPerSecond)}/s), ${n(throughput.redisCpuSeconds, 2)} s of Redis CPU: Redis reached ${n(throughput.redisUtilization * 100, 0)}% of one core, the load generators taking the rest of this 2-core machine; "per second of one core" is operations / Redis CPU seconds.`)
  if (memory !== undefined) lines.push(`The ${n(memory.sessions)} sessions were created with \`manager.create\` in ${n(memory.createSeconds)} s (${n(memory.sessions / memory.createSeconds)}/s).`)
  return lines.join('\n')
}

function limitsTable () {
  const { cleanup, memory } = units
  return [
    `- Cleanup: ${n(cleanup.expiredPerSecond)} expired sessions/s for the one instance holding the lock (${n(cleanup.perExpired.redisCpuUs, 1)} µs of Redis CPU each); a run that finds nothing costs ${n(cleanup.idleRun.redisCpuUs / 1000, 1)} ms of Redis CPU and ${n(cleanup.idleRun.roundTrips)} round trips (${n(cleanup.idleRun.seconds, 2)} s).`,
    `- Near cache: ${n(memory.trackingPerKey)} B of Redis memory per tracked key (used_memory over ${n(units.settings.opsPerType)} keys read through the cache; \`tracking_total_keys\` was ${n(memory.trackedKeys)}).`,
    `- Near cache on a Cluster: ${n(units.nearCacheBroadcast.redisCpuUsPerWritePerInstance, 2)} µs of Redis CPU per write and listening app instance (a login ${n(units.nearCacheBroadcast.loginUsQuiet, 1)} µs alone, ${n(units.nearCacheBroadcast.loginUsHeard, 1)} µs with ${units.nearCacheBroadcast.listeners} instances listening; writes one at a time, each its own message; the model charges it for every write script when the plan is a Cluster).`
  ].join('\n')
}

const SECTIONS = { units: unitsTable, deployments: deploymentsTable, cluster: clusterTable, slots: slotsTable, validation: validationTable, limits: limitsTable }

let doc = fs.readFileSync(DOC, 'utf8')
for (const [name, render] of Object.entries(SECTIONS)) {
  const pattern = new RegExp(`(<!-- capacity:${name} -->)[\\s\\S]*?(<!-- /capacity:${name} -->)`)
  if (!pattern.test(doc)) throw new Error(`docs/capacity.md: no <!-- capacity:${name} --> ... <!-- /capacity:${name} --> section`)
  doc = doc.replace(pattern, (_, open, close) => `${open}\n${render()}\n${close}`)
}
fs.writeFileSync(DOC, doc)
console.log(`docs/capacity.md: ${Object.keys(SECTIONS).join(', ')} regenerated from ${units.generatedAt}${validation === null ? '' : ` and the validation of ${validation.generatedAt}`}`)
