import { TAG_LENGTH } from '../../core/token'

/**
 * Every Redis key name is built here (the Lua scripts derive the keys of a slot from the shard key; see
 * store/redis/scripts.ts for the layout). `prefix` is the store's prefix; an ioredis `keyPrefix` goes in front of it.
 */

/** The shard's expiry queue; also the key every script is routed by. */
/** The prefix of every key when none is given (RedisStore `prefix`, the plugin's `keyPrefix`). */
export const DEFAULT_KEY_PREFIX = 'sess:'

export function shardKey (prefix: string, tag: string): string {
  return `${prefix}{${tag}}:x`
}

export function sessionKey (prefix: string, sessionId: string): string {
  return `${prefix}{${sessionId.slice(0, TAG_LENGTH)}}:s:${sessionId}`
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
