// Redis time of the scripts that write a shard's expiry queue, at the density of 1,000,000 sessions (244 per shard),
// for one or more builds side by side: `node bench/queue-cost.mjs [dist...]` (default ./dist). For each build, on a
// fresh redis-server of its own: 244 users of one shard log in, then rounds of a touch of each session (the clock
// moved past the touch interval) and of 244 further logins on the shard (each evicting nothing, ended by a logout).
// Figures are INFO commandstats usec per script call (execution time inside Redis), median over the rounds; builds
// are interleaved round by round, since the machine's speed drifts.
import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'
import { Redis } from 'ioredis'
import { shardTag } from '../dist/core/token.js'
import { startRedis } from './redis.mjs'

// QUEUE_COST_SESSIONS: sessions on the shard (default 244, the density of 1,000,000 sessions; 2441 is 10,000,000's).
const PER_SHARD = Number(process.env.QUEUE_COST_SESSIONS ?? Math.round(1_000_000 / 4096))
const ROUNDS = Number(process.env.QUEUE_COST_ROUNDS ?? 15)
const MINUTE = 60_000

/** `count` user ids on one shard tag, by the package's own tag rule (shardTag of this checkout's build). */
function usersOnOneShard (count, base) {
  const tag = shardTag(`${base}-0`)
  const users = []
  for (let n = 0; users.length < count; n++) if (shardTag(`${base}-${n}`) === tag) users.push(`${base}-${n}`)
  return users
}

/** Script calls and their total usec, from INFO commandstats (EVALSHA and EVAL). */
async function scriptStats (client) {
  const text = await client.info('commandstats')
  let calls = 0
  let usec = 0
  for (const match of text.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+),usec=(\d+)/gm)) {
    calls += Number(match[1])
    usec += Number(match[2])
  }
  return { calls, usec }
}

async function perCall (client, work) {
  const before = await scriptStats(client)
  await work()
  const after = await scriptStats(client)
  return (after.usec - before.usec) / (after.calls - before.calls)
}

async function setUp (dist) {
  const { RedisStore, SessionManager } = await import(pathToFileURL(resolve(dist, 'index.js')).href)
  const redis = await startRedis()
  const client = new Redis(redis.url)
  const clock = { now: Date.now() }
  const manager = new SessionManager({ store: new RedisStore({ client }), now: () => clock.now, audit: { retention: 0 } })
  const residents = []
  for (const user of usersOnOneShard(PER_SHARD, 'resident')) residents.push((await manager.create(user)).token)
  const visitors = usersOnOneShard(PER_SHARD, 'visitor')
  return {
    dist,
    touch: [],
    login: [],
    round: async function () {
      clock.now += 2 * MINUTE
      this.touch.push(await perCall(client, async () => { for (const token of residents) await manager.get(token) }))
      const ids = []
      this.login.push(await perCall(client, async () => { for (const user of visitors) ids.push((await manager.create(user)).session.id) }))
      for (const id of ids) await manager.invalidate(id)
    },
    close: async () => {
      await manager.close()
      client.disconnect()
      await redis.stop()
    }
  }
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const dists = process.argv.length > 2 ? process.argv.slice(2) : ['dist']
const builds = []
try {
  for (const dist of dists) builds.push(await setUp(resolve(dist)))
  for (let n = 0; n < ROUNDS; n++) for (const build of builds) await build.round()
  console.log(`${PER_SHARD} sessions on one shard, ${ROUNDS} rounds; usec per script call inside Redis (median, min-max):`)
  for (const build of builds) {
    const show = (values) => `${median(values).toFixed(1)} (${Math.min(...values).toFixed(1)}-${Math.max(...values).toFixed(1)})`
    console.log(`  ${build.dist}: touch ${show(build.touch)}, login ${show(build.login)}`)
  }
} finally {
  for (const build of builds) await build.close()
}
