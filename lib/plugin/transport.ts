import { Signer } from '@fastify/cookie'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { readCookie, serializeCookie } from './cookie'
import type { ResolvedOptions } from './options'
import { kFromCookie } from './symbols'

/** Header values some front ends send for "no token" (String(undefined), String(null)). */
const NO_TOKEN_VALUES = new Set(['', 'undefined', 'null'])

/** How a token travels: read from the header or the (optionally signed) cookie, written as the plugin's cookie. */
export class TokenTransport {
  private readonly signer: Signer | null

  constructor (private readonly options: ResolvedOptions, private readonly now: () => number) {
    const cookie = options.cookie
    this.signer = cookie !== false && cookie.signed ? new Signer(cookie.secrets) : null
  }

  /** Clears the cookie with the attributes that set it (browsers ignore a clearing cookie whose attributes differ). */
  clearCookie (request: FastifyRequest, reply: FastifyReply): void {
    if (this.options.cookie === false) return
    this.writeCookie(request, reply, '', 0)
  }

  /** Sets the token cookie; `absoluteDeadline` null gives a browser-session cookie (no Max-Age). */
  setCookie (request: FastifyRequest, reply: FastifyReply, token: string, absoluteDeadline: number | null): void {
    // A response that hands out a token is never cached, with or without the cookie transport.
    reply.header('cache-control', 'no-store')
    if (this.options.cookie === false) return
    const maxAge = absoluteDeadline === null ? undefined : Math.max(1, Math.ceil((absoluteDeadline - this.now()) / 1000))
    this.writeCookie(request, reply, this.signer === null ? token : this.signer.sign(token), maxAge)
  }

  /**
   * Writes the plugin's Set-Cookie itself (lib/plugin/cookie.ts) instead of through reply.setCookie: the plugin works
   * whatever the order and `hook` option of an app's own @fastify/cookie.
   * A later write for the same response replaces an earlier one.
   */
  private writeCookie (request: FastifyRequest, reply: FastifyReply, value: string, maxAge: number | undefined): void {
    const cookie = this.options.cookie
    /* c8 ignore next -- callers return earlier without the cookie transport */
    if (cookie === false) return
    const line = serializeCookie(cookie.name, value, {
      path: cookie.path,
      domain: cookie.domain,
      httpOnly: cookie.httpOnly,
      sameSite: cookie.sameSite,
      secure: cookie.secure === 'auto' ? request.protocol === 'https' : cookie.secure,
      partitioned: cookie.partitioned,
      maxAge
    })
    const existing = reply.getHeader('set-cookie')
    const others = (existing === undefined ? [] : Array.isArray(existing) ? existing : [String(existing)])
      .filter((other) => !other.startsWith(`${cookie.name}=`))
    reply.removeHeader('set-cookie')
    reply.header('set-cookie', [...others, line])
    reply.header('cache-control', 'no-store')
  }

  readToken (request: FastifyRequest, reply: FastifyReply): string | null {
    request[kFromCookie] = false
    const fromHeader = request.headers[this.options.header]
    if (typeof fromHeader === 'string' && !NO_TOKEN_VALUES.has(fromHeader.trim())) return fromHeader
    if (Array.isArray(fromHeader)) return fromHeader.join(',')
    const cookie = this.options.cookie
    if (cookie === false) return null
    const raw = readCookie(request.headers.cookie, cookie.name)
    if (raw === undefined || raw === '') return null
    request[kFromCookie] = true
    if (this.signer === null) return raw
    const unsigned = this.signer.unsign(raw)
    if (!unsigned.valid || unsigned.value === null) {
      this.clearCookie(request, reply)
      return ''
    }
    return unsigned.value
  }
}
