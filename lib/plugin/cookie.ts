/**
 * The session cookie, read and written by the plugin itself rather than through @fastify/cookie's decorations, so it
 * works whatever the order and the `hook` option of an app's own @fastify/cookie registration. The encoding is
 * @fastify/cookie's (encodeURIComponent), so cookies set by earlier versions still read.
 */

export interface CookieAttributes {
  path: string
  domain: string | undefined
  httpOnly: boolean
  sameSite: 'lax' | 'strict' | 'none'
  secure: boolean
  partitioned: boolean
  /** Seconds; absent: a browser-session cookie. 0 clears it. */
  maxAge?: number
}

const SAME_SITE = { lax: 'Lax', strict: 'Strict', none: 'None' } as const

/** One Set-Cookie value. */
export function serializeCookie (name: string, value: string, attributes: CookieAttributes): string {
  let line = `${name}=${encodeURIComponent(value)}`
  if (attributes.maxAge !== undefined) {
    line += `; Max-Age=${attributes.maxAge}`
    // Expires as well for a clearing cookie: old user agents that ignore Max-Age drop it too.
    if (attributes.maxAge === 0) line += '; Expires=Thu, 01 Jan 1970 00:00:00 GMT'
  }
  if (attributes.domain !== undefined) line += `; Domain=${attributes.domain}`
  line += `; Path=${attributes.path}`
  if (attributes.httpOnly) line += '; HttpOnly'
  if (attributes.secure) line += '; Secure'
  if (attributes.partitioned) line += '; Partitioned'
  return `${line}; SameSite=${SAME_SITE[attributes.sameSite]}`
}

/** The first value of cookie `name` in a Cookie header, decoded; undefined when absent. */
export function readCookie (header: string | undefined, name: string): string | undefined {
  if (header === undefined || !header.includes(name)) return undefined
  for (const pair of header.split(';')) {
    const equals = pair.indexOf('=')
    if (equals === -1 || pair.slice(0, equals).trim() !== name) continue
    let value = pair.slice(equals + 1).trim()
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    if (!value.includes('%')) return value
    try {
      return decodeURIComponent(value)
    } catch {
      // Not valid percent-encoding: the raw value, which will not parse as a token.
      return value
    }
  }
  return undefined
}
