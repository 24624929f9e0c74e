import { test } from 'tap'
import { Redis } from 'ioredis'
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
