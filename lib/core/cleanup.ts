import { randomBytes } from 'node:crypto'
import { atLeast, isResolved } from './bounds'
import { errors } from './errors'
import type { SessionManager } from './manager'

/** Expiry-queue entries removed per script call unless `batchSize` (or the plugin's `cleanup.batchSize`) says otherwise. */
export const DEFAULT_CLEANUP_BATCH_SIZE = 500

/** The subset of a pino / Fastify logger the service writes to. */
export interface CleanupLogger {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

export interface SessionCleanupOptions {
  manager: SessionManager
  /** Milliseconds between runs. Runs are aligned to multiples of it on the wall clock, the same on every instance. */
  intervalMs: number
  /** Expiry-queue entries removed per script call. @default 500 */
  batchSize?: number
  logger?: CleanupLogger
  /**
   * Longest time an instance's claim on an interval keeps the other instances out (stores with a fleet-wide lock).
   * A claim never outlives its interval, so this only matters when it is shorter than `intervalMs`.
   * @default intervalMs
   */
  lockTtlMs?: number
}

export interface CleanupRunResult {
  expired: number
  orphaned: number
  durationMs: number
  /** True when another instance holds this interval's run: nothing was cleaned. */
  skipped: boolean
}

/** Name of the store lock (`Store.tryLock`) that claims an interval. */
const LOCK_NAME = 'cleanup'
/** setTimeout fires at once (with a warning) beyond this delay; longer waits are taken in steps. */
const MAX_TIMER_DELAY_MS = 2_147_483_647
/** The longest a timer waits after an interval starts (see `startDelayMs`). */
const MAX_START_DELAY_MS = 5_000

/**
 * Runs `manager.cleanup()` once per interval, in one instance out of all those that share a Redis.
 *
 * How one run per interval holds: intervals are aligned to the wall clock (interval n is
 * [n * intervalMs, (n + 1) * intervalMs)) and every instance's timer fires once per interval, `startDelayMs` after it
 * begins. The run goes to whoever first takes the store's lock (`Store.tryLock`; Redis: `SET lock owner NX PX ttl`) with a TTL that ends with the
 * interval, so the claim covers the whole interval and is gone before the next interval's timers fire. A successful
 * run keeps its claim (releasing it would let a late instance run the same interval again); a failed run releases it
 * by compare-and-delete, so the interval may be retried. A holder that crashes loses its claim when the lock TTL
 * runs out, at the latest at the end of its interval, and the next interval goes to another instance.
 * A free-running timer with a lock TTL of one interval does not give this: claims drift against the other
 * instances' ticks, so an interval can pass with no run when a claim outlives a tick by a few milliseconds.
 * Clocks of the instances must agree to within `startDelayMs` (up to 5 s, NTP does far better).
 *
 * A run that lasts longer than its interval does not hold the next one: another instance may start the next run
 * meanwhile. That only costs work, since every batch is one atomic script that removes what is due and nothing else.
 * Within one process, runs never overlap. The memory store always grants its lock: every instance cleans its own.
 * Time comes from the manager: its clock (`now`) and its timers, so tests inject both.
 *
 * Events on the manager: `'cleanup'` (CleanupRunResult) after each run, skipped ones included, and `'cleanupError'`
 * (the error) after a failed one.
 */
export class SessionCleanupService {
  readonly manager: SessionManager
  readonly intervalMs: number
  readonly batchSize: number
  readonly lockTtlMs: number
  private readonly logger: CleanupLogger | null
  /** Random value identifying this instance's claims, so it only ever deletes its own. */
  private readonly owner = randomBytes(16).toString('base64url')
  /** Time between the start of an interval and this instance's attempt to claim it; see the class comment. */
  private readonly startDelayMs: number
  private timer: { unref (): unknown } | null = null
  private running: Promise<CleanupRunResult> | null = null

