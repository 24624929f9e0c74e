// Shared by the capacity scripts: counting what this process sends to Redis, reading Redis's own CPU and command
// statistics, and running an operation many times with a fixed number in flight.
import os from 'node:os'
import { Redis } from 'ioredis'
import { info } from '../redis.mjs'
import { median } from '../report.mjs'

const counter = { isOn: false, total: 0, byName: {} }
const sendCommand = Redis.prototype.sendCommand
// Every connection of this process (the store's, the near cache's reader) goes through the prototype, so round
// trips are counted on the client, never from INFO commandstats, which also counts the commands inside scripts.
// A connection marked `isProbe` (the measuring one) is left out.
Redis.prototype.sendCommand = function countedSendCommand (command, ...rest) {
  if (counter.isOn && this.isProbe !== true) {
    counter.total++
    counter.byName[command.name] = (counter.byName[command.name] ?? 0) + 1
  }
  return sendCommand.call(this, command, ...rest)
}

/** A connection for INFO and CONFIG that the round-trip counter ignores. */
export function probeClient (url) {
  const client = new Redis(url)
  client.isProbe = true
  return client
}

export async function usedMemory (probe) {
  return Number((await info(probe, 'memory')).used_memory)
}

/** Slots per key of a hash table that doubles when full, averaged over its sizes (1 / ln 2). */
export const AVERAGE_SLOTS_PER_KEY = 1 / Math.LN2
const SLOT_BYTES = 8

/**
 * used_memory with the keyspace's two hash tables (keys, and keys with a TTL) counted at their average size
 * instead of their current power of two: a table doubles when full, so a batch of users that happens to cross a
 * power of two would otherwise pay for the whole doubling. Layout-agnostic: only key counts are used.
 */
export async function steadyMemory (probe) {
  // A table that just doubled is rehashed into the new one within a few server cron runs (10 per second).
  await new Promise((resolve) => setTimeout(resolve, 300))
  const used = await usedMemory(probe)
  const db = String((await info(probe, 'keyspace')).db0 ?? 'keys=0,expires=0')
  const keys = Number(/keys=(\d+)/.exec(db)?.[1] ?? 0)
  const expires = Number(/expires=(\d+)/.exec(db)?.[1] ?? 0)
  const table = (count) => count === 0 ? 0 : 2 ** Math.ceil(Math.log2(count + 1))
  return used - SLOT_BYTES * (table(keys) + table(expires)) + SLOT_BYTES * AVERAGE_SLOTS_PER_KEY * (keys + expires)
}

/** { command: { calls, usec } } from INFO commandstats (sub-commands as 'client|tracking'). */
export async function commandStats (probe) {
  const stats = await info(probe, 'commandstats')
  const result = {}
  for (const [key, value] of Object.entries(stats)) {
    if (!key.startsWith('cmdstat_')) continue
    const calls = /calls=(\d+)/.exec(String(value))
    const usec = /usec=(\d+)/.exec(String(value))
    if (calls !== null && usec !== null) result[key.slice(8)] = { calls: Number(calls[1]), usec: Number(usec[1]) }
  }
  return result
}

/** used_cpu_sys + used_cpu_user of redis-server, in microseconds. */
export async function redisCpuUs (probe) {
  const cpu = await info(probe, 'cpu')
  return (Number(cpu.used_cpu_sys) + Number(cpu.used_cpu_user)) * 1e6
}

