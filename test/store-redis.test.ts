import { test } from 'tap'
import { Redis } from 'ioredis'
import { SessionManager } from '../lib/core/manager'
import { tagKey } from '../lib/store/redis/keys'
import { RedisStore } from '../lib/store/redis/store'
import { startRedis } from './helpers/redis'
import { storeContract } from './helpers/contract'
import { commandsProcessed, dumpRedis } from './helpers/redis-inspect'

test('store contract: Redis', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  let n = 0
  storeContract(t, {
    make: async () => new RedisStore({ client, prefix: `c${n++}:` }),
    dump: () => dumpRedis(client),
    commandCount: () => commandsProcessed(client)
  })
})

test('the fleet-wide lock: held by one owner until its TTL runs out, released only by that owner', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const a = new RedisStore({ client, prefix: 'lock:' })
  const b = new RedisStore({ client, prefix: 'lock:' })
  t.equal(await a.tryLock('cleanup', 'owner-a', 60_000), true, 'a free lock is taken')
  t.equal(await b.tryLock('cleanup', 'owner-b', 60_000), false, 'another owner is kept out')
  t.equal(await a.tryLock('cleanup', 'owner-a', 60_000), true, 'its owner still holds it')
  t.equal(await b.release('cleanup', 'owner-b'), false, 'another owner cannot release it')
  t.equal(await client.get('lock:lock:cleanup'), 'owner-a')
  t.equal(await a.release('cleanup', 'owner-a'), true)
  t.equal(await client.exists('lock:lock:cleanup'), 0, 'released by compare-and-delete')
  t.equal(await b.tryLock('cleanup', 'owner-b', 50), true, 'then free for the next owner')
  const ttl = await client.pttl('lock:lock:cleanup')
  t.ok(ttl > 0 && ttl <= 50, 'with the TTL it was taken for')
})

test('cleanup counts every session it expires, also those of a user sharing the shard that a small batch reaches through the user index', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  let clock = Date.UTC(2026, 0, 1)
  const manager = new SessionManager({ store: new RedisStore({ client, prefix: 'sh:' }), idleTimeout: '10m', now: () => clock })
  // Two users on one shard tag: a batch of 3 due entries holds sessions of both, and each user's other sessions
  // (beyond the batch) are expired through the user index in the same script.
  for (const userId of ['ann', 'bob']) await client.set(tagKey('sh:', userId), 'Sh', 'PX', 86_400_000)
  const created = []
  for (let n = 0; n < 4; n++) {
    created.push(await manager.create('ann'))
    created.push(await manager.create('bob'))
  }
  t.same(new Set(created.map((c) => c.session.id.slice(0, 2))), new Set(['Sh']), 'both users on one shard')
  clock += 11 * 60_000
  const expired: string[] = []
  manager.on('audit', (event) => { if (event.type === 'expired') expired.push(event.sessionId) })
  const result = await manager.cleanup(3)
  t.equal(result.expired, 8, 'every expired session counted')
  t.same(new Set(expired), new Set(created.map((c) => c.session.id)), 'and audited once each')
  t.equal(expired.length, 8)
})
