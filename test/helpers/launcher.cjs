'use strict'
// The one process launcher for real redis-server, Sentinel and Cluster processes, shared by the tests (through the
// typed wrappers test/helpers/redis.ts and sentinel.ts) and the bench (bench/redis.mjs). Plain CommonJS so that both
// can load it: the tests are CommonJS TypeScript on Node 20, which cannot require() an ES module, and an .mjs bench
// can import a .cjs file. Each server runs on a free port of 127.0.0.1 (never 6379, the Redis that may already run on
// this machine), in its own temporary directory, and is killed when the process that started it ends.
const { spawn, execFile } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { onExit } = require('signal-exit')

const HOST = '127.0.0.1'
const START_TIMEOUT_MS = 10_000
const STOP_GRACE_MS = 3_000
const CLUSTER_SLOTS = 16384
const MAX_START_ATTEMPTS = 5
const NOT_FOUND_MESSAGE = 'redis-server not found: install it (Debian: apt-get install -y redis-server) to run the tests'

// Every server started by this process and not yet stopped: the exit hook kills what the caller did not stop.
const running = new Set()
// Ports handed out by this process; the OS may hand back a port we released but a server has not yet bound.
const reservedPorts = new Set()

let isExitHookInstalled = false

function killAllNow () {
  for (const entry of running) {
    if (entry.child.exitCode === null && entry.child.signalCode === null) entry.child.kill('SIGKILL')
    fs.rmSync(entry.dir, { recursive: true, force: true })
  }
  running.clear()
}

function installExitHook () {
  if (isExitHookInstalled) return
  isExitHookInstalled = true
  // signal-exit, which tap itself uses, also runs this when the process dies of a signal (tap's timeout sends
  // SIGALRM), where Node emits no 'exit'. A plain process.on(signal) listener would keep the process alive instead.
  onExit(killAllNow)
}

function findExecutable (name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue
    const candidate = path.join(dir, name)
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

function requireExecutable (name) {
  const found = findExecutable(name)
  if (found === undefined) {
    throw new Error(name === 'redis-server'
      ? NOT_FOUND_MESSAGE
      : `${name} not found: install it (Debian: apt-get install -y redis-server, which brings ${name}) to run the tests`)
  }
  return found
}

function listenOnce (port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once('error', reject)
    server.listen(port, HOST, () => {
      const address = server.address()
      server.close(() => resolve(address.port))
    })
  })
}

/** A free port of 127.0.0.1, never 6379 and never one this process already handed out. */
async function freePort () {
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const port = await listenOnce(0)
      if (port === 6379 || reservedPorts.has(port)) continue
      reservedPorts.add(port)
      return port
    } catch (err) {
      if (err.code !== 'EADDRINUSE') throw err
    }
  }
  throw new Error('no free port found on 127.0.0.1')
}

/** Sends one command over a fresh socket and returns the reply as text; a Redis error reply rejects. */
function sendCommand (port, args, timeoutMs = 1000) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port })
    let buffer = Buffer.alloc(0)
    const finish = (err, reply) => {
      socket.destroy()
      if (err) reject(err)
      else resolve(reply)
    }
    socket.setTimeout(timeoutMs, () => finish(new Error(`no reply from 127.0.0.1:${port} in ${timeoutMs} ms`)))
    socket.once('error', (err) => finish(err))
    socket.once('connect', () => {
      socket.write(`*${args.length}\r\n` + args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join(''))
    })
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk])
      const lineEnd = buffer.indexOf('\r\n')
      if (lineEnd === -1) return
      const type = String.fromCharCode(buffer[0])
      const line = buffer.subarray(1, lineEnd).toString()
      if (type === '-') return finish(new Error(line))
      if (type !== '$') return finish(null, line)
      const length = Number(line)
      if (length < 0) return finish(null, '')
      const bodyStart = lineEnd + 2
      if (buffer.length < bodyStart + length + 2) return
      finish(null, buffer.subarray(bodyStart, bodyStart + length).toString())
    })
  })
}

function hasExited (child) {
  return child.exitCode !== null || child.signalCode !== null
}

