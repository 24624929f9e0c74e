import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

/**
 * Token format: `<sessionId>.<secret>`.
 *
 * - `sessionId` (24 base64url characters) is public: it appears in lists, logs and the audit trail.
 *   Its first TAG_LENGTH characters are the routing tag (the Redis hash tag of the user's shard), the rest
 *   are 132 random bits. It carries nothing derived from the user id.
 * - `secret` (43 base64url characters) is 256 bits from the CSPRNG. Only its SHA-256 is stored.
 */
export const TAG_LENGTH = 2
export const SESSION_ID_LENGTH = 24
const SECRET_LENGTH = 43
const TOKEN_LENGTH = SESSION_ID_LENGTH + 1 + SECRET_LENGTH

const BASE64URL = /^[A-Za-z0-9_-]+$/

export interface ParsedToken {
  sessionId: string
  secret: string
}

/** Random base64url string of `length` characters. */
export function randomId (length: number): string {
  return randomBytes(Math.ceil(length * 3 / 4)).toString('base64url').slice(0, length)
}

export function isSessionId (value: unknown): value is string {
  return typeof value === 'string' && value.length === SESSION_ID_LENGTH && BASE64URL.test(value)
}

/** A new secret: 32 bytes from the CSPRNG. */
export function newSecret (): string {
  return randomBytes(32).toString('base64url')
}

/** SHA-256 of a token secret, base64url. This is all Redis ever sees of a token. */
export function hashSecret (secret: string): string {
  return createHash('sha256').update(secret).digest('base64url')
}

export function formatToken (sessionId: string, secret: string): string {
  return `${sessionId}.${secret}`
}

/** Parses a token without any I/O; `null` for anything that is not exactly a token. */
export function parseToken (value: unknown): ParsedToken | null {
  if (typeof value !== 'string' || value.length !== TOKEN_LENGTH || value.charCodeAt(SESSION_ID_LENGTH) !== 46) {
    return null
  }
  const sessionId = value.slice(0, SESSION_ID_LENGTH)
  const secret = value.slice(SESSION_ID_LENGTH + 1)
  if (!BASE64URL.test(sessionId) || !BASE64URL.test(secret)) return null
  return { sessionId, secret }
}

/** Constant-time comparison of a presented secret with a stored hash. */
export function secretMatches (secret: string, storedHash: string): boolean {
  const expected = Buffer.from(storedHash, 'base64url')
  const actual = createHash('sha256').update(secret).digest()
  return expected.length === actual.length && timingSafeEqual(expected, actual)
}
