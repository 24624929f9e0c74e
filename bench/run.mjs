// `npm run bench`: every variant in its own server process, the load generator here, one redis-server of our own.
// Variants are interleaved over rounds in a rotated order, and ratios are taken within a round, because the
// machine is shared: absolute numbers move with the neighbours' load, ratios much less.
//
// Environment: BENCH_SECONDS (10) per measured run, BENCH_WARMUP_SECONDS (2), BENCH_ROUNDS (3),
// BENCH_VARIANTS (comma-separated keys, all by default), BENCH_EXTRAS=0 to skip the store measurements,
// BENCH_MEMORY_SESSIONS (10000,1000000), BENCH_CLEANUP_SESSIONS (100000), BENCH_LATENCY_SIZES (1000,10000,100000,1000000),
// BENCH_BASELINE (another build's dist/index.js: adds baseline, baselineMemory, baselineNearCache to compare a change in one run),
// BENCH_PAIR_REPEATS (24; 0 skips) and BENCH_PAIR_SECONDS (2): the paired measurement of each goal of issue 15 (measurePairs);
// BENCH_PAIRS (variant/reference,...): other pairs than the goals'.
// The anchor variants (secureSession, jwt) need bench/anchors/ installed: it is, on first use (installAnchors).
import { fork, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { VARIANTS } from './apps.mjs'
import { runStoreMeasurements } from './extras.mjs'
import { runLoad } from './load.mjs'
import { commandCalls, diffCalls, exitOnSignals, info, redisCpuSeconds, startRedis } from './redis.mjs'
import { GOAL_PAIRS, median, ratioOverRounds, writeReport } from './report.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))

function numberList (value, fallback) {
  return (value ?? fallback).split(',').filter((s) => s !== '').map(Number)
}

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 2)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const CONNECTIONS = [50, 1]
const PAIR_REPEATS = Number(process.env.BENCH_PAIR_REPEATS ?? 24)
const PAIR_SECONDS = Number(process.env.BENCH_PAIR_SECONDS ?? 2)
// BENCH_PAIRS=variant/reference,... measures those pairs instead (for example oursNearCache/baselineNearCache with
// BENCH_BASELINE: a change against the code before it, paired like a goal).
const PAIRS = process.env.BENCH_PAIRS === undefined
  ? GOAL_PAIRS
  : process.env.BENCH_PAIRS.split(',').map((pair) => pair.trim()).filter((pair) => pair !== '').map((pair) => pair.split('/').map((key) => key.trim()))
const CREATE_USERS = 1000
const WANTED = process.env.BENCH_VARIANTS?.split(',') ?? VARIANTS.map((v) => v.key)

const BROWSER_HEADERS = {
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36',
  'accept-language': 'en-GB,en;q=0.9',
  'accept-encoding': 'gzip, deflate, br'
}

