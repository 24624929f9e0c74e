import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { test, type Test } from 'tap'
import { Redis, Cluster } from 'ioredis'
import { startRedis, startRedisCluster, sendCommand } from './helpers/redis'

function isPortClosed (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', () => resolve(true))
  })
}

function isProcessAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function client (t: Test, port: number): Redis {
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  t.teardown(() => redis.disconnect())
  return redis
}

test('a single server answers PING on its own port and frees it when stopped', async (t) => {
  const server = await startRedis()
  t.not(server.port, 6379, 'never the shared Redis')
  t.equal(server.url, `redis://127.0.0.1:${server.port}`)
  t.equal(await client(t, server.port).ping(), 'PONG')
  t.ok(fs.existsSync(path.join(server.dir, 'redis.log')), 'server output goes to a log in its dir')

  await server.stop()
  t.ok(await isPortClosed(server.port), 'port is closed after stop')
  t.notOk(isProcessAlive(server.pid), 'process is gone')
  t.notOk(fs.existsSync(server.dir), 'dir is removed')
  await server.stop()
  t.pass('stop can be called twice')
})

test('extra arguments reach the server', async (t) => {
  const server = await startRedis(t, { args: ['--maxmemory', '1mb'] })
  t.same(await client(t, server.port).config('GET', 'maxmemory'), ['maxmemory', String(1024 * 1024)])
})

test('a server started with a test is stopped by that test\'s teardown', async (t) => {
  let port = 0
  let pid = 0
  await t.test('owner', async (t) => {
    const server = await startRedis(t)
    port = server.port
    pid = server.pid
    t.equal(await sendCommand(port, ['PING']), 'PONG')
  })
  t.ok(await isPortClosed(port), 'port is closed once the owning test ended')
  t.notOk(isProcessAlive(pid), 'process is gone')
})

test('a missing redis-server is reported with the way to install it', async (t) => {
  const emptyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fds-no-redis-'))
  const originalPath = process.env.PATH
  process.env.PATH = emptyDir
  t.teardown(() => {
    process.env.PATH = originalPath
    fs.rmSync(emptyDir, { recursive: true, force: true })
  })
  await t.rejects(startRedis(), {
    message: 'redis-server not found: install it (Debian: apt-get install -y redis-server) to run the tests',
  })
})

test('a cluster of 3 masters and 3 replicas is ready with all 16384 slots covered', async (t) => {
  const startedAt = Date.now()
  const cluster = await startRedisCluster(t)
  t.comment(`cluster started in ${Date.now() - startedAt} ms`)
  t.equal(cluster.nodes.length, 6)
  t.same(cluster.startupNodes, cluster.nodes.map(({ host, port }) => ({ host, port })))

  for (const node of cluster.nodes) {
    const nodeClient = client(t, node.port)
    const info = await nodeClient.cluster('INFO')
    nodeClient.disconnect()
    t.match(info, /cluster_state:ok/, `node ${node.port} reports cluster_state:ok`)
    t.match(info, /cluster_slots_assigned:16384/, `node ${node.port} sees all slots assigned`)
  }
  const topologyClient = client(t, cluster.nodes[0]!.port)
  const topology = String(await topologyClient.cluster('NODES'))
  topologyClient.disconnect()
  const roles = topology.trim().split('\n').map((line) => line.split(' ')[2]!)
  t.equal(roles.filter((flags) => flags.split(',').includes('master')).length, 3, '3 masters')
  t.equal(roles.filter((flags) => flags.split(',').includes('slave')).length, 3, '3 replicas')

  const redis = new Cluster(cluster.startupNodes, { redisOptions: { maxRetriesPerRequest: 0 } })
  t.teardown(() => redis.disconnect())
  const keys = ['a', 'b', 'c', 'd', 'e', 'f']
  for (const key of keys) await redis.set(key, `value-${key}`)
  t.same(await Promise.all(keys.map((key) => redis.get(key))), keys.map((key) => `value-${key}`),
    'keys spread over the masters round-trip')

  // Clients go first, so none of them sees its server vanish and retries.
  redis.disconnect()
  await cluster.stop()
  for (const node of cluster.nodes) t.ok(await isPortClosed(node.port), `node ${node.port} is closed after stop`)
})
