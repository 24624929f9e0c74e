import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'tap'
import type { Units } from '../bench/capacity/model.mjs' with { 'resolution-mode': 'import' }

// The capacity model (issue 17) on fixed unit costs, checked against figures computed by hand below. No Redis.
const loadModel = () => import('../bench/capacity/model.mjs')
const loadCli = () => import('../bench/capacity/cli.mjs')
const CLI = path.join(__dirname, '..', 'bench', 'capacity', 'cli.mjs')
const GIB = 1024 ** 3
/** Equal up to floating-point rounding (1e-12 relative): the hand arithmetic is exact, the model's sums are not. */
const isClose = (actual: number, expected: number) => Math.abs(actual - expected) <= 1e-12 * Math.max(1, Math.abs(expected))

const UNITS: Units = {
  generatedAt: '2026-01-01T00:00:00.000Z',
  machine: { cpus: 2, cpuModel: 'test', node: 'v0', redis: '0', loadAverage: [0, 0, 0] },
  ops: {
    request: { redisCpuUs: 10, roundTrips: 1, nodeCpuUs: 30 },
    requestTouch: { redisCpuUs: 100, roundTrips: 2, nodeCpuUs: 60 },
    nearCacheHit: { redisCpuUs: 0, roundTrips: 0, nodeCpuUs: 5 },
    login: { redisCpuUs: 200, roundTrips: 1, nodeCpuUs: 100 },
    loginEvict: { redisCpuUs: 400, roundTrips: 1, nodeCpuUs: 100 },
    logout: { redisCpuUs: 100, roundTrips: 1, nodeCpuUs: 50 },
    list: { redisCpuUs: 50, roundTrips: 1 },
    revokeAll: { redisCpuUs: 300, roundTrips: 1 },
    auditQuery: { redisCpuUs: 50, roundTrips: 1 }
  },
  cleanup: { perExpired: { redisCpuUs: 100, roundTrips: 0.002 }, idleRun: { redisCpuUs: 360_000, roundTrips: 4096 }, expiredPerSecond: 5000 },
  memory: { userWith1Session: 1000, perExtraSession: 500, perAuditEvent: 100, perTombstone: 200, trackingPerKey: 100 },
  node: { cpuUsPerRequest: 40 },
  nearCacheBroadcast: { redisCpuUsPerWritePerInstance: 5 }
}

// 1,000,000 users x 2 sessions, 10,000 requests/s, 100 logins/s, every other parameter at its default.
const INPUT = { users: 1_000_000, sessionsPerUser: 2, rps: 10_000, loginsPerS: 100 }

test('the plan of a fixed input matches the arithmetic done by hand', async (t) => {
  const { plan } = await loadModel()
  const result = plan(INPUT, UNITS)
  // Rates: 5% of requests touch (500), 20% of logins log out (20), the other 80% expire (80).
  t.equal(result.rates.request, 9500)
  t.equal(result.rates.requestTouch, 500)
  t.equal(result.rates.logoutsPerS, 20)
  t.equal(result.rates.expiredPerS, 80)
  // Redis CPU, us/s: 9500x10 + 500x100 + 100x200 + 20x100 + 10x50 + 1x300 + 1x50 + 80x100 + 360000/3600 = 175,950.
  t.equal(result.redis.cpuUsPerS, 175_950)
  t.equal(result.redis.cores, 0.35190)
  t.equal(result.operations.request?.share, 95_000 / 175_950)
  t.equal(result.operations.cleanupRuns?.redisCpuUsPerS, 100)
  // Round trips/s: 9500 + 1000 + 100 + 20 + 10 + 1 + 1 + 80x0.002 + 4096/3600.
  t.ok(isClose(result.redis.roundTripsPerS, (10_632.16 + 4096 / 3600)))
  // Memory: sessions 1e6 x (1000 + 500); audit 200 events/s x 7 days / 1e6 users = 120.96 per user, 118.96 beyond
  // the two logins, x 100 B; tombstones 100/s x 86,400 s x 200 B.
  t.equal(result.memory.sessionsBytes, 1_500_000_000)
  t.ok(isClose(result.memory.auditEventsPerUser, 120.96))
  t.ok(isClose(result.memory.auditBytes, 11_896_000_000))
  t.equal(result.memory.tombstones, 8_640_000)
  t.equal(result.memory.tombstoneBytes, 1_728_000_000)
  t.equal(result.memory.trackingBytes, 0)
  t.ok(isClose(result.memory.dataBytes, 15_124_000_000))
  t.ok(isClose(result.memory.overheadBytes, 3_781_000_000))
  t.ok(isClose(result.memory.headroomBytes, 9_452_500_000))
  t.ok(isClose(result.memory.totalBytes, 28_357_500_000))
  // 28.36 GB is over one 25 GiB master: two for memory, one for CPU, so a Cluster of three (majority).
  t.equal(result.redis.mastersForCpu, 1)
  t.equal(result.redis.mastersForMemory, 2)
  t.equal(result.redis.isCluster, true)
  t.equal(result.redis.masters, 3)
  t.equal(result.redis.replicas, 3)
  t.ok(isClose(result.redis.memoryPerMasterBytes, 9_452_500_000))
  // Three masters with contiguous slot ranges hold 1349 to 1376 of the 4096 tags: the busiest 1376 / (4096 / 3).
  t.equal(result.redis.busiestMasterShare, 1.0078125)
  t.ok(isClose(result.redis.busiestMasterBytes, 9_452_500_000 * 1.0078125))
  // Node: 10,000 x 40 + 100 x 100 (login) + 20 x 50 (logout) = 411,000 us/s, 0.822 cores at 50%: one instance.
  t.equal(result.node.usPerS, 411_000)
  t.equal(result.node.cores, 0.822)
  t.equal(result.node.appInstances, 1)
  // Cleanup per hour: 288,000 expired x 100 us + one run of 360,000 us; 576 + 4096 round trips; 57.6 s of the lock.
  t.equal(result.cleanupPerHour.expired, 288_000)
  t.equal(result.cleanupPerHour.redisCpuSeconds, 29.16)
  t.equal(result.cleanupPerHour.roundTrips, 4672)
  t.equal(result.cleanupPerHour.lockSeconds, 57.6)
  t.equal(result.auditPerHour.events, 720_000)
  t.equal(result.auditPerHour.bytesWritten, 72_000_000)
})

