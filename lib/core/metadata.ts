import { errors } from './errors'

/** Keys that could reach an object's prototype when merged; refused anywhere in metadata. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

/** Default and ceiling of `maxMetadataKeys`: top-level keys one session's metadata may hold. */
export const DEFAULT_MAX_METADATA_KEYS = 64
export const MAX_METADATA_KEYS_CEILING = 1024

const stringIsWellFormed = (String.prototype as unknown as { isWellFormed: (this: string) => boolean }).isWellFormed

/**
 * Whether a string is well-formed UTF-16 (no lone surrogate). Redis receives strings as UTF-8, where a lone
 * surrogate becomes U+FFFD, and Lua's cjson refuses one escaped in JSON: such a string cannot round-trip, so it is
 * refused at the edge and a stored one makes the record corrupt on both sides.
 */
export function isWellFormed (value: string): boolean {
  return stringIsWellFormed.call(value)
}

const MAX_KEY_LENGTH = 128
const MAX_DEPTH = 16
// A key is stored in the record's metadata object and its serialized size is computed in Lua: no character JSON would escape.
// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const UNSAFE_KEY = /["\\\u0000-\u001f\u007f]/

function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Rejects cycles, depth past MAX_DEPTH and prototype keys anywhere; iterative so hostile nesting cannot overflow the stack. */
function checkValue (root: unknown, key: string): void {
  const stack: Array<[unknown, number]> = [[root, 1]]
  const seen = new Set<object>()
  while (stack.length > 0) {
    const [value, depth] = stack.pop() as [unknown, number]
    if (value === null || typeof value !== 'object') {
      if (typeof value === 'function' || typeof value === 'symbol' || typeof value === 'bigint') {
        throw new errors.INVALID_METADATA(`the value of "${key}" is not JSON`)
      }
      if (typeof value === 'string' && !isWellFormed(value)) {
        throw new errors.INVALID_METADATA(`the value of "${key}" holds a lone UTF-16 surrogate`)
      }
      continue
    }
    if (depth > MAX_DEPTH) throw new errors.INVALID_METADATA(`the value of "${key}" is nested deeper than ${MAX_DEPTH} levels`)
    if (seen.has(value)) throw new errors.INVALID_METADATA(`the value of "${key}" is circular`)
    seen.add(value)
    for (const inner of Object.keys(value)) {
      if (FORBIDDEN_KEYS.has(inner)) throw new errors.INVALID_METADATA(`the key "${inner}" is not allowed`)
      if (!isWellFormed(inner)) throw new errors.INVALID_METADATA(`a key inside "${key}" holds a lone UTF-16 surrogate`)
      stack.push([(value as Record<string, unknown>)[inner], depth + 1])
    }
  }
}

/**
 * The byte length of metadata serialized as one JSON object, given each key and its value's JSON text:
 * `{"k":v,...}`. The Lua `metaSize` (store/redis/scripts.ts) computes the same; test/integrity.test.ts feeds both
 * the same random inputs.
 */
export function metadataBytes (entries: Iterable<readonly [string, string]>): number {
  let bytes = 2
  let count = 0
  for (const [key, json] of entries) {
    bytes += Buffer.byteLength(key) + 3 + Buffer.byteLength(json)
    count++
  }
  return count > 1 ? bytes + count - 1 : bytes
}

/**
 * Validates metadata and serializes each top-level value to JSON. With `allowDelete`, a `null` value means
 * "remove this key" (a shallow-merge patch). Returns the serialized entries and the size of the whole object.
 * More than `maxKeys` top-level keys are refused before any value is looked at.
 */
export function serializeMetadata (metadata: unknown, allowDelete: boolean, maxKeys = DEFAULT_MAX_METADATA_KEYS): { entries: Record<string, string | null>, bytes: number } {
  if (!isPlainObject(metadata)) throw new errors.INVALID_METADATA('metadata must be a plain object')
  const keys = Object.keys(metadata)
  if (keys.length > maxKeys) throw new errors.INVALID_METADATA(`at most ${maxKeys} keys are allowed (maxMetadataKeys), got ${keys.length}`)
  const entries: Record<string, string | null> = {}
  for (const key of keys) {
    if (key.length === 0 || key.length > MAX_KEY_LENGTH || UNSAFE_KEY.test(key) || !isWellFormed(key)) {
      throw new errors.INVALID_METADATA(`keys must be 1 to ${MAX_KEY_LENGTH} characters without quotes, backslashes, control characters or lone surrogates`)
    }
    if (FORBIDDEN_KEYS.has(key)) throw new errors.INVALID_METADATA(`the key "${key}" is not allowed`)
    const value = metadata[key]
    if (value === undefined) continue
    if (value === null && allowDelete) {
      entries[key] = null
      continue
    }
    checkValue(value, key)
    entries[key] = JSON.stringify(value)
  }
  const written = Object.entries(entries).filter((entry): entry is [string, string] => entry[1] !== null)
  return { entries, bytes: metadataBytes(written) }
}

/**
 * A copy of parsed metadata that shares nothing mutable with it (values are JSON: a deep copy only for objects). Own
 * keys only: a property an app added to Object.prototype does not become a key of every session.
 */
export function copyMetadata (metadata: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = {}
  for (const key of Object.keys(metadata)) {
    const value = metadata[key]
    copy[key] = value !== null && typeof value === 'object' ? JSON.parse(JSON.stringify(value)) : value
  }
  return copy
}
