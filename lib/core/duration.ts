const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
/**
 * The one duration syntax: the option schema (plugin/options.ts) checks strings with it, parseDuration reads them.
 * Space around the value and between number and unit is allowed.
 */
export const DURATION_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/

/**
 * A duration in milliseconds from a number (milliseconds) or a string such as '30m', '24h', '500ms', '7d'.
 * Returns null for anything else, including negative, fractional-millisecond or non-finite values.
 */
export function parseDuration (value: unknown): number | null {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? value : null
  }
  if (typeof value !== 'string') return null
  const match = DURATION_PATTERN.exec(value)
  if (match === null) return null
  const ms = Number(match[1]) * (UNITS[match[2] as string] as number)
  return Number.isSafeInteger(ms) ? ms : null
}

/** Settles like `promise`, or rejects with `new Error(message)` once `timeoutMs` has passed; the timer never outlives it. */
export async function withinTime<T> (promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(message)) }, timeoutMs)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