/** Runs `operation(n)` for n in [0, count), `concurrency` in flight. */
export async function runConcurrently (count, concurrency, operation) {
  let next = 0
  const worker = async () => {
    while (next < count) await operation(next++)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
}

const SCRIPT_COMMANDS = new Set(['evalsha', 'eval', 'evalsha_ro', 'eval_ro', 'fcall', 'fcall_ro'])

/**
 * Runs `count` operations and prices one: Redis CPU from used_cpu (everything the server spent, networking
 * included) and from INFO commandstats (execution only: a script's usec covers its inner commands; a plain command
 * the client sent is priced at its usec_per_call, since the same name may also run inside scripts), round trips and
 * commands counted on the client, Node CPU of this process, and the wall rate.
 */
async function measureOnce (probe, { from, count, concurrency, operation }) {
  await probe.config('RESETSTAT')
  const cpuBefore = await redisCpuUs(probe)
  const nodeBefore = process.cpuUsage()
  counter.total = 0
  counter.byName = {}
  counter.isOn = true
  const startedAt = performance.now()
  await runConcurrently(count, concurrency, (i) => operation(from + i))
  const seconds = (performance.now() - startedAt) / 1000
  counter.isOn = false
  const node = process.cpuUsage(nodeBefore)
  const cpuAfter = await redisCpuUs(probe)
  const stats = await commandStats(probe)
  let execUs = 0
  for (const [name, sent] of Object.entries(counter.byName)) {
    const stat = stats[name]
    if (stat === undefined || stat.calls === 0) continue
    execUs += SCRIPT_COMMANDS.has(name) ? stat.usec : sent * stat.usec / stat.calls
  }
  return {
    count,
    concurrency,
    roundTrips: counter.total / count,
    commands: Object.fromEntries(Object.entries(counter.byName).map(([name, sent]) => [name, sent / count])),
    execUs: execUs / count,
    usedCpuUs: (cpuAfter - cpuBefore) / count,
    nodeCpuUs: (node.user + node.system) / count,
    perSecond: count / seconds
  }
}

/**
 * `measureOnce` over `rounds` consecutive slices of the `count` operations (operation n always gets index n, so
 * operations that use up their input, such as a logout, never repeat one), and the median of the rounds: a burst of
 * other work on the machine moves one round, not the figure.
 */
export async function measure (probe, { count, concurrency, operation, rounds = 1 }) {
  const results = []
  const perRound = Math.floor(count / rounds)
  for (let round = 0; round < rounds; round++) {
    const from = round * perRound
    results.push(await measureOnce(probe, { from, count: round === rounds - 1 ? count - from : perRound, concurrency, operation }))
  }
  const result = { ...results.at(-1), count, rounds }
  for (const field of ['roundTrips', 'execUs', 'usedCpuUs', 'nodeCpuUs', 'perSecond']) result[field] = median(results.map((r) => r[field]))
  result.usedCpuUsRounds = results.map((r) => Math.round(r.usedCpuUs * 10) / 10)
  return result
}

export async function machine (probe) {
  const server = await info(probe, 'server')
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
    node: process.version,
    redis: server.redis_version,
    platform: `${os.type()} ${os.release()}`,
    loadAverage: os.loadavg().map((value) => Math.round(value * 100) / 100)
  }
}

/** Every key of the server, by SCAN (the measurement's own redis-server: nothing else writes to it). */
export async function * allKeys (probe) {
  let cursor = '0'
  do {
    const [next, batch] = await probe.scan(cursor, 'COUNT', 1000)
    cursor = next
    yield * batch
  } while (cursor !== '0')
}

/**
 * `count` simulated app instances with the near cache on one Cluster node: each a connection that asks for every
 * change under `prefix` (CLIENT TRACKING ON REDIRECT <listener> BCAST PREFIX, as lib/store/redis/near-cache.ts does on
 * a Cluster) and a subscribed listener that counts the invalidation messages and keys it receives. Their own commands
 * are not counted as round trips.
 */
export async function broadcastListeners (url, count, prefix = 'sess:') {
  const pairs = await Promise.all(Array.from({ length: count }, async () => {
    const listener = new Redis(url, { protocol: 2 })
    const tracker = new Redis(url)
    listener.isProbe = true
    tracker.isProbe = true
    const pair = { listener, tracker, messages: 0, keys: 0 }
    listener.on('messageBuffer', (_channel, keys) => {
      pair.messages++
      pair.keys += keys === null ? 0 : keys.length
    })
    const id = await listener.client('ID')
    await listener.subscribe('__redis__:invalidate')
    await tracker.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(id), 'BCAST', 'PREFIX', prefix)
    return pair
  }))
  return {
    messages: () => pairs.reduce((sum, pair) => sum + pair.messages, 0),
    keys: () => pairs.reduce((sum, pair) => sum + pair.keys, 0),
    close () {
      for (const pair of pairs) {
        pair.tracker.disconnect()
        pair.listener.disconnect()
      }
    }
  }
}
