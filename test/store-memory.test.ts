import { test } from 'tap'
import { MemoryStore } from '../lib/store/memory/store'
import { storeContract } from './helpers/contract'

test('store contract: memory', async (t) => {
  storeContract(t, { make: async () => new MemoryStore() })
})

test('the memory store always grants its lock: every instance cleans its own sessions', async (t) => {
  const store = new MemoryStore()
  t.equal(await store.tryLock('cleanup', 'owner-a', 1000), true)
  t.equal(await store.tryLock('cleanup', 'owner-b', 1000), true)
  t.equal(await store.release('cleanup', 'owner-b'), true)
})