function log (message) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`)
}

/** True when every dependency of bench/anchors/package.json is installed there at the version it names. */
function anchorsInstalled (dir) {
  const { dependencies } = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
  const require = createRequire(path.join(dir, 'package.json'))
  return Object.entries(dependencies).every(([name, version]) => {
    try {
      return require(`${name}/package.json`).version === version
    } catch {
      return false
    }
  })
}

/**
 * Installs bench/anchors (its own package and lockfile: @fastify/secure-session needs sodium-native, a native addon
 * that must stay out of the root node_modules) when a variant of this run needs it and it is missing or stale.
 */
export function installAnchors (variants) {
  const needing = variants.filter((v) => v.anchors === true)
  if (needing.length === 0) return
  const dir = path.join(here, 'anchors')
  if (anchorsInstalled(dir)) return
  log(`installing bench/anchors for ${needing.map((v) => v.key).join(', ')}: npm ci --prefix bench/anchors`)
  const result = spawnSync('npm', ['ci', '--prefix', dir, '--no-audit', '--no-fund'], { stdio: ['ignore', 2, 2] })
  if (result.status !== 0 || !anchorsInstalled(dir)) {
    const why = result.error?.message ?? `exit code ${result.status ?? result.signal}`
    throw new Error(`bench: npm ci --prefix bench/anchors failed (${why}); the variants ${needing.map((v) => v.key).join(', ')} ` +
      'need it. Run it by hand to see why, or leave them out with BENCH_VARIANTS (e.g. BENCH_VARIANTS=bare,floor,ours).')
  }
}

/**
 * Forks one server and wraps its IPC in request/answer calls. `execPath` runs it under another program (valgrind, whose
 * arguments then lead `execArgv`, Node's path and flags after them: bench/instructions.mjs). `close` waits
 * `closeTimeoutMs` for the server to exit, then kills it.
 */
async function startServer (variant, redisUrl, { execArgv = [], execPath = process.execPath, countRoundTrips = true, closeTimeoutMs = 5000 } = {}) {
  const child = fork(path.join(here, 'server.mjs'), [variant.key], {
    env: { ...process.env, BENCH_REDIS_URL: redisUrl, BENCH_COUNT_ROUND_TRIPS: countRoundTrips ? '1' : '0' },
    execArgv,
    execPath,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  let isClosing = false
  const exited = once(child, 'exit').then(([code]) => {
    if (!isClosing) throw new Error(`${variant.key} server exited with ${code}`)
  })
  exited.catch(() => {}) // observed by the races below
  const [ready] = await Promise.race([once(child, 'message'), exited])
  const ask = async (type, answer) => {
    child.send({ type })
    for (;;) {
      const [message] = await Promise.race([once(child, 'message'), exited])
      if (message.type === answer) return message
    }
  }
  return {
    variant,
    child,
    url: `http://127.0.0.1:${ready.port}`,
    start: () => ask('start', 'started'),
    stop: () => ask('stop', 'stats'),
    async close () {
      isClosing = true
      if (child.exitCode !== null || child.signalCode !== null) return
      child.send({ type: 'close' })
      await Promise.race([once(child, 'exit'), new Promise((resolve) => setTimeout(resolve, closeTimeoutMs).unref())])
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  }
}

/** Logs a user in and returns the headers that carry its credential (token header or session cookie). */
async function credentialHeaders (server, user) {
  if (server.variant.auth === 'none') return { ...BROWSER_HEADERS }
  const response = await fetch(`${server.url}/login`, {
    method: 'POST',
    headers: { ...BROWSER_HEADERS, 'content-type': 'application/json' },
    body: JSON.stringify({ user })
  })
  if (response.status !== 200) throw new Error(`${server.variant.key}: login answered ${response.status}`)
  const body = await response.json()
  const headers = { ...BROWSER_HEADERS }
  if (server.variant.auth === 'header') {
    headers['x-session-id'] = body.token
  } else if (server.variant.auth === 'bearer') {
    headers.authorization = `Bearer ${body.token}`
  } else {
    const cookies = response.headers.getSetCookie().map((c) => c.split(';')[0])
    if (cookies.length === 0) throw new Error(`${server.variant.key}: login set no cookie`)
    headers.cookie = cookies.join('; ')
  }
  const check = await fetch(`${server.url}/profile`, { headers })
  const profile = await check.json()
  if (check.status !== 200 || profile.userId !== user) {
    throw new Error(`${server.variant.key}: GET /profile with the credential answered ${check.status} ${JSON.stringify(profile)}`)
  }
  return headers
}

/** Hooks that read the server's CPU and round trips, and Redis' commands and CPU, around one load run. */
function counters (server, probe) {
  let calls
  let redisCpu
  return {
    async onStart () {
      if (probe !== null) {
        calls = await commandCalls(probe)
        redisCpu = await redisCpuSeconds(probe)
      }
      await server.start()
    },
    async onStop () {
      const stats = await server.stop()
      const result = { serverCpuMicros: stats.cpuMicros, roundTrips: stats.roundTrips, sentByCommand: stats.sentByCommand }
      if (stats.cache !== null && stats.cache !== undefined) {
        result.cacheHits = stats.cache.hits
        result.cacheMisses = stats.cache.misses
        result.cacheHitRatio = stats.cache.hitRatio
      }
      if (probe !== null) {
        const commands = diffCalls(calls, await commandCalls(probe))
        result.redisCommands = commands.total
        result.redisByCommand = commands.byCommand
        result.redisCpuMicros = ((await redisCpuSeconds(probe)) - redisCpu) * 1e6
      }
      return result
    }
  }
}

