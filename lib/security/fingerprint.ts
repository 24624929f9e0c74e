import { createHash } from 'node:crypto'

/**
 * Device fingerprints for session binding (OWASP Session Management Cheat Sheet, "Binding the Session ID to Other
 * User Properties"). A fingerprint is a soft signal: browsers update, users switch languages, so it is compared
 * with a tolerance instead of for equality.
 *
 * Format: `v1.<ua>.<lang>.<enc>.<plat>.<mob>.<scr>.<tz>.<pf>` (at most 74 characters of `[A-Za-z0-9_.-]`).
 * Each slot is the first 8 base64url characters (48 bits) of the SHA-256 of one normalized component, or empty
 * when the component is absent. Hashing each component on its own is what lets `compareFingerprints` say which
 * ones changed: the characters of one digest over everything carry no such information. The hashes keep raw
 * header values out of Redis and logs, but they are unkeyed: a low-entropy component (the mobile hint, a
 * timezone) can be recovered by trying the few values it can take, so treat a fingerprint as personal data.
 */
export interface FingerprintInput {
  userAgent?: string
  acceptLanguage?: string
  acceptEncoding?: string
  /** `sec-ch-ua-platform` */
  platformHint?: string
  /** `sec-ch-ua-mobile` */
  mobileHint?: string
  /** Client-supplied, e.g. `1920x1080`. */
  screen?: string
  /** Client-supplied, e.g. `Europe/Paris`. */
  timezone?: string
  /** Client-supplied, e.g. `navigator.platform`. */
  platform?: string
}

export const DEFAULT_FINGERPRINT_TOLERANCE = 0.8

const SLOT_COUNT = 8
const SLOT_LENGTH = 8
/** The longest valid fingerprint: `v1` and 8 slots of `.` plus 8 characters. */
const MAX_FINGERPRINT_LENGTH = 2 + SLOT_COUNT * (1 + SLOT_LENGTH)
/** The slots begin after `v1.`. */
const FIRST_SLOT = 3
const DOT = 46
/** Anything longer is hostile; cutting before normalizing also bounds the work done per request. */
const MAX_COMPONENT_LENGTH = 1024
// Each repetition starts with a dot, which the slot class excludes, so matching never backtracks.
const FORMAT = /^v1(?:\.(?:[A-Za-z0-9_-]{8})?){8}$/
const WHITESPACE = /\s+/g
/**
 * Recent slots by raw value: the same few user agents and language lists arrive on almost every request, and a
 * SHA-256 costs far more than a Map lookup. Bounded in entries and in key length (longer values are rare and
 * hashed every time), evicted first in, first out: well under 1 MB per cache even when filled by an attacker.
 */
const CACHE_ENTRIES = 1024
const MAX_CACHED_LENGTH = 256
const textSlots = new Map<string, string>()
const listSlots = new Map<string, string>()

/**
 * Slot weights in hundredths, in slot order (user agent, accept-language, accept-encoding, platform hint, mobile
 * hint, screen, timezone, platform). Integers keep the sums exact, so a score of 80/100 is exactly 0.8 and the
 * tolerance edge behaves as written.
 */
const WEIGHTS: readonly number[] = [35, 15, 10, 15, 10, 5, 5, 5]
/** The first five slots come from request headers; the last three only from the client, at login. */
const HEADER_SLOTS = 5

function normalizeText (value: string): string {
  return value.trim().replace(WHITESPACE, ' ').toLowerCase()
}

/** `en-US,en;q=0.9` and `en, en-us` are the same preference list for our purpose: the set of tokens. */
function normalizeList (value: string): string {
  const tokens: string[] = []
  for (const part of value.split(',')) {
    const semicolon = part.indexOf(';')
    const token = normalizeText(semicolon === -1 ? part : part.slice(0, semicolon))
    if (token !== '') tokens.push(token)
  }
  tokens.sort()
  return tokens.filter((token, index) => index === 0 || token !== tokens[index - 1]).join(',')
}

function slot (normalized: string): string {
  if (normalized === '') return ''
  // 6 bytes are exactly 8 base64url characters, without padding.
  return createHash('sha256').update(normalized).digest().toString('base64url', 0, 6)
}

function cachedSlot (value: unknown, cache: Map<string, string>, normalize: (value: string) => string): string {
  // Client-supplied fields come from a request body at runtime, whatever their declared type.
  if (typeof value !== 'string' || value === '') return ''
  if (value.length > MAX_CACHED_LENGTH) return slot(normalize(value.slice(0, MAX_COMPONENT_LENGTH)))
  const cached = cache.get(value)
  if (cached !== undefined) return cached
  const computed = slot(normalize(value))
  if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value as string)
  cache.set(value, computed)
  return computed
}

function textSlot (value: unknown): string {
  return cachedSlot(value, textSlots, normalizeText)
}

function listSlot (value: unknown): string {
  return cachedSlot(value, listSlots, normalizeList)
}

/** The fingerprint of one device: see the module comment for the format. Never contains a raw input value. */
export function generateDeviceFingerprint (input: FingerprintInput): string {
  return `v1.${textSlot(input.userAgent)}.${listSlot(input.acceptLanguage)}.${listSlot(input.acceptEncoding)}` +
    `.${textSlot(input.platformHint)}.${textSlot(input.mobileHint)}.${textSlot(input.screen)}` +
    `.${textSlot(input.timezone)}.${textSlot(input.platform)}`
}

