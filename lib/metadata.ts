import { errors } from './errors'

/** Keys that could reach an object's prototype when merged; refused anywhere in metadata. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

const MAX_KEY_LENGTH = 128
const MAX_DEPTH = 16
// A key is stored as a hash field and its serialized size is computed in Lua: no character JSON would escape.
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
      continue
    }
    if (depth > MAX_DEPTH) throw new errors.INVALID_METADATA(`the value of "${key}" is nested deeper than ${MAX_DEPTH} levels`)
    if (seen.has(value)) throw new errors.INVALID_METADATA(`the value of "${key}" is circular`)
    seen.add(value)
    for (const inner of Object.keys(value)) {
      if (FORBIDDEN_KEYS.has(inner)) throw new errors.INVALID_METADATA(`the key "${inner}" is not allowed`)
      stack.push([(value as Record<string, unknown>)[inner], depth + 1])
    }
  }
}

/**
 * Validates metadata and serializes each top-level value to JSON. With `allowDelete`, a `null` value means
 * "remove this key" (a shallow-merge patch). Returns the serialized entries and the size of the whole object.
 */
export function serializeMetadata (metadata: unknown, allowDelete: boolean): { entries: Record<string, string | null>, bytes: number } {
  if (!isPlainObject(metadata)) throw new errors.INVALID_METADATA('metadata must be a plain object')
  const entries: Record<string, string | null> = {}
  let bytes = 2
  let count = 0
  for (const key of Object.keys(metadata)) {
    if (key.length === 0 || key.length > MAX_KEY_LENGTH || UNSAFE_KEY.test(key)) {
      throw new errors.INVALID_METADATA(`keys must be 1 to ${MAX_KEY_LENGTH} characters without quotes, backslashes or control characters`)
    }
    if (FORBIDDEN_KEYS.has(key)) throw new errors.INVALID_METADATA(`the key "${key}" is not allowed`)
    const value = metadata[key]
    if (value === undefined) continue
    if (value === null && allowDelete) {
      entries[key] = null
      continue
    }
    checkValue(value, key)
    const json = JSON.stringify(value)
    entries[key] = json
    bytes += Buffer.byteLength(key) + 3 + Buffer.byteLength(json)
    count++
  }
  if (count > 1) bytes += count - 1
  return { entries, bytes }
}
