import { setTimeout as sleep } from 'node:timers/promises'
// Redis Sentinel for the tests: a master, one replica and three sentinels, all real processes on free ports of
// 127.0.0.1, started by the shared launcher (launcher.cjs). startProcess also restarts a redis-server on a port
// chosen by the caller, for the outage tests.
import {
  HOST,
  START_TIMEOUT_MS,
  freePort,
  sendCommand,
  startProcess,
  startRedis,
  type RedisServer,
  type Teardownable,
} from './launcher.cjs'

export { startProcess }
export const MASTER_NAME = 'mymaster'

/** A redis-server (or sentinel) process the launcher started. */
export type ProcessServer = RedisServer

export interface SentinelSetup {
  /** The master when the setup starts; after a failover it is a replica (or dead). */
  master: RedisServer
  replica: RedisServer
  sentinels: ProcessServer[]
  /** For `new Redis({ sentinels, name })`. */
  sentinelNodes: Array<{ host: typeof HOST, port: number }>
  name: typeof MASTER_NAME
  /** The master's port as the first sentinel reports it. */
  masterPort (): Promise<number>
  stop (): Promise<void>
}

/** Polls `INFO <section>` on a port until `isDone` holds. */
export async function waitForInfo (port: number, section: string, isDone: (info: string) => boolean, timeoutMs = START_TIMEOUT_MS): Promise<string> {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const info = await sendCommand(port, ['INFO', section]).catch(() => '')
    if (isDone(info)) return info
    if (Date.now() > deadline) throw new Error(`INFO ${section} on ${port} never matched within ${timeoutMs} ms:\n${info}`)
    // A real sentinel or replica changes state on its own schedule: poll it.
    await sleep(50)
  }
}

/** `master0:name=mymaster,status=ok,address=127.0.0.1:1234,slaves=1,sentinels=3` as fields. */
export function parseSentinelInfo (info: string): Record<string, string> {
  const line = info.split('\r\n').find((l) => l.startsWith('master0:')) ?? ''
  return Object.fromEntries(line.slice('master0:'.length).split(',').map((pair) => pair.split('=') as [string, string]))
}

/**
 * Starts a master, a replica of it and three sentinels monitoring it (quorum 2, down after 1 s, failover timeout
 * 3 s), and waits until every sentinel knows the replica and the two other sentinels.
 * With a tap Test, everything is stopped in that test's teardown.
 */
export async function startSentinelSetup (t?: Teardownable): Promise<SentinelSetup> {
  const master = await startRedis(t, { args: ['--repl-diskless-sync-delay', '0'] })
  const replica = await startRedis(t, { args: ['--replicaof', HOST, String(master.port)] })
  await waitForInfo(replica.port, 'replication', (info) => info.includes('master_link_status:up'))
  const sentinels: ProcessServer[] = []
  for (let n = 0; n < 3; n++) {
    sentinels.push(await startProcess(t, await freePort(), [
      `sentinel monitor ${MASTER_NAME} ${HOST} ${master.port} 2`,
      `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
      `sentinel failover-timeout ${MASTER_NAME} 3000`,
      `sentinel parallel-syncs ${MASTER_NAME} 1`
    ], true))
  }
  // Sentinels find each other through hello messages on the master, every 2 s.
  for (const sentinel of sentinels) {
    await waitForInfo(sentinel.port, 'sentinel', (info) => {
      const fields = parseSentinelInfo(info)
      return fields.status === 'ok' && fields.slaves === '1' && fields.sentinels === '3'
    }, 15_000)
  }
  return {
    master,
    replica,
    sentinels,
    sentinelNodes: sentinels.map((s) => ({ host: HOST, port: s.port })),
    name: MASTER_NAME,
    masterPort: async () => Number(parseSentinelInfo(await sendCommand(sentinels[0]?.port as number, ['INFO', 'sentinel'])).address?.split(':')[1]),
    stop: async () => { await Promise.all([...sentinels.map((s) => s.stop()), master.stop(), replica.stop()]) }
  }
}
