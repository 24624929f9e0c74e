// `node bench/profile.mjs [variant...]` (after `npm run build`; default: ours floor oursMemory bare): each variant's server under
// `node --cpu-prof` (100 µs sampling), 50 connections for BENCH_PROFILE_SECONDS (10) after a warm-up, then a
// summary of where its CPU time goes, counting only the samples of the measured run, in µs per request.
// Writes bench/results/profile-<variant>.json (docs/benchmarks.md shows ours next to the floor); the raw
// .cpuprofile files stay in bench/results/tmp/ for Chrome DevTools or speedscope.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { VARIANTS } from './apps.mjs'
import { runLoad } from './load.mjs'
import { exitOnSignals, startRedis } from './redis.mjs'
import { credentialHeaders, installAnchors, startServer } from './run.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const SECONDS = Number(process.env.BENCH_PROFILE_SECONDS ?? 10)
const CONNECTIONS = 50
const SAMPLING_MICROS = 100
const KEPT_FUNCTIONS = 200

// The request-path functions of this package whose inclusive time is reported.
const PATH_FUNCTIONS = [
  'loadSession', 'readToken', 'guard', 'load', 'parseToken', 'secretMatches', 'parseHash', 'toSession', 'deadline',
  'securityReport', 'fingerprintFromHeaders', 'generateDeviceFingerprint', 'compareFingerprints', 'isBlocked',
  'requireSession', 'flagReasons'
]

function packageOf (url) {
  if (url.includes('/dist/')) return 'fastify-distributed-session (dist/)'
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (match !== null) return match[1]
  if (url.startsWith('node:')) return 'Node core (JS)'
  return 'bench / other'
}

function groupOf (callFrame) {
  const { functionName, url } = callFrame
  if (functionName === '(idle)') return null
  if (functionName === '(garbage collector)') return 'garbage collector'
  if (functionName === '(program)') return '(program): V8 and native work outside JS frames'
  if (url === '') return 'native builtins (socket writes, crypto, string encoding: incl. kernel time)'
  return packageOf(url)
}

function where (callFrame) {
  if (callFrame.url === '') return 'native'
  const file = callFrame.url.replace(/^file:\/\//, '').replace(/^.*node_modules\//, '').replace(/^.*\/dist\//, 'dist/')
  return `${file}:${callFrame.lineNumber + 1}`
}

/** Self and inclusive time of the samples taken between `fromMicros` and `toMicros`, per request. */
export function summarizeProfile (profile, { fromMicros, toMicros, requests }) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)

  let at = profile.startTime
  let totalMicros = 0
  const groups = new Map()
  const functions = new Map()
  const inclusive = new Map()
  let insidePackage = 0
  const add = (map, key, micros) => map.set(key, (map.get(key) ?? 0) + micros)
  for (let n = 0; n < profile.samples.length; n++) {
    at += profile.timeDeltas[n]
    if (at < fromMicros || at > toMicros) continue
    // A sample stands for the time until the next one.
    const micros = profile.timeDeltas[n + 1] ?? SAMPLING_MICROS
    const id = profile.samples[n]
    const frame = byId.get(id).callFrame
    const group = groupOf(frame)
    if (group === null) continue
    totalMicros += micros
    add(groups, group, micros)
    const key = `${frame.functionName || '(anonymous)'} ${where(frame)}`
    if (!functions.has(key)) functions.set(key, { name: frame.functionName || '(anonymous)', where: where(frame), micros: 0 })
    functions.get(key).micros += micros
    const seen = new Set()
    let inPackage = false
    for (let cursor = id; cursor !== undefined; cursor = parent.get(cursor)) {
      const f = byId.get(cursor).callFrame
      if (!f.url.includes('/dist/')) continue
      inPackage = true
      const name = `${f.functionName} (${f.url.replace(/^.*\/dist\//, '')})`
      if (PATH_FUNCTIONS.includes(f.functionName) && !seen.has(name)) {
        seen.add(name)
        add(inclusive, name, micros)
      }
    }
    if (inPackage) insidePackage += micros
  }
  const perRequest = (micros) => micros / requests
  const rows = (entries) => entries.map(([name, micros]) => ({ name, share: micros / totalMicros, microsPerRequest: perRequest(micros) }))
    .sort((a, b) => b.share - a.share)
  return {
    profiledMicrosPerRequest: perRequest(totalMicros),
    packageInclusive: { share: insidePackage / totalMicros, microsPerRequest: perRequest(insidePackage) },
    groups: rows([...groups]),
    top: [...functions.values()].sort((a, b) => b.micros - a.micros).slice(0, KEPT_FUNCTIONS)
      .map((f) => ({ name: f.name, where: f.where, share: f.micros / totalMicros, microsPerRequest: perRequest(f.micros) })),
    inclusive: rows([...inclusive])
  }
}

