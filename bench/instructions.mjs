// `npm run bench:instructions` (after `npm run build`): the user-space instructions each variant's server executes per
// authenticated request, counted by valgrind's callgrind. A count of instructions does not move with the neighbours'
// load the way throughput does on a shared machine: repeated runs of one build differed by up to 7% here (throughput
// repeats by a third), so a change to the request path larger than that shows here when throughput runs cannot
// resolve it. It leaves out the kernel side of the socket writes (`writev`: a quarter to a third of the sampled time in
// bench/profile.mjs) and how fast each instruction runs, so it is a second view of the plugin's cost, not a throughput
// ratio. Under valgrind the server is far slower than the load generator, so each event-loop turn holds many requests
// and the per-turn work (batched Redis writes above all) is shared by more requests than in the throughput runs: that
// favours this package's Redis path over the floor, which does not batch.
//
// Each server runs under `valgrind --tool=callgrind` with instrumentation off, gets BENCH_INSTRUCTION_WARMUP requests
// (30000, so that V8 has optimized the request path), then instrumentation is switched on (callgrind_control -i on) for
// BENCH_INSTRUCTION_REQUESTS (20000), at 50 connections like npm run bench. V8 compiles on the main thread
// (--single-threaded) so that no compiler thread's timing changes the count. BENCH_INSTRUCTION_VARIANTS picks the
// variants (default bare, oursOptOut, oursMemory, oursNearCache, secureSession, ours, floor). Writes
// bench/results/instructions.json, which docs/benchmarks.md quotes (`node bench/report.mjs`).
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { VARIANTS } from './apps.mjs'
import { exitOnSignals, startRedis } from './redis.mjs'
import { writeReport } from './report.mjs'
import { credentialHeaders, installAnchors, startServer } from './run.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const WARMUP = Number(process.env.BENCH_INSTRUCTION_WARMUP ?? 30_000)
const REQUESTS = Number(process.env.BENCH_INSTRUCTION_REQUESTS ?? 20_000)
const KEYS = (process.env.BENCH_INSTRUCTION_VARIANTS ?? 'bare,oursOptOut,oursMemory,oursNearCache,secureSession,ours,floor').split(',').map((key) => key.trim()).filter((key) => key !== '')

function log (message) {
  process.stderr.write(`[instructions ${new Date().toISOString().slice(11, 19)}] ${message}\n`)
}

/**
 * Runs a command to its end (60 s at most); throws with its output when it fails. callgrind_control exits 0 when it
 * fails too (no such run, a bad option): its output is checked for the errors it prints.
 */
function run (command, args) {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 60_000 })
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`
  if (result.status !== 0 || /Error:|No active callgrind runs/.test(output)) {
    throw new Error(`${command} ${args.join(' ')}: ${result.error?.message ?? `exit code ${result.status}`}\n${output}`)
  }
  return result.stdout
}

/** `amount` requests at 50 connections; throws unless every answer was a 2xx. */
async function load (url, headers, amount) {
  const result = await autocannon({ url, connections: 50, amount, headers, timeout: 60 })
  if (result['2xx'] !== amount) throw new Error(`${url}: ${result['2xx']} of ${amount} answers were 2xx (${result.non2xx} others, ${result.errors} errors, ${result.timeouts} timeouts)`)
}

/**
 * The instructions callgrind collected while instrumentation was on, from the totals line of its output file (the
 * summary line holds only what was counted since the last switch). A request of bare Fastify is about 70,000; fewer
 * than 1,000 per request means the switch did not take.
 */
function collected (file) {
  const line = fs.readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith('totals:'))
  if (line === undefined) throw new Error(`${file}: no totals line (was valgrind killed before it wrote its profile?)`)
  const count = Number(line.split(/\s+/)[1])
  if (!Number.isInteger(count) || count < REQUESTS * 1000) throw new Error(`${file}: ${line.trim()} for ${REQUESTS} requests: the instrumentation did not switch on`)
  return count
}

async function measure (variant, redisUrl, dir) {
  const outFile = path.join(dir, `callgrind.${variant.key}.out`)
  const server = await startServer(variant, redisUrl, {
    execPath: 'valgrind',
    execArgv: ['--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${outFile}`, process.execPath, '--single-threaded'],
    countRoundTrips: false,
    // Node's exit and callgrind's dump take seconds under valgrind: a server killed before them leaves no profile.
    closeTimeoutMs: 60_000
  })
  try {
    const headers = await credentialHeaders(server, `instructions-${variant.key}`)
    const url = `${server.url}/profile`
    await load(url, headers, WARMUP)
    run('callgrind_control', ['--instr=on', String(server.child.pid)])
    await load(url, headers, REQUESTS)
    run('callgrind_control', ['--instr=off', String(server.child.pid)])
  } finally {
    await server.close()
  }
  if (server.child.exitCode !== 0) throw new Error(`${variant.key}: the server under valgrind ended with ${server.child.exitCode ?? server.child.signalCode}, so its profile is not complete`)
  return collected(outFile) / REQUESTS
}

async function main () {
  if (KEYS.length === 0) throw new Error('bench: BENCH_INSTRUCTION_VARIANTS names no variant (it would overwrite bench/results/instructions.json with nothing)')
  run('valgrind', ['--version'])
  const unknown = KEYS.filter((key) => !VARIANTS.some((v) => v.key === key))
  if (unknown.length > 0) throw new Error(`bench: unknown BENCH_INSTRUCTION_VARIANTS ${unknown.join(', ')} (known: ${VARIANTS.map((v) => v.key).join(', ')})`)
  installAnchors(KEYS.map((key) => VARIANTS.find((v) => v.key === key)))
  const dir = path.join(here, 'results', 'tmp')
  fs.mkdirSync(dir, { recursive: true })
  const redis = await startRedis()
  const results = { measuredAt: new Date().toISOString(), node: process.version, warmup: WARMUP, requests: REQUESTS, connections: 50, variants: [] }
  try {
    for (const key of KEYS) {
      const variant = VARIANTS.find((v) => v.key === key)
      const started = Date.now()
      const perRequest = await measure(variant, redis.url, dir)
      results.variants.push({ variant: key, label: variant.label, instructionsPerRequest: Math.round(perRequest) })
      log(`${key.padEnd(16)} ${Math.round(perRequest).toLocaleString('en-US').padStart(9)} instructions per request (${Math.round((Date.now() - started) / 1000)} s)`)
    }
  } finally {
    await redis.stop()
  }
  const bare = results.variants.find((v) => v.variant === 'bare')?.instructionsPerRequest
  for (const v of results.variants) {
    if (bare !== undefined) v.overBare = v.instructionsPerRequest / bare
    console.log(`${v.label.padEnd(48)} ${v.instructionsPerRequest.toLocaleString('en-US').padStart(9)}` + (bare === undefined ? '' : `  ${v.overBare.toFixed(3)}x bare's`))
  }
  fs.writeFileSync(path.join(here, 'results', 'instructions.json'), JSON.stringify(results, null, 2) + '\n')
  // docs/benchmarks.md quotes these counts: written again with them.
  writeReport(JSON.parse(fs.readFileSync(path.join(here, 'results', 'latest.json'), 'utf8')))
}

exitOnSignals()
main().catch((error) => {
  console.error(error)
  process.exit(1)
})
