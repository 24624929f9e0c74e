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
 * One bounded call. `expire` is dropped as soon as the call settles: the queue keeps an entry until the sweep after
 * its deadline, and an entry that still held the closure would keep the call's promise and its value (a whole
 * session) alive that long, long enough for the garbage collector to promote them to the old generation.
 */
interface Entry {
  deadline: number
  expire: (() => void) | null
}

const MIN_TICK_MS = 5
const MAX_TICK_MS = 250

/**
 * Bounds store calls by one timeout without a timer per call. Every call gets the same timeout, so deadlines
 * come in insertion order: one interval timer expires them from the head of a queue. The timer runs only while
 * calls are pending, and like a per-call setTimeout it keeps the process alive until they are settled. A call times out between `timeoutMs` and `timeoutMs` plus one tick (1/8 of it,
 * 5 to 250 ms) after it started.
 */
export class DeadlineQueue {
  private entries: Entry[] = []
  private head = 0
  private timer: NodeJS.Timeout | null = null
  private readonly tickMs: number

  constructor (readonly timeoutMs: number) {
    this.tickMs = Math.max(MIN_TICK_MS, Math.min(MAX_TICK_MS, Math.floor(timeoutMs / 8)))
  }

  /** Settles like `promise`, or calls `onTimeout` for the rejection reason once the deadline has passed. */
  bound<T> (promise: Promise<T>, onTimeout: () => unknown, onError: (error: unknown) => unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: Entry = {
        deadline: performance.now() + this.timeoutMs,
        expire: () => reject(settle(onTimeout))
      }
      this.push(entry)
      promise.then((value) => {
        if (entry.expire === null) return
        entry.expire = null
        resolve(value)
      }, (error: unknown) => {
        if (entry.expire === null) return
        entry.expire = null
        reject(settle(() => onError(error)))
      })
    })
  }

  /** Pending calls, settled ones included until they leave the queue (for tests). */
  get size (): number {
    return this.entries.length - this.head
  }

  private push (entry: Entry): void {
    this.entries.push(entry)
    if (this.timer === null) {
      this.timer = setInterval(() => this.sweep(), this.tickMs)
    }
  }

  private sweep (): void {
    const now = performance.now()
    const entries = this.entries
    let head = this.head
    while (head < entries.length) {
      const entry = entries[head] as Entry
      const expire = entry.expire
      if (expire !== null) {
        if (entry.deadline > now) break
        entry.expire = null
        expire()
      }
      head++
    }
    if (head === entries.length) {
      this.entries = []
      this.head = 0
      if (this.timer !== null) clearInterval(this.timer)
      this.timer = null
    } else if (head > 1024 && head * 2 > entries.length) {
      this.entries = entries.slice(head)
      this.head = 0
    } else {
      this.head = head
    }
  }
}