test('on one Redis, the near cache takes its hits off Redis and puts its entries in the tracking table', async (t) => {
  const { plan } = await loadModel()
  // 64 GiB per master: the 28.4 GB of the input fit one Redis.
  const result = plan({ ...INPUT, nearCacheHitRatio: 0.5, maxMemoryPerMasterGiB: 64 }, UNITS)
  t.equal(result.redis.isCluster, false)
  t.equal(result.rates.nearCacheHit, 4750)
  t.equal(result.rates.request, 4750)
  t.equal(result.redis.cpuUsPerS, 175_950 - 47_500)
  // One app instance x 10,000 entries x 100 B.
  t.equal(result.memory.trackingBytes, 1_000_000)
  t.equal(result.operations.nearCacheBroadcast, undefined, 'no broadcast on one Redis')
})

test('on a Cluster, the near cache keeps no tracking table and every write is broadcast to every instance', async (t) => {
  const { plan } = await loadModel()
  const result = plan({ ...INPUT, nearCacheHitRatio: 0.5 }, UNITS)
  t.equal(result.redis.isCluster, true)
  t.equal(result.memory.trackingBytes, 0)
  // Writes/s: 500 touches + 100 logins + 20 logouts + 1 revoke-all + 80 expired / 500 per cleanup script = 621.16,
  // x 1 app instance x 5 us.
  t.ok(isClose(result.operations.nearCacheBroadcast?.perSecond ?? 0, 621.16))
  t.ok(isClose(result.operations.nearCacheBroadcast?.redisCpuUsPerS ?? 0, 3105.8))
  t.ok(isClose(result.redis.cpuUsPerS, 175_950 - 47_500 + 3105.8))
  // With 200 us per request: 10,000 x 200 + 100 x 100 + 20 x 50 = 2.011 cores busy, 4.022 at 50%: five instances,
  // and each hears every write.
  const wide = plan({ ...INPUT, nearCacheHitRatio: 0.5, nodeUsPerRequest: 200 }, UNITS)
  t.equal(wide.node.appInstances, 5)
  t.ok(isClose(wide.operations.nearCacheBroadcast?.redisCpuUsPerS ?? 0, 621.16 * 5 * 5))
  const { nearCacheBroadcast: _omitted, ...withoutUnit } = UNITS
  t.throws(() => plan({ ...INPUT, nearCacheHitRatio: 0.5 }, withoutUnit), /nearCacheBroadcast\.redisCpuUsPerWritePerInstance missing/, 'units without the broadcast cost: told to measure again')
})

test('explicit parameters override the defaults: eviction, audit events, core speed, memory per master', async (t) => {
  const { plan } = await loadModel()
  const result = plan({ ...INPUT, evictionShare: 0.5, auditEventsPerUser: 2, coreSpeed: 2, maxMemoryPerMasterGiB: 64, targetUtilization: 1 }, UNITS)
  // 50 logins/s evict (400 us), 50 do not (200 us); expired: 100 x (1 - 0.2 - 0.5) = 30/s; all CPU halved.
  t.ok(isClose(result.rates.expiredPerS, 30))
  t.ok(isClose(result.redis.cpuUsPerS, (95_000 + 50_000 + 10_000 + 20_000 + 2000 + 500 + 300 + 50 + 3000 + 100) / 2))
  t.equal(result.memory.auditBytes, 0)
  t.equal(result.redis.isCluster, false)
  t.equal(result.redis.masters, 1)
  t.equal(result.redis.replicas, 1)
  t.ok(result.memory.totalBytes < 64 * GIB)
})

