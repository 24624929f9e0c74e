import { hash, randomBytes } from 'node:crypto'

/**
 * Token format: `<sessionId>.<secret>`.
 *
 * - `sessionId` (24 base64url characters) is public: it appears in lists, logs and the audit trail.
 *   Its first TAG_LENGTH characters are the routing tag (the Redis hash tag of the user's shard): `shardTag`, the
 *   first 12 bits of SHA-256(user id). The rest are 132 random bits. So a session id carries 12 bits of a hash of
 *   its user's id: it lets someone holding a session id test a guessed user id, with one false match in 4096. That
 *   is acceptable because a session id is never shown without its user (lists, the audit log and the logs name
 *   both) and is no secret (the token's secret is), and 12 bits single out nobody among more than a few thousand
 *   users. Deriving the tag is what lets every operation addressed by user id find the shard without a lookup.
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

/**
 * The shard tag of a user: the first TAG_LENGTH base64url characters of SHA-256(user id), one of 4096. The Redis store
 * files every key of the user (index, audit, known devices) and every session id of the user under it.
 */
export function shardTag (userId: string): string {
  return hash('sha256', userId, 'base64url').slice(0, TAG_LENGTH)
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

/** Length of `hashSecret`'s output: a SHA-256 in unpadded base64url. The Lua record check (store/redis/scripts.ts) uses it. */
export const TOKEN_HASH_LENGTH = 43

/** SHA-256 of a token secret, base64url. This is all Redis ever sees of a token. */
export function hashSecret (secret: string): string {
  return hash('sha256', secret, 'base64url')
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

/**
 * Whether a presented secret hashes to the stored hash. The comparison of the two digests does not stop at the
 * first difference (and the digest of an attacker's guess is not under the attacker's control anyway).
 */
export function secretMatches (secret: string, storedHash: string): boolean {
  return constantTimeEqual(hash('sha256', secret, 'base64url'), storedHash)
}

/** String equality whose time does not depend on where the strings first differ (only on their lengths). */
function constantTimeEqual (a: string, b: string): boolean {
  if (a.length !== b.length) return false
  let difference = 0
  for (let index = 0; index < a.length; index++) difference |= a.charCodeAt(index) ^ b.charCodeAt(index)
  return difference === 0
}

/**
 * The secret last verified for each of up to `maxEntries` sessions, with the hash it matched. A session's next
 * request then costs a constant-time string comparison instead of a SHA-256. Only ever in this process's memory,
 * next to the requests that carry the same secrets; a rotation changes the stored hash, so an entry of the old
 * secret no longer matches and the secret is hashed again. First in, first out.
 */
export class VerifiedSecrets {
  private readonly entries = new Map<string, { tokenHash: string, secret: string }>()

  constructor (private readonly maxEntries: number) {}

  /** `secretMatches(secret, storedHash)`, remembered per session id. */
  matches (sessionId: string, secret: string, storedHash: string): boolean {
    const known = this.entries.get(sessionId)
    // Both hashes are the server's own values; only the presented secret needs a constant-time comparison.
    if (known !== undefined && known.tokenHash === storedHash && constantTimeEqual(known.secret, secret)) return true
    if (!secretMatches(secret, storedHash)) return false
    if (known === undefined && this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value as string)
    this.entries.set(sessionId, { tokenHash: storedHash, secret })
    return true
  }

  /** Entries held (for tests). */
  get size (): number {
    return this.entries.size
  }
}
