// The bench's own redis-server: a free port, no persistence, a temporary directory, killed when the bench exits.
// Never the Redis that may already run on this machine (6379 is skipped even when free).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const HOST = '127.0.0.1'
const START_TIMEOUT_MS = 10_000

export function freePort () {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const { port } = server.address()
      server.close(() => port === 6379 ? resolve(freePort()) : resolve(port))
    })
  })
}

function waitForPort (port, deadline) {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const socket = net.connect(port, HOST)
      socket.once('connect', () => {
        socket.end()
        resolve()
      })
      socket.once('error', () => {
        socket.destroy()
        if (Date.now() > deadline) reject(new Error(`redis-server did not listen on ${port}`))
        else setTimeout(attempt, 50)
      })
    }
    attempt()
  })
}

/** Starts redis-server; `stop()` kills it and removes its directory. It is also killed when this process exits. */
export async function startRedis () {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fds-bench-redis-'))
  const child = spawn('redis-server', [
    '--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir,
    '--logfile', path.join(dir, 'redis.log')
  ], { stdio: 'ignore' })
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    fs.rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', kill)
  const exited = new Promise((resolve) => child.once('exit', resolve))
  await Promise.race([
    waitForPort(port, Date.now() + START_TIMEOUT_MS),
    exited.then(() => { throw new Error('redis-server exited at start (is it installed?)') })
  ])
  return {
    port,
    url: `redis://${HOST}:${port}`,
    pid: child.pid,
    async stop () {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000).unref())])
      }
      kill()
      process.removeListener('exit', kill)
    }
  }
}

/** Ctrl-C and SIGTERM still run the 'exit' handlers that kill the bench's redis-server. */
export function exitOnSignals () {
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130))
}

/** INFO sections as { field: value } (numbers where they parse). */
export async function info (client, section) {
  const text = await client.info(section)
  const fields = {}
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon <= 0 || line.startsWith('#')) continue
    const value = line.slice(colon + 1)
    fields[line.slice(0, colon)] = value !== '' && !Number.isNaN(Number(value)) ? Number(value) : value
  }
  return fields
}

/** Calls per command from INFO commandstats, without INFO itself (the bench's own probe). */
export async function commandCalls (client) {
  const stats = await info(client, 'commandstats')
  const calls = {}
  for (const [key, value] of Object.entries(stats)) {
    if (!key.startsWith('cmdstat_') || key === 'cmdstat_info') continue
    const match = /calls=(\d+)/.exec(String(value))
    if (match !== null) calls[key.slice(8)] = Number(match[1])
  }
  return calls
}

/** used_cpu_sys + used_cpu_user of the redis-server process, in seconds. */
export async function redisCpuSeconds (client) {
  const cpu = await info(client, 'cpu')
  return Number(cpu.used_cpu_sys) + Number(cpu.used_cpu_user)
}

export function diffCalls (before, after) {
  const delta = {}
  let total = 0
  for (const [name, calls] of Object.entries(after)) {
    const d = calls - (before[name] ?? 0)
    if (d > 0) {
      delta[name] = d
      total += d
    }
  }
  return { total, byCommand: delta }
}