test('masters are added until the busiest one, by its share of the shard tags, fits', async (t) => {
  const { plan } = await loadModel()
  // 28,357,500,000 B over three masters of 8.85 GiB (9,502,615,142 B): the mean (9,452,500,000) fits, the busiest
  // (x 1.0078125 = 9,526,347,656) does not; four masters, the busiest holding 1030 of 1024 tags on average, do.
  const result = plan({ ...INPUT, maxMemoryPerMasterGiB: 8.85 }, UNITS)
  t.equal(result.redis.mastersForMemory, 3)
  t.equal(result.redis.masters, 4)
  t.equal(result.redis.busiestMasterShare, 1030 / 1024)
  t.ok(isClose(result.redis.busiestMasterBytes, 28_357_500_000 / 4 * 1030 / 1024))
})

test('saturation throughput and predicted memory of the validation', async (t) => {
  const { saturationThroughput, predictedMemory } = await loadModel()
  t.equal(saturationThroughput({ request: 0.8, login: 0.2 }, UNITS), 1e6 / 48)
  t.equal(predictedMemory(1_000_000, UNITS), 1_000_000_000)
  t.throws(() => saturationThroughput({ request: 0.5 }, UNITS), /shares must sum to 1/)
  t.throws(() => saturationThroughput({ request: 1, teleport: 0 }, UNITS), /ops\.teleport needs redisCpuUs/)
})

test('bad input is refused with a message naming the parameter', async (t) => {
  const { plan } = await loadModel()
  t.throws(() => plan({ users: -1 }, UNITS), /users: must not be negative, got -1/)
  t.throws(() => plan({ users: Number.NaN }, UNITS), /users: expected a finite number/)
  t.throws(() => plan({ users: 1, touchShare: 1.5 }, UNITS), /touchShare: a share between 0 and 1/)
  t.throws(() => plan({ users: 1, targetUtilization: 0 }, UNITS), /targetUtilization: must be greater than 0/)
  t.throws(() => plan({ users: 1, logoutShare: 0.6, evictionShare: 0.6 }, UNITS), /at most 1/)
  t.throws(() => plan({ users: 10, sessionsPerUser: 0.5 }, UNITS), /sessionsPerUser: at least 1/)
  t.throws(() => plan({ users: 1 }, { ...UNITS, memory: {} }), /memory\.userWith1Session missing/)
  t.throws(() => plan({} as { users: number }, UNITS), /users: required/)
})

test('the CLI prints the plan, its assumptions and the source of the unit costs', async (t) => {
  const { main } = await loadCli()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capacity-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const units = path.join(dir, 'units.json')
  fs.writeFileSync(units, JSON.stringify(UNITS))
  let out = ''
  const stdout = { write: (text: string) => { out += text } }
  t.equal(main(['--users', '1000000', '--sessions-per-user', '2', '--rps', '10000', '--logins-per-s', '100', '--units', units], { stdout }), 0)
  t.match(out, /Redis Cluster: 3 masters \+ 3 replicas/)
  t.match(out, /Assumptions/)
  t.match(out, /unit costs: \S*units\.json, measured 2026-01-01T00:00:00\.000Z by npm run capacity:measure on 2 x test/)
  out = ''
  t.equal(main(['--users', '10', '--json', '--units', units], { stdout }), 0)
  t.equal(JSON.parse(out).redis.masters, 1)
})

test('the CLI exits non-zero with a clear message on bad input', async (t) => {
  const { main } = await loadCli()
  let err = ''
  const stderr = { write: (text: string) => { err += text } }
  const stdout = { write: () => true }
  t.equal(main(['--users=-5'], { stdout, stderr }), 2)
  t.match(err, /capacity: users: must not be negative, got -5/)
  err = ''
  t.equal(main(['--users', 'many'], { stdout, stderr }), 2)
  t.match(err, /--users: expected a number, got "many"/)
  err = ''
  t.equal(main(['--users', '1', '--units', path.join(os.tmpdir(), 'no-such-units.json')], { stdout, stderr }), 2)
  t.match(err, /--units: cannot read .*no-such-units\.json/)
  // The real process: an unknown flag is exit code 2 and one line on stderr.
  const child = spawnSync(process.execPath, [CLI, '--users', '1', '--teleport', '3'], { encoding: 'utf8' })
  t.equal(child.status, 2)
  t.match(child.stderr, /capacity: Unknown option '--teleport'/)
})
