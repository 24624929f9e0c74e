// The bench's own redis-server, from the launcher the tests use (test/helpers/launcher.cjs): a free port, no
// persistence, a temporary directory, killed when the bench exits. Never the Redis that may already run on this
// machine (6379 is skipped even when free). `startRedis()` resolves { port, url, pid, stop, ... }.
export { freePort, startRedis } from '../test/helpers/launcher.cjs'

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
