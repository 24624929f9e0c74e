// `node bench/client-decode.mjs`: what the Redis client spends reading one session, by reply shape, so the cost of
// the session's storage format can be told apart from the plugin's. One process, 50 calls in flight, CPU time
// per call (process.cpuUsage) for: GET of a JSON string (the floor), HGETALL of the session hash as the store
// writes it, and HGET of one field holding the same fields packed as JSON. ioredis 6 with RESP3 (its default)
// and RESP2, and ioredis 5 when the `ioredis5` alias is installed. Writes bench/results/client-decode.json.
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { exitOnSignals, startRedis } from './redis.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)
const CALLS = 40_000
const IN_FLIGHT = 50
const REPEATS = 3

function ioredis5 () {
  try {
    return require('ioredis5').Redis
  } catch {
    return null
  }
}

async function cpuPerCall (client, call) {
  let next = 0
  const worker = async () => {
    while (next++ < CALLS) await call(client)
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  next = 0
  const before = process.cpuUsage()
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  const used = process.cpuUsage(before)
  return (used.user + used.system) / CALLS
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

export async function measureClientDecode () {
  const redis = await startRedis()
  const seed = new Redis(redis.url)
  const now = String(Date.now())
  // The fields of a session hash as lib/store/redis/scripts.ts writes them (user agent and fingerprint of a browser).
  const fields = {
    u: 'bench-user',
    h: 'x'.repeat(43),
    c: now,
    l: now,
    a: now,
    i: '127.0.0.1',
    g: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36',
    f: 'v1.AAAAAAAA.BBBBBBBB.CCCCCCCC.........',
    s: '0',
    'm:plan': '"free"'
  }
  const shapes = {
    'GET of a JSON string': (client) => client.get('json').then(JSON.parse),
    'HGETALL of the session hash': (client) => client.hgetall('hash'),
    'HGET of one packed JSON field': (client) => client.hget('packed', 'v').then(JSON.parse)
  }
  const clients = [
    ['ioredis 6, RESP3 (default)', () => new Redis(redis.url)],
    ['ioredis 6, RESP2', () => new Redis(redis.url, { protocol: 2 })]
  ]
  const Redis5 = ioredis5()
  if (Redis5 !== null) clients.push(['ioredis 5', () => new Redis5(redis.url)])
  const rows = []
  try {
    await seed.hset('hash', fields)
    await seed.set('json', JSON.stringify(fields))
    await seed.hset('packed', 'v', JSON.stringify(fields))
    for (const [clientLabel, make] of clients) {
      const client = make()
      try {
        for (const [shape, call] of Object.entries(shapes)) {
          const samples = []
          for (let n = 0; n < REPEATS; n++) samples.push(await cpuPerCall(client, call))
          rows.push({ client: clientLabel, shape, cpuMicrosPerCall: median(samples) })
        }
      } finally {
        client.disconnect()
      }
    }
  } finally {
    seed.disconnect()
    await redis.stop()
  }
  return { measuredAt: new Date().toISOString(), calls: CALLS, inFlight: IN_FLIGHT, repeats: REPEATS, rows }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  exitOnSignals()
  const result = await measureClientDecode()
  fs.writeFileSync(path.join(here, 'results', 'client-decode.json'), JSON.stringify(result, null, 2) + '\n')
  for (const row of result.rows) console.log(`${row.client.padEnd(28)} ${row.shape.padEnd(32)} ${row.cpuMicrosPerCall.toFixed(2)} µs CPU/call`)
}