function firstValue (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

interface HeaderFingerprint {
  acceptLanguage: string | undefined
  acceptEncoding: string | undefined
  platformHint: string | undefined
  mobileHint: string | undefined
  fingerprint: string
}
/**
 * The last fingerprint built per user agent: a session's requests repeat the same headers, so the request path
 * compares four strings instead of building the fingerprint again. Bounded like the slot caches.
 */
const byUserAgent = new Map<string, HeaderFingerprint>()

/** The fingerprint of a request: Fastify's `request.headers` plus optional client-supplied fields. */
export function fingerprintFromHeaders (
  headers: Record<string, string | string[] | undefined>,
  client?: { screen?: string, timezone?: string, platform?: string }
): string {
  const userAgent = firstValue(headers['user-agent'])
  const acceptLanguage = firstValue(headers['accept-language'])
  const acceptEncoding = firstValue(headers['accept-encoding'])
  const platformHint = firstValue(headers['sec-ch-ua-platform'])
  const mobileHint = firstValue(headers['sec-ch-ua-mobile'])
  const isCacheable = client === undefined && typeof userAgent === 'string' && userAgent.length <= MAX_CACHED_LENGTH
  if (isCacheable) {
    const hit = byUserAgent.get(userAgent)
    if (hit !== undefined && hit.acceptLanguage === acceptLanguage && hit.acceptEncoding === acceptEncoding &&
      hit.platformHint === platformHint && hit.mobileHint === mobileHint) {
      return hit.fingerprint
    }
  }
  const fingerprint = generateDeviceFingerprint({
    userAgent,
    acceptLanguage,
    acceptEncoding,
    platformHint,
    mobileHint,
    screen: client?.screen,
    timezone: client?.timezone,
    platform: client?.platform
  })
  if (isCacheable) {
    if (byUserAgent.size >= CACHE_ENTRIES && !byUserAgent.has(userAgent)) byUserAgent.delete(byUserAgent.keys().next().value as string)
    byUserAgent.set(userAgent, { acceptLanguage, acceptEncoding, platformHint, mobileHint, fingerprint })
  }
  return fingerprint
}

function isFingerprint (value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_FINGERPRINT_LENGTH && FORMAT.test(value)
}

/** Length of the slot starting at `index` of a valid fingerprint: 0 or SLOT_LENGTH. */
function slotLength (fingerprint: string, index: number): number {
  return index >= fingerprint.length || fingerprint.charCodeAt(index) === DOT ? 0 : SLOT_LENGTH
}

function sameSlot (a: string, indexA: number, b: string, indexB: number): boolean {
  for (let offset = 0; offset < SLOT_LENGTH; offset++) {
    if (a.charCodeAt(indexA + offset) !== b.charCodeAt(indexB + offset)) return false
  }
  return true
}

/**
 * Weighted similarity of two fingerprints in [0, 1]. A component present on one side only, or different, scores 0;
 * a component absent on both sides is left out and the others are renormalized. Anything that is not a v1
 * fingerprint (including the empty string) scores 0 against everything, itself included. Never throws.
 */
export function compareFingerprints (a: string, b: string): number {
  if (!isFingerprint(a) || !isFingerprint(b)) return 0
  // Also covers two fingerprints with no component at all: both are exactly `v1........`.
  if (a === b) return 1
  let counted = 0
  let matched = 0
  let indexA = FIRST_SLOT
  let indexB = FIRST_SLOT
  for (const weight of WEIGHTS) {
    const lengthA = slotLength(a, indexA)
    const lengthB = slotLength(b, indexB)
    if (lengthA !== 0 || lengthB !== 0) {
      counted += weight
      if (lengthA === lengthB && sameSlot(a, indexA, b, indexB)) matched += weight
    }
    indexA += lengthA + 1
    indexB += lengthB + 1
  }
  // `a !== b` means some slot differs, and a differing slot is present on at least one side: counted > 0.
  return matched / counted
}

/**
 * The fingerprint with its client-supplied slots (screen, timezone, platform) emptied: what a later request, which
 * only brings headers, can be compared with.
 */
export function headerFingerprint (fingerprint: string): string {
  if (!isFingerprint(fingerprint)) return fingerprint
  let index = FIRST_SLOT
  for (let slot = 0; slot < HEADER_SLOTS; slot++) index += slotLength(fingerprint, index) + 1
  return fingerprint.slice(0, index) + '..'
}

/** A fingerprint ending with three empty slots has no client-supplied fields. */
const NO_CLIENT_SLOTS = '...'

/**
 * How much a request still looks like the device a session was created on (the request path's rule, 1 = the same):
 * the request's header fingerprint against the header slots of the stored one. A request only brings headers, so
 * the client-supplied slots given at login are left out of the comparison.
 */
export function requestSimilarity (stored: string, current: string): number {
  const storedHeaders = stored.endsWith(NO_CLIENT_SLOTS) ? stored : headerFingerprint(stored)
  // The common case: the same browser, four string comparisons (compareFingerprints would answer 1 as well).
  return storedHeaders === current ? 1 : compareFingerprints(storedHeaders, current)
}

/**
 * Whether two full fingerprints (client slots included) are within `tolerance`: for fingerprints made the same way,
 * e.g. both by generateDeviceFingerprint (the request path uses requestSimilarity). A stored empty fingerprint
 * matches anything: there is nothing to compare.
 */
export function fingerprintMatches (stored: string, current: string, tolerance = DEFAULT_FINGERPRINT_TOLERANCE): boolean {
  if (stored === '') return true
  return compareFingerprints(stored, current) >= tolerance
}
