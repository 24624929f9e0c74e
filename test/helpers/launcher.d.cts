// Types for launcher.cjs, the process launcher shared by the tests and the bench.

/** The part of a tap Test this helper uses, so any Test (or subtest) can own a server. */
export interface Teardownable {
  teardown (fn: () => unknown): void
}

export interface StartRedisOptions {
  /** Extra `redis-server` arguments, e.g. `['--maxmemory', '1mb']`. */
  args?: string[]
}

export interface RedisServer {
  host: '127.0.0.1'
  port: number
  url: string
  pid: number
  /** The server's working directory; `redis.log` in it holds the server's stdout and stderr. */
  dir: string
  /** SIGCONT and SIGTERM, then SIGKILL after 3 s; removes `dir`. Safe to call more than once. */
  stop (): Promise<void>
  /** Sends a signal without waiting or cleaning up, to simulate a crash (SIGKILL) or a hang (SIGSTOP). */
  kill (signal?: NodeJS.Signals): void
}

export interface RedisCluster {
  nodes: RedisServer[]
  startupNodes: Array<{ host: '127.0.0.1', port: number }>
  stop (): Promise<void>
}

export declare const HOST: '127.0.0.1'
export declare const START_TIMEOUT_MS: number
export declare function freePort (): Promise<number>
export declare function sendCommand (port: number, args: string[], timeoutMs?: number): Promise<string>
export declare function startRedis (t?: Teardownable, opts?: StartRedisOptions): Promise<RedisServer>
export declare function startProcess (t: Teardownable | undefined, port: number, lines: string[], isSentinel?: boolean): Promise<RedisServer>
export declare function startRedisCluster (t?: Teardownable): Promise<RedisCluster>
