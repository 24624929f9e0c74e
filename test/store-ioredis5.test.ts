import { test } from 'tap'
import { Redis as Redis5 } from 'ioredis5'
import type { Redis } from 'ioredis'
import { RedisStore } from '../lib/store/redis/store'
import { startRedis } from './helpers/redis'
import { storeContract } from './helpers/contract'

// The package accepts ioredis 5 and 6: the whole contract runs on a client from the 5.x line too.
test('store contract: Redis through an ioredis 5 client', async (t) => {
  const server = await startRedis(t)
  const client = new Redis5(server.url) as unknown as Redis
  t.teardown(() => client.quit())
  let n = 0
  storeContract(t, { make: async () => new RedisStore({ client, prefix: `v5:${n++}:` }) })
})