function perRequest (run) {
  const n = run.requests
  const per = (value) => value === undefined || n === 0 ? null : value / n
  const perCommand = (map) => map === undefined
    ? undefined
    : Object.fromEntries(Object.entries(map).map(([name, count]) => [name, count / n]))
  return {
    roundTripsPerRequest: per(run.roundTrips),
    roundTripsByCommand: perCommand(run.sentByCommand),
    redisCommandsPerRequest: per(run.redisCommands),
    redisCommandsByName: perCommand(run.redisByCommand),
    serverCpuMicrosPerRequest: per(run.serverCpuMicros),
    redisCpuMicrosPerRequest: per(run.redisCpuMicros)
  }
}

async function measureRounds (servers, headersByKey, probe) {
  const runs = []
  for (let round = 0; round < ROUNDS; round++) {
    const shift = round % servers.length
    const order = [...servers.slice(shift), ...servers.slice(0, shift)]
    log(`round ${round + 1}/${ROUNDS}: ${order.map((s) => s.variant.key).join(', ')}`)
    for (const server of order) {
      const key = server.variant.key
      const headers = headersByKey[key]
      await runLoad({ url: `${server.url}/profile`, connections: 50, seconds: WARMUP_SECONDS, headers })
      for (const connections of CONNECTIONS) {
        const run = await runLoad({ url: `${server.url}/profile`, connections, seconds: SECONDS, headers },
          counters(server, server.variant.redis ? probe : null))
        if (run.non2xx > 0 || run.errors > 0) log(`  ${key}: ${run.non2xx} non-2xx, ${run.errors} errors`)
        const { sentByCommand, redisByCommand, ...kept } = run
        runs.push({ round, variant: key, ...kept, ...perRequest(run) })
        log(`  ${key.padEnd(24)} c=${String(connections).padStart(2)} ${run.reqPerSec.toFixed(0).padStart(6)} req/s  p50 ${run.p50Ms} ms  p99 ${run.p99Ms} ms  busy ${run.busyPercent.toFixed(0)}%`)
      }
    }
  }
  return runs
}

/**
 * Each goal's two variants measured back to back, A B B A (B A A B in every other repeat), in short runs at 50
 * connections: a machine that speeds up or slows down steadily over the four runs weighs on both variants alike, where
 * a round of every variant takes minutes. The report takes one ratio per repeat, and each goal's median over every
 * repeat with its 95% interval (report.mjs, pairedRatio).
 */
async function measurePairs (servers, headersByKey) {
  if (PAIR_REPEATS <= 0) return []
  const pairs = PAIRS
    .map(([key, reference]) => ({ key, reference, a: servers.find((s) => s.variant.key === key), b: servers.find((s) => s.variant.key === reference), repeats: [] }))
    .filter((pair) => pair.a !== undefined && pair.b !== undefined)
  // Repeat n of every goal before repeat n + 1 of any: a slow spell of the machine is spread over the goals instead of
  // taking every repeat of one.
  for (let n = 0; n < PAIR_REPEATS; n++) {
    for (const { key, reference, a, b, repeats } of pairs) {
      const slices = []
      for (const server of n % 2 === 0 ? [a, b, b, a] : [b, a, a, b]) {
        const run = await runLoad({ url: `${server.url}/profile`, connections: 50, seconds: PAIR_SECONDS, headers: headersByKey[server.variant.key] })
        if (run.non2xx > 0 || run.errors > 0) log(`  ${server.variant.key}: ${run.non2xx} non-2xx, ${run.errors} errors`)
        slices.push({ variant: server.variant.key, reqPerSec: run.reqPerSec, p99Ms: run.p99Ms })
      }
      repeats.push({ slices })
      log(`  paired ${key} / ${reference}, repeat ${n + 1}/${PAIR_REPEATS}: ` +
        slices.map((slice) => `${slice.variant} ${slice.reqPerSec.toFixed(0)}`).join(', ') + ' req/s')
    }
  }
  return pairs.map(({ key, reference, repeats }) => ({ variant: key, reference, seconds: PAIR_SECONDS, connections: 50, repeats }))
}