function waitForExit (child, timeoutMs) {
  if (hasExited(child)) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

function readLog (dir) {
  try {
    return fs.readFileSync(path.join(dir, 'redis.log'), 'utf8').trim().split('\n').slice(-5).join('\n')
  } catch {
    return ''
  }
}

/**
 * Spawns one redis-server on `port` and waits for PING. With `configLines`, the settings go into a config file
 * given as the first argument (a sentinel needs a writable one); otherwise they are command-line arguments.
 * Resolves `{ isPortTaken: true }` when another process bound the port first.
 */
async function spawnOnce (port, { args = [], configLines, isSentinel = false, extraPorts = [] }) {
  const binary = requireExecutable('redis-server')
  installExitHook()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), isSentinel ? 'fds-sentinel-' : 'fds-redis-'))
  const base = ['--port', String(port), '--bind', HOST, '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no']
  let argv
  if (configLines === undefined) {
    argv = [...base, ...args]
  } else {
    const config = path.join(dir, isSentinel ? 'sentinel.conf' : 'redis.conf')
    fs.writeFileSync(config, [`port ${port}`, `bind ${HOST}`, `dir ${dir}`, 'save ""', 'appendonly no', ...configLines, ''].join('\n'))
    argv = isSentinel ? [config, '--sentinel', ...args] : [config, ...args]
  }
  const log = fs.openSync(path.join(dir, 'redis.log'), 'a')
  let child
  try {
    child = spawn(binary, argv, { cwd: dir, stdio: ['ignore', log, log] })
  } finally {
    fs.closeSync(log)
  }
  const entry = { child, dir }
  running.add(entry)
  // A failed spawn (ENOENT, EACCES) shows up as an 'error' event; without a listener it would crash the caller.
  let spawnError
  child.once('error', (err) => { spawnError = err })

  let stopping
  const stop = () => {
    stopping ??= (async () => {
      if (!hasExited(child)) {
        // A server a test froze with SIGSTOP must run again to act on SIGTERM.
        child.kill('SIGCONT')
        child.kill('SIGTERM')
        if (!await waitForExit(child, STOP_GRACE_MS)) {
          child.kill('SIGKILL')
          await waitForExit(child, STOP_GRACE_MS)
        }
      }
      running.delete(entry)
      for (const used of [port, ...extraPorts]) reservedPorts.delete(used)
      await fs.promises.rm(dir, { recursive: true, force: true })
    })()
    return stopping
  }

  const name = `redis-server${isSentinel ? ' --sentinel' : ''} on port ${port}`
  const deadline = Date.now() + START_TIMEOUT_MS
  while (true) {
    if (spawnError !== undefined) {
      await stop()
      throw spawnError
    }
    if (hasExited(child)) {
      const tail = readLog(dir)
      await stop()
      if (/address already in use/i.test(tail)) return { isPortTaken: true }
      throw new Error(`${name} exited during startup:\n${tail}`)
    }
    try {
      if (await sendCommand(port, ['PING'], 500) === 'PONG') break
    } catch {}
    if (Date.now() > deadline) {
      const tail = readLog(dir)
      await stop()
      throw new Error(`${name} did not answer PING within ${START_TIMEOUT_MS} ms:\n${tail}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }

  return {
    server: {
      host: HOST,
      port,
      url: `redis://${HOST}:${port}`,
      pid: child.pid,
      dir,
      stop,
      kill: (signal = 'SIGKILL') => { child.kill(signal) },
    },
  }
}

async function launch (extraArgs, withClusterBus = false) {
  requireExecutable('redis-server')
  for (let attempt = 1; attempt <= MAX_START_ATTEMPTS; attempt++) {
    const port = await freePort()
    // The cluster bus port defaults to port + 10000, which may be taken or above 65535: pick a free one too.
    const busPorts = withClusterBus ? [await freePort()] : []
    const busArgs = busPorts.flatMap((busPort) => ['--cluster-port', String(busPort)])
    const result = await spawnOnce(port, { args: [...extraArgs, ...busArgs], extraPorts: busPorts })
    if ('server' in result) return result.server
    // Another process took the port between our probe and the server's bind: try another one.
  }
  throw new Error(`redis-server could not bind a free port in ${MAX_START_ATTEMPTS} attempts`)
}

/**
 * Starts a fresh redis-server on a free port of 127.0.0.1 and waits until it answers PING.
 * With a tap Test, the server is stopped in that test's teardown.
 */
