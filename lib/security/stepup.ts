import { hash } from 'node:crypto'
import { FLAG_RAPID_CREATION } from './concurrency'
import type { ConcurrencyRules, StoredSession } from '../store/types'

/**
 * Step-up and the life of a session after its login (issue 14): confirmation, flags that age, why a session
 * ended, known devices, device names. The stores keep the state; the rules that both stores and the request path
 * share live here, and the Lua scripts interpolate the constants they need from this file.
 */

/** Why a session ended, as `request.sessionEnded.reason` reports it. */
export type SessionEndReason = 'expired' | 'signed_out' | 'revoked' | 'evicted' | 'rotated' | 'reauth_required' | 'unrecognized'

export interface SessionEnded {
  reason: SessionEndReason
  at: Date
}

/** How long an ended session's reason is kept (the tombstone's TTL, and how long an expired record outlives its deadline). */
export const ENDED_SESSION_MEMORY_MS = 24 * 3_600_000
/** Longest device name (characters). */
const MAX_DEVICE_NAME_LENGTH = 64
/** Longest confirmation method (characters). */
export const MAX_CONFIRM_METHOD_LENGTH = 32
/** Most devices remembered per user: the least recently seen is forgotten first. */
export const MAX_KNOWN_DEVICES = 20
/** Characters of a device key (base64url of the SHA-256 of browser family and network). */
const DEVICE_KEY_LENGTH = 16

/**
 * The reason a session ended, from the audit record of its end: the audit type, and for `invalidated` the reason
 * the caller gave. The Redis scripts apply the same table (interpolated from END_REASON_BY_AUDIT below).
 */
export const END_REASON_BY_AUDIT: Readonly<Record<string, SessionEndReason>> = {
  logout: 'signed_out',
  new_login: 'signed_out',
  unrecognized: 'unrecognized',
  force_reauthentication: 'reauth_required'
}

export function endReasonOf (type: string, data: string): SessionEndReason {
  if (type === 'expired') return 'expired'
  if (type === 'evicted') return 'evicted'
  if (type === 'unrecognized') return 'unrecognized'
  let given = ''
  try {
    const parsed = JSON.parse(data) as { reason?: unknown }
    if (typeof parsed.reason === 'string') given = parsed.reason
  } catch {}
  // forceReauthentication records 'force_reauthentication: <why>'.
  const head = given.split(':')[0] as string
  return Object.hasOwn(END_REASON_BY_AUDIT, head) ? END_REASON_BY_AUDIT[head] as SessionEndReason : 'revoked'
}

/**
 * The concurrency flags a request sees: the bits the store keeps, minus the ones the user acknowledged by
 * confirming (until something new happens, which clears the acknowledgement), minus a burst-of-logins bit whose
 * window has passed with no newer login.
 */
export function effectiveFlags (stored: StoredSession, flags: number, now: number, rules: ConcurrencyRules): number {
  let bits = flags & ~(stored.acknowledgedFlags ?? 0)
  if ((bits & FLAG_RAPID_CREATION) !== 0 && now - (stored.newestOtherCreatedAt ?? stored.createdAt) > rules.rapidCreationWindowMs) {
    bits &= ~FLAG_RAPID_CREATION
  }
  return bits
}

const BROWSERS: ReadonlyArray<[RegExp, string]> = [
  [/Edg(?:e|A|iOS)?\//, 'edge'], [/OPR\/|Opera/, 'opera'], [/Firefox\/|FxiOS\//, 'firefox'],
  [/Chrome\/|CriOS\/|Chromium\//, 'chrome'], [/Safari\//, 'safari']
]
const SYSTEMS: ReadonlyArray<[RegExp, string]> = [
  [/iPhone|iPad|iPod/, 'ios'], [/Android/, 'android'], [/CrOS/, 'chromeos'], [/Windows/, 'windows'],
  [/Mac OS X|Macintosh/, 'macos'], [/Linux/, 'linux']
]

/** Browser and operating system families of a user agent ('other' when unknown): stable across browser updates. */
export function browserFamily (userAgent: string): string {
  const browser = BROWSERS.find(([pattern]) => pattern.test(userAgent))?.[1] ?? 'other'
  const system = SYSTEMS.find(([pattern]) => pattern.test(userAgent))?.[1] ?? 'other'
  return `${browser}/${system}`
}

/** The network of an address: the /24 of IPv4, the /48 of IPv6 (an IPv4-mapped IPv6 address counts as IPv4). */
export function ipNetwork (ip: string): string {
  const v4 = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}$/i.exec(ip)
  if (v4 !== null) return `${v4[1]}.${v4[2]}.${v4[3]}.0/24`
  if (ip.includes(':')) {
    const [head = ''] = ip.toLowerCase().split('::')
    const groups = head.split(':').filter((group) => group !== '')
    while (groups.length < 3) groups.push('0')
    return `${groups.slice(0, 3).join(':')}::/48`
  }
  return ip
}

/**
 * The key a device is remembered by: browser family and IP network, hashed (no raw header or address is stored
 * under it). A phone moving between two networks is two devices until both are known.
 */
export function deviceKey (userAgent: string, ip: string): string {
  return hash('sha256', `${browserFamily(userAgent)}|${ipNetwork(ip)}`, 'base64url').slice(0, DEVICE_KEY_LENGTH)
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** A device name: plain text, trimmed, at most MAX_DEVICE_NAME_LENGTH characters, no control characters. Null removes it. */
export function validDeviceName (name: unknown): string | null | undefined {
  if (name === null) return null
  if (typeof name !== 'string') return undefined
  const trimmed = name.trim()
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (trimmed === '' || [...trimmed].length > MAX_DEVICE_NAME_LENGTH || /[\u0000-\u001f\u007f-\u009f<>]|(?!\u200d)\p{Cf}/u.test(trimmed) || LONE_SURROGATE.test(trimmed)) return undefined
  return trimmed
}

/** Newest creation time among the sessions other than `id` (for the burst-of-logins flag's age). */
export function newestOtherCreation (id: string, sessions: ReadonlyArray<{ id: string, createdAt: number }>): number | undefined {
  let newest: number | undefined
  for (const other of sessions) {
    if (other.id !== id && (newest === undefined || other.createdAt > newest)) newest = other.createdAt
  }
  return newest
}
