/**
 * What the plugin needs of a Redis client, described by shape rather than by class: an ioredis `Redis` or `Cluster`
 * of any installed copy (5.x, 6.x, the app's own or a nested one), an iovalkey client, or the `app.redis` of
 * @fastify/redis all fit. A class check (`instanceof`) would only recognise the copy of ioredis this package loaded.
 */
export interface RedisClient {
  /** 'wait', 'connecting', 'ready', 'reconnecting', 'end'... */
  readonly status: string
  /** ioredis and iovalkey set it to true on a Cluster client and false on a standalone (or Sentinel) one. */
  readonly isCluster: boolean
  defineCommand (name: string, definition: { lua: string, numberOfKeys?: number }): void
  get (key: string): Promise<string | null>
  ping (): Promise<string>
  /** Used once, by the startup check, to learn that the user may run scripts. */
  eval (script: string, numberOfKeys: number): Promise<unknown>
  quit (): Promise<unknown>
  disconnect (): void
}

const METHODS = ['defineCommand', 'get', 'ping', 'eval', 'quit', 'disconnect'] as const

/** True for an object with the methods the plugin relies on: a check by shape, which holds across package copies. */
export function isRedisClient (value: unknown): value is RedisClient {
  if (value === null || typeof value !== 'object') return false
  const candidate = value as Record<string, unknown>
  return METHODS.every((name) => typeof candidate[name] === 'function')
}

/** A Cluster client, whichever copy of ioredis (or iovalkey) made it. */
export function isCluster (client: RedisClient): boolean {
  return client.isCluster === true
}