/** Medians per variant and connection count; ratios are computed within a round first. */
function summarize (runs, keys) {
  const summary = []
  for (const connections of CONNECTIONS) {
    for (const key of keys) {
      const mine = runs.filter((r) => r.variant === key && r.connections === connections)
      if (mine.length === 0) continue
      const ratio = (other, field) => ratioOverRounds(runs, key, other, connections, field)
      const toBare = ratio('bare')
      const toFloor = ratio('floor')
      const toSecureSession = ratio('secureSession')
      const p99ToFloor = ratio('floor', 'p99Ms')
      const med = (field) => median(mine.map((r) => r[field]))
      summary.push({
        variant: key,
        label: VARIANTS.find((v) => v.key === key).label,
        connections,
        rounds: mine.length,
        reqPerSec: med('reqPerSec'),
        reqPerSecPerRound: mine.map((r) => Math.round(r.reqPerSec)),
        ratioToBare: toBare.median,
        ratioToBareSpread: toBare.spread,
        ratioToFloor: toFloor.median,
        ratioToFloorSpread: toFloor.spread,
        ratioToSecureSession: toSecureSession.median,
        ratioToSecureSessionSpread: toSecureSession.spread,
        ratioToFastifySession: ratio('fastifySession').median,
        p50Ms: med('p50Ms'),
        p99Ms: med('p99Ms'),
        p99RatioToFloor: p99ToFloor.median,
        p99RatioToFloorSpread: p99ToFloor.spread,
        roundTripsPerRequest: med('roundTripsPerRequest'),
        redisCommandsPerRequest: med('redisCommandsPerRequest'),
        serverCpuMicrosPerRequest: med('serverCpuMicrosPerRequest'),
        redisCpuMicrosPerRequest: med('redisCpuMicrosPerRequest'),
        busyPercent: med('busyPercent'),
        cacheHitRatio: med('cacheHitRatio'),
        roundTripsByCommand: mine.at(-1).roundTripsByCommand,
        redisCommandsByName: mine.at(-1).redisCommandsByName
      })
    }
  }
  return summary
}

/** Login throughput of this package with the per-user limit enforced: few users, so most logins evict. */
async function measureCreate (server, probe) {
  const requests = [{
    method: 'POST',
    path: '/login',
    headers: { ...BROWSER_HEADERS, 'content-type': 'application/json' },
    setupRequest (request) {
      request.body = `{"user":"login-${Math.floor(Math.random() * CREATE_USERS)}"}`
      return request
    }
  }]
  // Live sessions only: an ended session's key stays for a day as a tombstone (`{"x":reason,...}`), evicted ones included.
  const countSessions = async () => {
    let cursor = '0'
    let count = 0
    do {
      const [next, keys] = await probe.scan(cursor, 'MATCH', 'sess:{*}:s:*', 'COUNT', 1000)
      cursor = next
      if (keys.length === 0) continue
      const records = await probe.mget(keys)
      count += records.filter((record) => record !== null && JSON.parse(record).x === undefined).length
    } while (cursor !== '0')
    return count
  }
  // The warm-up also fills every user up to the limit, so the measured logins evict.
  await runLoad({ url: server.url, connections: 50, seconds: Math.max(WARMUP_SECONDS, 3), requests })
  const before = await countSessions()
  const run = await runLoad({ url: server.url, connections: 50, seconds: SECONDS, requests }, counters(server, probe))
  const after = await countSessions()
  const { sentByCommand, redisByCommand, ...kept } = run
  return {
    users: CREATE_USERS,
    maxSessionsPerUser: 5,
    ...kept,
    ...perRequest(run),
    liveSessionsBefore: before,
    liveSessionsAfter: after,
    evicted: run.requests - (after - before)
  }
}

