import { test } from 'tap'
import { MemoryStore } from '../lib/store/memory'
import { storeContract } from './helpers/contract'

test('store contract: memory', async (t) => {
  storeContract(t, { make: async () => new MemoryStore() })
})
