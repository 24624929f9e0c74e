// Real redis-server processes and Redis Clusters for the tests. The launcher itself is launcher.cjs, which the bench
// uses too; this file is its typed entry for the tests.
export {
  sendCommand,
  startRedis,
  startRedisCluster,
  type RedisCluster,
  type RedisServer,
  type StartRedisOptions,
  type Teardownable,
} from './launcher.cjs'