  constructor (options: SessionCleanupOptions) {
    if (options === null || typeof options !== 'object' || typeof options.manager?.cleanup !== 'function') {
      throw new errors.INVALID_OPTION('"manager" is required: a SessionManager')
    }
    this.manager = options.manager
    // Options from the plugin's resolver are already within the bounds of `cleanup.interval` and `cleanup.batchSize`.
    const isTrusted = isResolved(options)
    const check = (name: string, value: unknown, min: number, isInteger: boolean): number =>
      isTrusted ? value as number : atLeast(name, value, min, isInteger)
    this.intervalMs = check('intervalMs', options.intervalMs, 1, false)
    this.batchSize = options.batchSize === undefined ? DEFAULT_CLEANUP_BATCH_SIZE : check('batchSize', options.batchSize, 1, true)
    this.lockTtlMs = options.lockTtlMs === undefined ? this.intervalMs : check('lockTtlMs', options.lockTtlMs, 1, false)
    this.logger = options.logger ?? null
    this.startDelayMs = Math.min(Math.ceil(this.intervalMs / 10), MAX_START_DELAY_MS)
  }

  /** Starts the timer (unref'ed: it never keeps the process alive). Calling it again does nothing. */
  start (): void {
    if (this.timer === null) this.scheduleNext()
  }

  /** Stops the timer and waits for a run in progress. */
  async stop (): Promise<void> {
    if (this.timer !== null) this.manager.timers.clearTimeout(this.timer)
    this.timer = null
    // A failed run has already been logged and reported as 'cleanupError'.
    await this.running?.catch(() => {})
  }

  /**
   * One run now, unless another instance holds the current interval (`skipped: true`). While a run is in progress
   * in this process, calling it again returns that run. Rejects when the run fails.
   */
  runOnce (): Promise<CleanupRunResult> {
    this.running ??= this.run().finally(() => { this.running = null })
    return this.running
  }

  private scheduleNext (): void {
    const now = this.manager.now()
    this.arm((Math.floor(now / this.intervalMs) + 1) * this.intervalMs + this.startDelayMs)
  }

  private arm (runAt: number): void {
    const timer = this.manager.timers.setTimeout(() => { this.onTimer(runAt) }, Math.max(1, Math.min(runAt - this.manager.now(), MAX_TIMER_DELAY_MS)))
    timer.unref()
    this.timer = timer
  }

  private onTimer (runAt: number): void {
    // Early (timers round to the millisecond) or one step of a wait longer than setTimeout allows: wait on.
    if (this.manager.now() < runAt) {
      this.arm(runAt)
      return
    }
    // The next run is scheduled before this one starts, so no failure of this one can stop the timer.
    this.scheduleNext()
    if (this.running !== null) {
      this.logger?.warn({ intervalMs: this.intervalMs }, 'fastify-distributed-session: the previous session cleanup is still running; skipping this interval')
      return
    }
    this.runOnce().catch(() => {})
  }

  private async run (): Promise<CleanupRunResult> {
    const started = performance.now()
    let isClaimed = false
    let result: CleanupRunResult
    try {
      isClaimed = await this.claim()
      if (isClaimed) {
        const { expired, orphaned } = await this.manager.cleanup(this.batchSize)
        result = { expired, orphaned, durationMs: performance.now() - started, skipped: false }
      } else {
        result = { expired: 0, orphaned: 0, durationMs: performance.now() - started, skipped: true }
      }
    } catch (error) {
      if (isClaimed) await this.release()
      this.logger?.error({ err: error }, 'fastify-distributed-session: session cleanup failed')
      this.manager.emit('cleanupError', error)
      throw error
    }
    if (!result.skipped) {
      this.logger?.info({ expired: result.expired, orphaned: result.orphaned, durationMs: Math.round(result.durationMs) },
        'fastify-distributed-session: session cleanup')
    }
    this.manager.emit('cleanup', result)
    return result
  }

  /** True when this instance may run the current interval: it has just claimed it, or had claimed it before. */
  private async claim (): Promise<boolean> {
    const now = this.manager.now()
    const intervalEnd = (Math.floor(now / this.intervalMs) + 1) * this.intervalMs
    const ttl = Math.max(1, Math.ceil(Math.min(this.lockTtlMs, intervalEnd - now)))
    return await this.manager.store.tryLock(LOCK_NAME, this.owner, ttl)
  }

  private async release (): Promise<void> {
    try {
      await this.manager.store.release(LOCK_NAME, this.owner)
    } catch (error) {
      // The lock then runs out at the end of the interval, as a crashed holder's would.
      this.logger?.warn({ err: error }, 'fastify-distributed-session: could not release the session cleanup lock')
    }
  }
}
