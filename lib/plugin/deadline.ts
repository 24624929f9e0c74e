import { performance } from 'node:perf_hooks'

/** The reason to reject with: what `reason` returns, or what it throws (a throw must not escape a timer). */
function settle (reason: () => unknown): unknown {
  try {
    return reason()
  } catch (error) {
    return error
  }
}

/**
 * One bounded call, linked into the queue while it is pending. It leaves the queue the moment its call settles: an
 * entry kept until its deadline (2 s by default) outlives two scavenges, so every call's entry was copied twice and
 * promoted to the old generation; at 10k requests/s that made the young-generation GC ~6x busier.
 */
class Entry {
  prev: Entry | null = null
  next: Entry | null = null
  isSettled = false

  constructor (
    readonly deadline: number,
    readonly reject: (reason: unknown) => void,
    readonly onTimeout: () => unknown
  ) {}
}

const MIN_TICK_MS = 5
const MAX_TICK_MS = 250

/**
 * Bounds store calls by one timeout without a timer per call. Every call gets the same timeout, so deadlines come in
 * insertion order: pending calls form a list, oldest first, and one interval timer expires them from its head. A
 * call that settles leaves the list at once. The timer runs only while calls are pending, and like a per-call
 * setTimeout it keeps the process alive until they are settled. A call times out between `timeoutMs` and `timeoutMs`
 * plus one tick (1/8 of it, 5 to 250 ms) after it started.
 */
export class DeadlineQueue {
  private head: Entry | null = null
  private tail: Entry | null = null
  private pending = 0
  private timer: NodeJS.Timeout | null = null
  private readonly tickMs: number

  constructor (readonly timeoutMs: number) {
    this.tickMs = Math.max(MIN_TICK_MS, Math.min(MAX_TICK_MS, Math.floor(timeoutMs / 8)))
  }

  /** Settles like `promise`, or calls `onTimeout` for the rejection reason once the deadline has passed. */
  bound<T> (promise: Promise<T>, onTimeout: () => unknown, onError: (error: unknown) => unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => { this.watch(promise, onTimeout, onError, resolve, reject) })
  }

  /**
   * `bound` in callback style, for the request path: exactly one of `resolve` (with the value of `promise`) and
   * `reject` (with `onError`'s mapping of its error, or `onTimeout`'s reason once the deadline has passed) is called,
   * once, and no promise is made beyond the one `promise.then` returns.
   */
  watch<T> (promise: Promise<T>, onTimeout: () => unknown, onError: (error: unknown) => unknown,
    resolve: (value: T) => void, reject: (reason: unknown) => void): void {
    const entry = new Entry(performance.now() + this.timeoutMs, reject, onTimeout)
    this.push(entry)
    promise.then((value) => {
      if (this.release(entry)) resolve(value)
    }, (error: unknown) => {
      if (this.release(entry)) reject(settle(() => onError(error)))
    })
  }

  /** Calls still pending (for tests). */
  get size (): number {
    return this.pending
  }

  /** Whether the sweep timer runs (for tests). */
  get isTicking (): boolean {
    return this.timer !== null
  }

  private push (entry: Entry): void {
    entry.prev = this.tail
    if (this.tail === null) this.head = entry
    else this.tail.next = entry
    this.tail = entry
    this.pending++
    if (this.timer === null) this.timer = setInterval(() => this.sweep(), this.tickMs)
  }

  /** Takes a call that has just settled off the list; false when its deadline came first. */
  private release (entry: Entry): boolean {
    if (entry.isSettled) return false
    entry.isSettled = true
    const { prev, next } = entry
    if (prev === null) this.head = next
    else prev.next = next
    if (next === null) this.tail = prev
    else next.prev = prev
    entry.prev = null
    entry.next = null
    this.pending--
    return true
  }

  private sweep (): void {
    const now = performance.now()
    // A `watch` caller's reject runs its request on here (the plugin answers 503): one that throws must not keep the
    // calls behind it waiting for another tick. The first throw is thrown again once every due call is rejected.
    let thrown: { error: unknown } | null = null
    while (this.head !== null && this.head.deadline <= now) {
      const entry = this.head
      this.release(entry)
      try {
        entry.reject(settle(entry.onTimeout))
      } catch (error) {
        thrown ??= { error }
      }
    }
    if (this.head === null && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = null
    }
    if (thrown !== null) throw thrown.error
  }
}
