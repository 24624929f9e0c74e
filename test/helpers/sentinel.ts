import { setTimeout as sleep } from 'node:timers/promises'
// Redis Sentinel for the tests: a master, one replica and three sentinels, all real processes on free ports of
// 127.0.0.1. The master and the replica come from startRedis; a sentinel needs a writable config file as its first
// argument, which startRedis cannot give, so this file spawns sentinels itself (and, for the outage tests, a
// redis-server on a port chosen by the caller, to restart a server where it was).
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { onExit } from 'signal-exit'
import { sendCommand, startRedis, type RedisServer, type Teardownable } from './redis'

const HOST = '127.0.0.1'
const START_TIMEOUT_MS = 10_000
const STOP_GRACE_MS = 3_000
export const MASTER_NAME = 'mymaster'

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

/** A redis-server (or sentinel) process this file started. */
export interface ProcessServer {
  host: typeof HOST
  port: number
  pid: number
  dir: string
  stop (): Promise<void>
  kill (signal?: NodeJS.Signals): void
}

const running = new Set<ChildProcess>()
let isExitHookInstalled = false

function installExitHook (): void {
  if (isExitHookInstalled) return
  isExitHookInstalled = true
  onExit(() => {
    for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
}

export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => port === 6379 ? resolve(freePort()) : resolve(port))
    })
  })
}

function hasExited (child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

/**
 * Spawns `redis-server <config> [--sentinel]` with a config file holding `lines` (plus port, bind and dir) and
 * waits for PING. The port is the caller's: an outage test restarts a server on the port its clients know.
 */
export async function startProcess (t: Teardownable | undefined, port: number, lines: string[], isSentinel = false): Promise<ProcessServer> {
  installExitHook()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), isSentinel ? 'fds-sentinel-' : 'fds-redis-'))
  const config = path.join(dir, isSentinel ? 'sentinel.conf' : 'redis.conf')
  fs.writeFileSync(config, [`port ${port}`, `bind ${HOST}`, `dir ${dir}`, 'save ""', 'appendonly no', ...lines, ''].join('\n'))
  const log = fs.openSync(path.join(dir, 'redis.log'), 'a')
  let child: ChildProcess
  try {
    child = spawn('redis-server', isSentinel ? [config, '--sentinel'] : [config], { cwd: dir, stdio: ['ignore', log, log] })
  } finally {
    fs.closeSync(log)
  }
  running.add(child)
  let spawnError: Error | undefined
  child.once('error', (error) => { spawnError = error })
  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!hasExited(child)) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGCONT')
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS)
        await exited
        clearTimeout(timer)
      }
      running.delete(child)
      await fs.promises.rm(dir, { recursive: true, force: true })
    })()
    return stopping
  }
  t?.teardown(stop)
  const deadline = Date.now() + START_TIMEOUT_MS
  while (true) {
    if (spawnError !== undefined || hasExited(child) || Date.now() > deadline) {
      const tail = fs.existsSync(path.join(dir, 'redis.log')) ? fs.readFileSync(path.join(dir, 'redis.log'), 'utf8').slice(-500) : ''
      await stop()
      throw spawnError ?? new Error(`redis-server${isSentinel ? ' --sentinel' : ''} on port ${port} did not start:\n${tail}`)
    }
    try {
      if (await sendCommand(port, ['PING'], 500) === 'PONG') break
    } catch {}
    await sleep(25)
  }
  return { host: HOST, port, pid: child.pid as number, dir, stop, kill: (signal = 'SIGKILL') => { child.kill(signal) } }
}

/** Polls `INFO <section>` on a port until `isDone` holds. */
export async function waitForInfo (port: number, section: string, isDone: (info: string) => boolean, timeoutMs = START_TIMEOUT_MS): Promise<string> {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const info = await sendCommand(port, ['INFO', section]).catch(() => '')
    if (isDone(info)) return info
    if (Date.now() > deadline) throw new Error(`INFO ${section} on ${port} never matched within ${timeoutMs} ms:\n${info}`)
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
