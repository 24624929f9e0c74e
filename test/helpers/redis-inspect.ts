import type { Redis } from 'ioredis'

/** Every key matching `pattern` (SCAN, never KEYS). */
export async function scanKeys (client: Redis, pattern = '*'): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, found] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    keys.push(...found)
  } while (cursor !== '0')
  return keys
}

/** Every key and value of a Redis as text, whatever the type (for "never stored" assertions). */
export async function dumpRedis (client: Redis): Promise<string> {
  const parts: string[] = []
  for (const key of await scanKeys(client)) {
    parts.push(key)
    const type = await client.type(key)
    if (type === 'string') parts.push(String(await client.get(key)))
    else if (type === 'hash') parts.push(JSON.stringify(await client.hgetall(key)))
    else if (type === 'zset') parts.push(JSON.stringify(await client.zrange(key, '0', '-1', 'WITHSCORES')))
    else if (type === 'stream') parts.push(JSON.stringify(await client.xrange(key, '-', '+')))
    else if (type === 'set') parts.push(JSON.stringify(await client.smembers(key)))
    else if (type === 'list') parts.push(JSON.stringify(await client.lrange(key, 0, -1)))
  }
  return parts.join('\n')
}

/** Calls of one command the server has processed so far (INFO commandstats), 0 before the first. */
export async function commandCalls (client: Redis, command: string): Promise<number> {
  const info = await client.info('commandstats')
  const match = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info)
  return Number(match?.[1] ?? 0)
}

/** Commands the server has processed so far (INFO stats). */
export async function commandsProcessed (client: Redis): Promise<number> {
  const info = await client.info('stats')
  const match = /total_commands_processed:(\d+)/.exec(info)
  return Number(match?.[1])
}
