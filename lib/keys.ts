import { TAG_LENGTH } from './token'

/**
 * Every Redis key name is built here (the Lua scripts derive the keys of a slot from the shard key; see
 * store/scripts.ts for the layout). `prefix` is the store's prefix; an ioredis `keyPrefix` goes in front of it.
 */

/** The shard's expiry queue; also the key every script is routed by. */
export function shardKey (prefix: string, tag: string): string {
  return `${prefix}{${tag}}:x`
}

export function sessionKey (prefix: string, sessionId: string): string {
  return `${prefix}{${sessionId.slice(0, TAG_LENGTH)}}:s:${sessionId}`
}

/** The shard's audit stream (events of every user of the shard; entries carry the user id). */
export function auditKey (prefix: string, tag: string): string {
  return `${prefix}{${tag}}:a`
}

export function tagKey (prefix: string, userId: string): string {
  return `${prefix}t:${userId}`
}

export function lockKey (prefix: string, name: string): string {
  return `${prefix}lock:${name}`
}
