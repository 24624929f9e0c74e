import { test } from 'tap'
import { Redis } from 'ioredis'
import { RedisStore } from '../lib/store/redis'
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
