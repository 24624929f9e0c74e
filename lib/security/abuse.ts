import { atLeast, isResolved } from '../core/bounds'

/**
 * Detection of invalid-token floods: session id guessing and brute force (OWASP Session Management Cheat Sheet,
 * "Session ID Guessing and Brute Force Detection").
 *
 * Counted in process: an invalid token is the one request path an attacker fully controls, so it must not cost a
 * Redis round trip. Each instance counts its own traffic; behind a load balancer spreading a client over N
 * instances, that client presents up to N times the threshold before every instance has fired.
 *
 * The window is fixed per client and starts at that client's first invalid token; the count starts over once
 * `windowMs` has passed since then. One counter per client keeps memory at a few numbers per address, at the
 * price of the fixed-window edge: a burst straddling the end of a window can reach almost twice the threshold
 * before it fires.
 */
export interface AbuseOptions {
  /** Invalid tokens a client may present per window; the next one fires. @default 20 */
  threshold: number
  /** @default 60_000 */
  windowMs: number
  /** How long a client stays blocked once it fires; 0 only reports. @default 0 */
  blockMs: number
  /**
   * At most this many clients are tracked; past it the entry with the oldest window is evicted, a block included.
   * @default 10_000
   */
  maxTrackedClients: number
}

export const DEFAULT_ABUSE_OPTIONS: Readonly<AbuseOptions> = Object.freeze({
  threshold: 20,
  windowMs: 60_000,
  blockMs: 0,
  maxTrackedClients: 10_000
})

interface ClientEntry {
  windowStart: number
  count: number
  /** 0 when the client is not blocked. */
  blockedUntil: number
}

export class InvalidTokenTracker {
  readonly threshold: number
  readonly windowMs: number
  readonly blockMs: number
  readonly maxTrackedClients: number
  readonly #now: () => number
  /** Insertion order is window-start order: a new window re-inserts its entry. */
  readonly #clients = new Map<string, ClientEntry>()

  constructor (options: Partial<AbuseOptions> = {}, now: () => number = Date.now) {
    // Options from the plugin's resolver are already within the bounds of the `security.*` options.
    const isTrusted = isResolved(options)
    const integerOption = (name: keyof AbuseOptions, value: unknown, min: number): number =>
      isTrusted ? value as number : atLeast(name, value, min, true)
    this.threshold = integerOption('threshold', options.threshold ?? DEFAULT_ABUSE_OPTIONS.threshold, 1)
    this.windowMs = integerOption('windowMs', options.windowMs ?? DEFAULT_ABUSE_OPTIONS.windowMs, 1)
    this.blockMs = integerOption('blockMs', options.blockMs ?? DEFAULT_ABUSE_OPTIONS.blockMs, 0)
    this.maxTrackedClients = integerOption('maxTrackedClients', options.maxTrackedClients ?? DEFAULT_ABUSE_OPTIONS.maxTrackedClients, 1)
    this.#now = now
  }

  /** How many clients are tracked. */
  get size (): number {
    return this.#clients.size
  }

  /**
   * Counts one unknown or malformed token presented by `ip`. `crossed` is true for exactly one call per window:
   * the one that takes the count past the threshold, so the caller records one security event, not thousands.
   * From that moment the client is blocked for `blockMs`.
   */
  record (ip: string): { count: number, crossed: boolean } {
    const now = this.#now()
    let entry = this.#clients.get(ip)
    if (entry !== undefined && now - entry.windowStart >= this.windowMs) {
      // Moving the entry to the end keeps eviction on the stalest window; a running block survives the reset.
      this.#clients.delete(ip)
      entry.windowStart = now
      entry.count = 0
      this.#clients.set(ip, entry)
    } else if (entry === undefined) {
      if (this.#clients.size >= this.maxTrackedClients) this.#evictOldest()
      entry = { windowStart: now, count: 0, blockedUntil: 0 }
      this.#clients.set(ip, entry)
    }
    entry.count++
    const crossed = entry.count === this.threshold + 1
    if (crossed && this.blockMs > 0) entry.blockedUntil = now + this.blockMs
    return { count: entry.count, crossed }
  }

  /** Whether `ip` is blocked now. One Map lookup; the clock is read only for a blocked client. */
  isBlocked (ip: string): boolean {
    const entry = this.#clients.get(ip)
    if (entry === undefined || entry.blockedUntil === 0) return false
    const now = this.#now()
    if (now < entry.blockedUntil) return true
    entry.blockedUntil = 0
    if (now - entry.windowStart >= this.windowMs) this.#clients.delete(ip)
    return false
  }

  #evictOldest (): void {
    // Only called when the map holds maxTrackedClients >= 1 entries, so there is a first key.
    this.#clients.delete(this.#clients.keys().next().value as string)
  }
}
