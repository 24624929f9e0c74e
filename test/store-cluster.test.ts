import { test } from 'tap'
import { Cluster } from 'ioredis'
import { RedisStore } from '../lib/store/redis/store'
import { startRedisCluster } from './helpers/redis'
import { storeContract } from './helpers/contract'
import { dumpRedis } from './helpers/redis-inspect'

// Commands the test itself sends to observe the cluster, and the replication and cluster housekeeping a master
// receives on its own; none of them is a command of the store.
const OBSERVER_COMMANDS = new Set(['info', 'cluster', 'replconf', 'ping', 'command', 'client', 'psync', 'sync'])

test('store contract: Redis Cluster (3 masters, 3 replicas)', async (t) => {
  const cluster = await startRedisCluster(t)
  const client = new Cluster(cluster.startupNodes)
  t.teardown(() => client.quit())
  await client.ping()

  const masters = () => client.nodes('master')

  /** Store commands processed by every master; the INFO calls that read it are not counted (see OBSERVER_COMMANDS). */
  let observations = 0
  const storeCommands = async (): Promise<number> => {
    let total = 0
    for (const node of masters()) {
      const stats = await node.info('commandstats')
      for (const match of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
        const command = (match[1] as string).split('|')[0] as string
        if (!OBSERVER_COMMANDS.has(command)) total += Number(match[2])
      }
    }
    // One per observation, as a single server counts the INFO that reads the count: the contract's
    // "no command but the INFO" check then reads the same on one server and on a cluster.
    return total + observations++
  }

  let n = 0
  storeContract(t, {
    make: async () => new RedisStore({ client, prefix: `c${n++}:` }),
    dump: async () => (await Promise.all(masters().map((node) => dumpRedis(node)))).join('\n'),
    commandCount: storeCommands
  })
})
