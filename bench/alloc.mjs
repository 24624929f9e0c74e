// Garbage made per request by the session hook, for one or more builds: `node bench/alloc.mjs [dist...]` (default
// ./dist, after `npm run build`). Each build runs in a child process of its own with a 1 MiB young generation
// (`--max-semi-space-size=1`), which drives the plugin's RequestHandler.loadSession directly with request-like objects
// (50 in flight), against a redis-server of its own and against the memory store. It counts the young-generation
// scavenges of 100,000 loads after a warm-up: a scavenge runs each time about 1 MiB has been allocated, so the count
// follows the bytes allocated per request, and unlike time it does not move with the machine's speed. The counts
// include the harness's own objects (the same for every build) and, on the Redis path, ioredis.
import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { PerformanceObserver, constants } from 'node:perf_hooks'

const LOADS = 100_000
const IN_FLIGHT = 50
const here = fileURLToPath(import.meta.url)

/** Scavenges while `work` runs. */
async function scavengesDuring (work) {
  let count = 0
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) count++
  })
  observer.observe({ entryTypes: ['gc'] })
  await work()
  // GC entries are delivered asynchronously.
  await new Promise((resolve) => setTimeout(resolve, 50))
  observer.disconnect()
  return count
}

/** In the child: one build's counts, printed as JSON. */
async function measure (dist) {
  const url = (file) => pathToFileURL(resolve(dist, file)).href
  const { Redis } = await import('ioredis')
  const { startRedis } = await import('./redis.mjs')
  const { SessionManager } = await import(url('core/manager.js'))
  const { MemoryStore } = await import(url('store/memory/store.js'))
  const { RedisStore } = await import(url('store/redis/store.js'))
  const { RequestHandler } = await import(url('plugin/request.js'))
  const { resolveOptions } = await import(url('plugin/options.js'))
  const server = await startRedis()
  const client = new Redis(server.url)
  const log = { warn () {}, info () {}, error () {}, debug () {} }
  const reply = { header () { return reply }, getHeader () {}, removeHeader () {} }
  const result = { dist }
  try {
    for (const [name, store] of [['redis', new RedisStore({ client })], ['memory', new MemoryStore()]]) {
      const manager = new SessionManager({ store })
      const handler = new RequestHandler(manager, resolveOptions(name === 'redis' ? { redis: client } : { store }))
      const { token } = await manager.create('user-1', { ipAddress: '127.0.0.1', userAgent: 'autocannon', metadata: { plan: 'free' } })
      // Builds before the callback-style hook: loadSession(request, reply) returned a promise or undefined.
      const isCallbackStyle = handler.loadSession.length === 3
      const load = () => new Promise((resolve, reject) => {
        const request = { is404: false, routeOptions: { config: {} }, headers: { 'x-session-id': token, 'user-agent': 'autocannon' }, ip: '127.0.0.1', log, session: null }
        const done = (error) => {
          if (error) reject(error)
          else if (request.session === null) reject(new Error('the session was not loaded'))
          else resolve()
        }
        if (isCallbackStyle) {
          handler.loadSession(request, reply, done)
          return
        }
        const loading = handler.loadSession(request, reply)
        if (loading === undefined) done()
        else loading.then(() => { done() }, done)
      })
      const run = async (count) => {
        let started = 0
        await Promise.all(Array.from({ length: IN_FLIGHT }, async () => { while (started++ < count) await load() }))
      }
      await run(LOADS / 5)
      result[name] = await scavengesDuring(() => run(LOADS))
    }
  } finally {
    client.disconnect()
    await server.stop()
  }
  console.log(JSON.stringify(result))
}

if (process.argv[2] === '--child') {
  await measure(process.argv[3])
} else {
  const builds = process.argv.length > 2 ? process.argv.slice(2) : ['dist']
  console.log(`young-generation scavenges per ${LOADS.toLocaleString('en-US')} session loads (1 MiB semi-space; fewer is less garbage)`)
  for (const dist of builds) {
    const child = spawnSync(process.execPath, ['--max-semi-space-size=1', here, '--child', resolve(dist)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
    if (child.status !== 0) throw new Error(`bench/alloc.mjs: the run of ${dist} failed (exit ${child.status})`)
    const counts = JSON.parse(child.stdout.trim().split('\n').pop())
    console.log(`${dist}: Redis ${counts.redis}, memory store ${counts.memory}`)
  }
}