async function startRedis (t, opts = {}) {
  const server = await launch(opts.args ?? [])
  t?.teardown(server.stop)
  return server
}

/**
 * Spawns `redis-server <config> [--sentinel]` with a config file holding `lines` (plus port, bind and dir) and
 * waits for PING. The port is the caller's: an outage test restarts a server on the port its clients know.
 */
async function startProcess (t, port, lines, isSentinel = false) {
  const result = await spawnOnce(port, { configLines: lines, isSentinel })
  if (!('server' in result)) throw new Error(`port ${port} is taken by another process`)
  t?.teardown(result.server.stop)
  return result.server
}

function parseInfo (text) {
  const fields = new Map()
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1))
  }
  return fields
}

async function isClusterReady (port, nodeCount) {
  try {
    const info = parseInfo(await sendCommand(port, ['CLUSTER', 'INFO']))
    return info.get('cluster_state') === 'ok' &&
      info.get('cluster_slots_assigned') === String(CLUSTER_SLOTS) &&
      info.get('cluster_slots_ok') === String(CLUSTER_SLOTS) &&
      info.get('cluster_known_nodes') === String(nodeCount)
  } catch {
    return false
  }
}

/**
 * Whether this node's view of the cluster (CLUSTER NODES) already shows `masters` masters and `replicas` replicas:
 * the roles reach the other nodes by gossip, after `--cluster create` has returned and after the replicas synced.
 */
async function seesRoles (port, masters, replicas) {
  try {
    const roles = String(await sendCommand(port, ['CLUSTER', 'NODES'])).trim().split('\n').map((line) => line.split(' ')[2].split(','))
    return roles.filter((flags) => flags.includes('master')).length === masters &&
      roles.filter((flags) => flags.includes('slave')).length === replicas
  } catch {
    return false
  }
}

/** A master, or a replica whose link to its master is up (its first sync is done). */
async function isReplicationReady (port) {
  try {
    const info = parseInfo(await sendCommand(port, ['INFO', 'replication']))
    return info.get('role') === 'master' || info.get('master_link_status') === 'up'
  } catch {
    return false
  }
}

function runRedisCli (args) {
  const binary = requireExecutable('redis-cli')
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`))
      else resolve()
    })
  })
}

/**
 * Starts a Redis Cluster of 3 masters and 3 replicas, each its own redis-server, and waits until every node
 * reports cluster_state:ok with all 16384 slots assigned, every replica has synced with its master, and every node
 * sees 3 masters and 3 replicas.
 * With a tap Test, it is stopped in that test's teardown.
 */
async function startRedisCluster (t) {
  requireExecutable('redis-server')
  requireExecutable('redis-cli')
  const nodeCount = 6
  const nodes = []
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop()))
  }
  t?.teardown(stop)

  try {
    const started = await Promise.allSettled(Array.from({ length: nodeCount }, () => launch([
      '--cluster-enabled', 'yes',
      '--cluster-config-file', 'nodes.conf',
      '--cluster-node-timeout', '1000',
      // Replicas sync at once instead of after the default 5 s, so a failover test can start right away.
      '--repl-diskless-sync-delay', '0',
    ], true)))
    for (const result of started) {
      if (result.status === 'fulfilled') nodes.push(result.value)
    }
    const failed = started.find((result) => result.status === 'rejected')
    if (failed !== undefined) throw failed.reason

    await runRedisCli([
      '--cluster', 'create',
      ...nodes.map((node) => `${node.host}:${node.port}`),
      '--cluster-replicas', '1',
      '--cluster-yes',
    ])

    const deadline = Date.now() + START_TIMEOUT_MS
    while (true) {
      const readiness = await Promise.all(nodes.map(async (node) =>
        await isClusterReady(node.port, nodeCount) && await isReplicationReady(node.port) &&
        await seesRoles(node.port, nodeCount / 2, nodeCount / 2)))
      if (readiness.every(Boolean)) break
      if (Date.now() > deadline) throw new Error(`redis cluster not ready within ${START_TIMEOUT_MS} ms`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  } catch (err) {
    await stop()
    throw err
  }

  return {
    nodes,
    startupNodes: nodes.map((node) => ({ host: node.host, port: node.port })),
    stop,
  }
}

module.exports = { HOST, START_TIMEOUT_MS, freePort, sendCommand, startRedis, startProcess, startRedisCluster }