async function profileVariant (key, redis, tmp) {
  const variant = VARIANTS.find((v) => v.key === key)
  if (variant === undefined) throw new Error(`unknown variant ${key}`)
  installAnchors([variant])
  const dir = path.join(tmp, `profile-${key}`)
  fs.rmSync(dir, { recursive: true, force: true })
  const server = await startServer(variant, redis.url, {
    execArgv: ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', String(SAMPLING_MICROS)],
    countRoundTrips: false
  })
  let run
  try {
    const headers = await credentialHeaders(server, `bench-profile-${key}`)
    await runLoad({ url: `${server.url}/profile`, connections: CONNECTIONS, seconds: 2, headers })
    run = await runLoad({ url: `${server.url}/profile`, connections: CONNECTIONS, seconds: SECONDS, headers },
      { onStart: () => server.start(), onStop: () => server.stop() })
  } finally {
    await server.close()
  }
  const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))
  if (file === undefined) throw new Error(`the ${key} server wrote no .cpuprofile`)
  const profile = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'))
  const summary = summarizeProfile(profile, { fromMicros: run.startedAtMicros, toMicros: run.stoppedAtMicros, requests: run.requests })
  return {
    measuredAt: new Date().toISOString(),
    // The page compares these with the runs of npm run bench: say where they were taken.
    node: process.version,
    cpuModel: os.cpus()[0]?.model,
    variant: key,
    label: variant.label,
    connections: CONNECTIONS,
    seconds: SECONDS,
    samplingMicros: SAMPLING_MICROS,
    requests: run.requests,
    reqPerSec: run.reqPerSec,
    serverCpuMicrosPerRequest: run.cpuMicros / run.requests,
    cpuProfile: path.relative(path.join(here, '..'), path.join(dir, file)),
    windowMicros: [run.startedAtMicros, run.stoppedAtMicros],
    ...summary
  }
}

function print (result) {
  const us = (n) => n.toFixed(2).padStart(6)
  console.log(`\n== ${result.label}: ${result.reqPerSec.toFixed(0)} req/s under the profiler, ` +
    `${result.serverCpuMicrosPerRequest.toFixed(1)} µs CPU/request (process.cpuUsage), ${result.profiledMicrosPerRequest.toFixed(1)} µs/request sampled, ` +
    `${us(result.packageInclusive.microsPerRequest)} µs/request with dist/ on the stack`)
  for (const g of result.groups.slice(0, 12)) console.log(`${(g.share * 100).toFixed(1).padStart(5)}% ${us(g.microsPerRequest)} µs  ${g.name}`)
  console.log('--- top self time')
  for (const f of result.top.slice(0, 25)) console.log(`${(f.share * 100).toFixed(1).padStart(5)}% ${us(f.microsPerRequest)} µs  ${f.name}  ${f.where}`)
  if (result.inclusive.length > 0) console.log('--- inclusive')
  for (const f of result.inclusive) console.log(`${(f.share * 100).toFixed(1).padStart(5)}% ${us(f.microsPerRequest)} µs  ${f.name}`)
}

async function main () {
  const keys = process.argv.length > 2 ? process.argv.slice(2) : ['ours', 'floor', 'oursMemory', 'bare']
  const tmp = path.join(here, 'results', 'tmp')
  fs.mkdirSync(tmp, { recursive: true })
  const redis = await startRedis()
  try {
    for (const key of keys) {
      const result = await profileVariant(key, redis, tmp)
      fs.writeFileSync(path.join(here, 'results', `profile-${key}.json`), JSON.stringify(result, null, 2) + '\n')
      print(result)
    }
  } finally {
    await redis.stop()
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  exitOnSignals()
  main().catch((error) => {
    console.error(error)
    process.exit(1)
  })
}
