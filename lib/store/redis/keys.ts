import { SESSION_ID_LENGTH, TAG_LENGTH } from '../../core/token'

/**
 * Every Redis key name is built here (the Lua scripts derive the keys of a slot from the shard key; see
 * store/redis/scripts.ts for the layout). `prefix` is the store's prefix; an ioredis `keyPrefix` goes in front of it.
 */

/** The prefix of every key when none is given (RedisStore `prefix`, the plugin's `keyPrefix`). */
export const DEFAULT_KEY_PREFIX = 'sess:'

/**
 * Most members of one expiry sub-queue: Redis's default `zset-max-listpack-entries`, up to which a sorted set is one
 * compact listpack (see scripts.ts). A shard opens sub-queue `P{T}:x1`, `P{T}:x2`, ... as the earlier ones fill.
 */
export const EXPIRY_QUEUE_ENTRIES = 128
/** Most sub-queues per shard (4096 shards x 4096 x 128 = 2.1 billion sessions); past it the last one grows. */
export const MAX_EXPIRY_QUEUES = 4096

/** The shard's first expiry sub-queue; also the key every script is routed by. */
export function shardKey (prefix: string, tag: string): string {
  return `${prefix}{${tag}}:x`
}

/** What stands between a session key's hash tag and its session id. */
const SESSION_KEY_MARK = '}:s:'

export function sessionKey (prefix: string, sessionId: string): string {
  return `${prefix}{${sessionId.slice(0, TAG_LENGTH)}${SESSION_KEY_MARK}${sessionId}`
}

/**
 * The session id a session key ends with (`sessionKey`), null for any other key: the near cache's invalidations name
 * keys as Redis sees them (after any ioredis `keyPrefix`), and on a Cluster every key under the prefix.
 */
export function sessionIdOfKey (key: string): string | null {
  const at = key.length - SESSION_ID_LENGTH
  return at >= SESSION_KEY_MARK.length && key.startsWith(SESSION_KEY_MARK, at - SESSION_KEY_MARK.length) ? key.slice(at) : null
}

/**
 * Version of the audit key layout, part of every audit key name (`P{T}:a2:...`), so a later layout can tell its
 * keys from these. 0.1.0 wrote one stream per shard, `P{T}:a`, which nothing reads any more (it expires by its TTL).
 */
export const AUDIT_LAYOUT = '2'

/** The user's audit timeline: a list, newest first (its slot is the user's shard). */
export function auditTimelineKey (prefix: string, tag: string, userId: string): string {
  return `${prefix}{${tag}}:a${AUDIT_LAYOUT}:u:${userId}`
}

/** When the per-user cap last dropped events of this user: the newest dropped event's time. */
export function auditCapKey (prefix: string, tag: string, userId: string): string {
  return `${prefix}{${tag}}:a${AUDIT_LAYOUT}:c:${userId}`
}

/** The shard's audit feed for SIEM consumers (a stream; written only with `audit.feed`). */
export function auditFeedKey (prefix: string, tag: string): string {
  return `${prefix}{${tag}}:a${AUDIT_LAYOUT}:f`
}

export function lockKey (prefix: string, name: string): string {
  return `${prefix}lock:${name}`
}

/** CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with, one byte at a time. */
const CRC16_TABLE = Array.from({ length: 256 }, (_, byte) => {
  let crc = byte << 8
  for (let bit = 0; bit < 8; bit++) crc = (crc & 0x8000) !== 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  return crc
})

/**
 * The Cluster hash slot of a key as Redis computes it (CLUSTER KEYSLOT): CRC16 of the key's UTF-8 bytes, or of its
 * hash tag, the text between the first `{` and the next `}` when that text is not empty; modulo 16384.
 */
export function keySlot (key: string): number {
  let hashed = key
  const open = key.indexOf('{')
  if (open !== -1) {
    const close = key.indexOf('}', open + 1)
    if (close > open + 1) hashed = key.slice(open + 1, close)
  }
  let crc = 0
  let isAscii = true
  for (let index = 0; index < hashed.length; index++) {
    const code = hashed.charCodeAt(index)
    if (code > 0x7f) {
      isAscii = false
      break
    }
    crc = ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >> 8) ^ code) & 0xff] as number)
  }
  if (!isAscii) {
    crc = 0
    for (const byte of Buffer.from(hashed, 'utf8')) crc = ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >> 8) ^ byte) & 0xff] as number)
  }
  return crc & 0x3fff
}
