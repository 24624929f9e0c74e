import { parseDuration } from './duration'
import { errors } from './errors'
import { MAX_METADATA_KEYS_CEILING } from './metadata'

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

interface Bound {
  min: number
  max: number
}

/**
 * The bounds of every duration option (milliseconds), by its documented name. They keep every script valid:
 * deadlines, TTLs and the audit stream's MINID stay positive integers Redis accepts, and timers fit Node's.
 * docs/configuration.md lists the same table.
 */
export const DURATION_BOUNDS = {
  idleTimeout: { min: SECOND, max: 365 * DAY },
  absoluteTimeout: { min: SECOND, max: 400 * DAY },
  touchInterval: { min: 0, max: DAY },
  storeTimeout: { min: 1, max: MINUTE },
  'cleanup.interval': { min: SECOND, max: 30 * DAY },
  'nearCache.maxAge': { min: 1, max: HOUR },
  'security.rapidCreationWindow': { min: 0, max: DAY },
  'security.invalidTokenWindow': { min: SECOND, max: DAY },
  'security.blockAfter': { min: SECOND, max: DAY },
  'audit.retention': { min: 0, max: 365 * DAY },
  'startupCheck.timeout': { min: 100, max: MINUTE },
  /** `reply.startSession(userId, { ttl })` and `manager.create(..., { ttl })`. */
  ttl: { min: SECOND, max: 400 * DAY }
} satisfies Record<string, Bound>

/** The bounds of every count option, by its documented name. */
export const COUNT_BOUNDS = {
  maxSessionsPerUser: { min: 1, max: 1000 },
  maxMetadataBytes: { min: 2, max: 1_048_576 },
  maxMetadataKeys: { min: 1, max: MAX_METADATA_KEYS_CEILING },
  'audit.maxEventsPerUser': { min: 1, max: 1_000_000 },
  'cleanup.batchSize': { min: 1, max: 10_000 },
  'nearCache.maxEntries': { min: 1, max: 10_000_000 },
  'security.maxDistinctIps': { min: 0, max: 1000 },
  'security.maxDistinctUserAgents': { min: 0, max: 1000 },
  'security.invalidTokenThreshold': { min: 1, max: 1_000_000 }
} satisfies Record<string, Bound>

export type DurationOption = keyof typeof DURATION_BOUNDS
export type CountOption = keyof typeof COUNT_BOUNDS

/** A duration in words: 86400000 -> '1 day', 1500 -> '1500 ms'. */
export function formatDuration (ms: number): string {
  const units: Array<[number, string]> = [[DAY, 'day'], [HOUR, 'hour'], [MINUTE, 'minute'], [SECOND, 'second']]
  for (const [size, name] of units) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${name}${ms === size ? '' : 's'}`
  }
  return `${ms} ms`
}

/** A value as an error message shows it; never throws (a BigInt or a circular object cannot be JSON). */
export function shown (value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return typeof value === 'bigint' ? `${String(value)}n` : `a value of type ${typeof value} that cannot be shown as JSON`
  }
}

/**
 * Marks an options object the plugin's resolver (plugin/options.ts) produced: the component takes its values as they
 * are instead of validating them again. Internal, never exported from the package.
 */
export const kResolved = Symbol('fastify-distributed-session.resolved')

/** `options`, marked as produced by the plugin's resolver (see kResolved). */
export function markResolved<T extends object> (options: T): T {
  return Object.assign(options, { [kResolved]: true })
}

/** Whether `options` came from the plugin's resolver (see kResolved). */
export function isResolved (options: object): boolean {
  return (options as { [kResolved]?: unknown })[kResolved] === true
}

/**
 * A number option with only a lower bound, as the classes a user builds directly take it (SessionCleanupService,
 * InvalidTokenTracker); throws FST_SESSION_INVALID_OPTION naming it.
 */
export function atLeast (name: string, value: unknown, min: number, isInteger: boolean): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (isInteger && !Number.isSafeInteger(value))) {
    throw new errors.INVALID_OPTION(`"${name}" must be ${isInteger ? 'an integer' : 'a number'} >= ${min}, got ${typeof value === 'number' ? String(value) : shown(value)}`)
  }
  return value
}

/** The option's value in milliseconds, `fallback` when absent; throws FST_SESSION_INVALID_OPTION naming it. */
export function boundedDuration (name: DurationOption, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  const { min, max } = DURATION_BOUNDS[name]
  const ms = parseDuration(value)
  if (ms === null || ms < min || ms > max) {
    throw new errors.INVALID_OPTION(`"${name}" must be a duration from ${formatDuration(min)} to ${formatDuration(max)} ` +
      `(milliseconds, or a string such as '500ms', '30s', '30m', '24h', '7d'), got ${shown(value)}`)
  }
  return ms
}

/** The option's integer value, `fallback` when absent; throws FST_SESSION_INVALID_OPTION naming it. */
export function boundedCount (name: CountOption, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  const { min, max } = COUNT_BOUNDS[name]
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new errors.INVALID_OPTION(`"${name}" must be an integer from ${min} to ${max}, got ${shown(value)}`)
  }
  return value
}