async function main () {
  const startedAt = Date.now()
  const unknown = WANTED.filter((key) => !VARIANTS.some((v) => v.key === key))
  if (unknown.length > 0) throw new Error(`bench: unknown BENCH_VARIANTS ${unknown.join(', ')} (known: ${VARIANTS.map((v) => v.key).join(', ')})`)
  const variants = VARIANTS.filter((v) => WANTED.includes(v.key))
  // Checked before minutes of rounds: a pair that names no variant of this run would be skipped without a word.
  const badPairs = PAIR_REPEATS > 0 && process.env.BENCH_PAIRS !== undefined ? PAIRS.filter((pair) => pair.length !== 2 || pair.some((key) => !variants.some((v) => v.key === key))) : []
  if (process.env.BENCH_PAIRS !== undefined && PAIRS.length === 0) throw new Error('bench: BENCH_PAIRS is empty (BENCH_PAIR_REPEATS=0 skips the paired runs)')
  if (badPairs.length > 0) {
    throw new Error(`bench: BENCH_PAIRS ${badPairs.map((pair) => pair.join('/')).join(', ')} names no two variants of this run ` +
      `(variant/reference, each one of: ${variants.map((v) => v.key).join(', ')})`)
  }
  installAnchors(variants)
  const redis = await startRedis()
  const probe = new Redis(redis.url)
  const serverInfo = await info(probe, 'server')
  log(`redis-server ${serverInfo.redis_version} on port ${redis.port}`)
  const servers = []
  const results = {
    startedAt: new Date(startedAt).toISOString(),
    settings: { seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, rounds: ROUNDS, connections: CONNECTIONS, pairRepeats: PAIR_REPEATS, pairSeconds: PAIR_SECONDS },
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      redis: serverInfo.redis_version,
      platform: `${os.type()} ${os.release()}`,
      loadAverageAtStart: os.loadavg()
    }
  }
  try {
    for (const variant of variants) servers.push(await startServer(variant, redis.url))
    const headersByKey = {}
    for (const server of servers) headersByKey[server.variant.key] = await credentialHeaders(server, `bench-${server.variant.key}`)
    const runs = await measureRounds(servers, headersByKey, probe)
    results.runs = runs
    results.summary = summarize(runs, variants.map((v) => v.key))
    log(`paired runs: ${PAIR_REPEATS} repeats of A B B A (B A A B every other time), ${PAIR_SECONDS} s each`)
    results.pairs = await measurePairs(servers, headersByKey)
    const ours = servers.find((s) => s.variant.key === 'ours')
    if (ours !== undefined) {
      log('login throughput (this package, Redis, limit enforced)')
      results.create = await measureCreate(ours, probe)
      log(`  ${results.create.reqPerSec.toFixed(0)} logins/s, ${results.create.evicted} evicted`)
    }
  } finally {
    await Promise.all(servers.map((s) => s.close()))
    probe.disconnect()
    await redis.stop()
  }
  if (process.env.BENCH_EXTRAS !== '0') {
    results.store = await runStoreMeasurements({
      log,
      memorySessions: numberList(process.env.BENCH_MEMORY_SESSIONS, '10000,1000000'),
      latencySizes: numberList(process.env.BENCH_LATENCY_SIZES, '1000,10000,100000,1000000'),
      cleanupSessions: Number(process.env.BENCH_CLEANUP_SESSIONS ?? 100_000),
      headers: BROWSER_HEADERS
    })
  }
  results.machine.loadAverageAtEnd = os.loadavg()
  results.totalSeconds = Math.round((Date.now() - startedAt) / 1000)
  const resultsDir = path.join(here, 'results')
  fs.mkdirSync(resultsDir, { recursive: true })
  fs.writeFileSync(path.join(resultsDir, 'latest.json'), JSON.stringify(results, null, 2) + '\n')
  writeReport(results)
  log(`done in ${results.totalSeconds} s: bench/results/latest.json, docs/benchmarks.md, docs/bench-reqs.svg`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  exitOnSignals()
  main().catch((error) => {
    console.error(error)
    process.exit(1)
  })
}

export { startServer, credentialHeaders }
