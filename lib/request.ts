import { Signer } from '@fastify/cookie'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { InvalidTokenTracker } from './abuse'
import { flagReasons } from './concurrency'
import { DeadlineQueue } from './deadline'
import { errors } from './errors'
import { compareFingerprints, fingerprintFromHeaders, headerFingerprint } from './fingerprint'
import type { EndedLoad, LoadedSession, Session, SessionManager, SessionData } from './manager'
import type { ResolvedOptions, SuspiciousReport } from './options'
import { parseToken } from './token'

/** Per-request private state. */
export const kSessionToken = Symbol('fastify-distributed-session.token')
const kFromCookie = Symbol('fastify-distributed-session.fromCookie')

declare module 'fastify' {
  interface FastifyRequest {
    [kSessionToken]: string | null
    [kFromCookie]: boolean
  }
}

export interface StartSessionData {
  metadata?: SessionData['metadata']
  /** Client-supplied fingerprint fields (screen, timezone, platform). */
  fingerprint?: { screen?: string, timezone?: string, platform?: string }
  /** Absolute lifetime of this session (ms or a duration string). */
  ttl?: number | string
}

const STORE_ERROR = 'FST_SESSION_STORE_UNAVAILABLE'
/** A fingerprint ending with three empty slots has no client-supplied fields. */
const NO_CLIENT_SLOTS = '...'
const SUSPICIOUS_REPORT_EVERY_MS = 60_000
const MAX_REPORTED = 10_000

/**
 * The request path: reading the token, loading the session with one store call, the security flag,
 * the cookie, and the store's failure policy. Routes and the plugin entry call into this.
 */
export class RequestHandler {
  private readonly signer: Signer | null
  private readonly deadlines: DeadlineQueue
  private readonly tracker: InvalidTokenTracker
  /** sessionId -> last time a suspicious report was recorded for it by this instance. */
  private readonly reported = new Map<string, number>()

  constructor (readonly manager: SessionManager, readonly options: ResolvedOptions) {
    const cookie = options.cookie
    this.signer = cookie !== false && cookie.signed ? new Signer(cookie.secrets) : null
    this.deadlines = new DeadlineQueue(options.storeTimeoutMs)
    this.tracker = new InvalidTokenTracker({
      threshold: options.invalidTokenThreshold,
      windowMs: options.invalidTokenWindowMs,
      blockMs: options.blockMs
    }, manager.now)
  }

  /** Bounds a store call by `storeTimeout` and turns store failures into FST_SESSION_STORE_UNAVAILABLE. */
  guard<T> (promise: Promise<T>): Promise<T> {
    return this.deadlines.bound(promise, this.onTimeout, this.onStoreError)
  }

  private readonly onTimeout = (): Error => {
    this.manager.emit('storeError', new Error(`store call timed out after ${this.options.storeTimeoutMs} ms`))
    return new errors.STORE_UNAVAILABLE()
  }

  private readonly onStoreError = (error: unknown): unknown => {
    if (isOwnError(error)) return error
    this.manager.emit('storeError', error)
    return new errors.STORE_UNAVAILABLE()
  }

  /** onRequest: sets request.session and request.requiresSecurityCheck. No store call without a token. */
  async loadSession (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const token = this.readToken(request, reply)
    if (token === null) return
    const ip = request.ip
    if (this.tracker.isBlocked(ip)) throw new errors.TOO_MANY_INVALID_TOKENS()
    const parsed = parseToken(token)
    if (parsed === null) {
      this.rejectToken(request, reply, ip)
      return
    }
    let loaded: LoadedSession | EndedLoad | null
    try {
      loaded = await this.guard(this.manager.resolve(parsed)) // stepup: resolve (load + why it ended)
    } catch (error) {
      if ((error as { code?: string }).code === STORE_ERROR && this.options.failOpen) {
        request.log.warn({ err: error }, 'fastify-distributed-session: session store unavailable, serving the request as anonymous')
        return
      }
      throw error
    }
    if (loaded === null) {
      this.rejectToken(request, reply, ip)
      return
    }
    if (loaded.session === null) {
      // stepup: the holder of an ended session's token (not a guesser: the secret matched) learns why it ended.
      request.sessionEnded = loaded.ended
      if (request[kFromCookie]) this.clearCookie(reply)
      return
    }
    request.session = loaded.session
    request[kSessionToken] = token
    const report = this.securityReport(request, loaded, ip)
    if (report === null) return
    request.requiresSecurityCheck = true
    this.reportSuspicious(request, report)
    const policy = this.options.onSuspicious
    if (policy === 'deny') throw new errors.SESSION_SUSPICIOUS()
    if (policy !== 'flag') await policy(request, report)
  }

  /** reply.startSession: ends the request's previous session (no fixation), creates one, sets the cookie. */
  async startSession (request: FastifyRequest, reply: FastifyReply, userId: string, data: StartSessionData = {}): Promise<{ token: string, session: Session, newDevice: boolean }> {
    const previous = request.session
    if (previous !== null) {
      await this.guard(this.manager.invalidate(previous.id, { reason: 'new_login' }))
    }
    const creating = this.manager.create(userId, {
      ipAddress: request.ip,
      userAgent: header(request, 'user-agent'),
      deviceFingerprint: fingerprintFromHeaders(request.headers, data.fingerprint),
      metadata: data.metadata
    }, { ttl: data.ttl })
    let created: Awaited<typeof creating>
    try {
      created = await this.guard(creating)
    } catch (error) {
      // The client was told the login failed: a create that still completes later must not leave a session that
      // nobody holds the token of (and that could evict the user's real ones).
      creating.then((late) => this.manager.invalidate(late.session.id, { reason: 'login_timed_out' }), () => false)
        .catch((lateError: unknown) => { request.log.warn({ err: lateError }, 'fastify-distributed-session: could not end a login that timed out') })
      throw error
    }
    request.session = created.session
    request.requiresSecurityCheck = false
    request[kSessionToken] = created.token
    this.setCookie(request, reply, created.token, created.session.expiresAt)
    for (const evicted of created.evicted) {
      // The create script has already written the 'evicted' audit record: log and emit, no second round trip.
      this.recordSecurity(request, userId, evicted, { rule: 'session_limit_eviction', newSessionId: created.session.id }, false)
    }
    return { token: created.token, session: created.session, newDevice: created.newDevice }
  }

  /**
   * stepup: reply.confirmSession. The app has just verified a second factor or the password: the request's IP and
   * device become the session's baseline, its flags are acknowledged and authenticatedAt moves to now.
   */
  async confirmSession (request: FastifyRequest, options: { method: string }): Promise<boolean> {
    const session = request.session
    if (session === null) throw new errors.SESSION_REQUIRED()
    if (options === null || typeof options !== 'object') throw new errors.INVALID_ARGUMENT('confirmSession options must be an object')
    const confirmed = await this.guard(this.manager.confirm(session.id, {
      userId: session.userId,
      ipAddress: request.ip,
      userAgent: header(request, 'user-agent'),
      deviceFingerprint: fingerprintFromHeaders(request.headers),
      method: options.method
    }))
    if (!confirmed) return false
    request.requiresSecurityCheck = false
    request.session = { ...session, authenticatedAt: new Date(this.manager.now()), ipAddress: request.ip, userAgent: header(request, 'user-agent') }
    return true
  }

  /** reply.rotateSession: a new token for the request's session (privilege change); the old one dies at once. */
  async rotateSession (request: FastifyRequest, reply: FastifyReply): Promise<{ token: string, session: Session } | null> {
    const token = request[kSessionToken]
    if (request.session === null || token === null) return null
    const rotated = await this.guard(this.manager.rotate(token))
    if (rotated === null) return null
    request.session = rotated.session
    request[kSessionToken] = rotated.token
    this.setCookie(request, reply, rotated.token, rotated.session.expiresAt)
    return rotated
  }

  /** Ends the request's session and clears its cookie. */
  async endSession (request: FastifyRequest, reply: FastifyReply, reason: string): Promise<boolean> {
    const session = request.session
    if (session === null) {
      this.clearCookie(reply)
      return false
    }
    // Cleared only once the session is ended: after a store failure (503) the client can still retry the logout.
    const ended = await this.guard(this.manager.invalidate(session.id, { reason }))
    this.clearCookie(reply)
    request.session = null
    request[kSessionToken] = null
    return ended
  }

  clearCookie (reply: FastifyReply): void {
    const cookie = this.options.cookie
    if (cookie === false) return
    reply.clearCookie(cookie.name, { path: cookie.path, domain: cookie.domain, secure: cookie.secure === true ? true : undefined, httpOnly: cookie.httpOnly, sameSite: cookie.sameSite })
    reply.header('cache-control', 'no-store')
  }

  private setCookie (request: FastifyRequest, reply: FastifyReply, token: string, expiresAt: Date): void {
    const cookie = this.options.cookie
    if (cookie === false) return
    const absoluteMs = Math.max(0, expiresAt.getTime() - this.manager.now())
    const maxAge = Math.ceil(Math.max(absoluteMs, this.manager.absoluteTimeoutMs) / 1000)
    reply.setCookie(cookie.name, this.signer === null ? token : this.signer.sign(token), {
      path: cookie.path,
      domain: cookie.domain,
      httpOnly: cookie.httpOnly,
      sameSite: cookie.sameSite,
      secure: cookie.secure === 'auto' ? request.protocol === 'https' : cookie.secure,
      maxAge
    })
    reply.header('cache-control', 'no-store')
  }

  private readToken (request: FastifyRequest, reply: FastifyReply): string | null {
    request[kFromCookie] = false
    const fromHeader = request.headers[this.options.header]
    if (typeof fromHeader === 'string' && fromHeader !== '') return fromHeader
    if (Array.isArray(fromHeader)) return fromHeader.join(',')
    const cookie = this.options.cookie
    if (cookie === false) return null
    const raw = request.cookies?.[cookie.name]
    if (raw === undefined || raw === '') return null
    request[kFromCookie] = true
    if (this.signer === null) return raw
    const unsigned = this.signer.unsign(raw)
    if (!unsigned.valid || unsigned.value === null) {
      this.clearCookie(reply)
      return ''
    }
    return unsigned.value
  }

  /** An unknown, expired, tampered or malformed token: anonymous, cookie cleared, counted against the client. */
  private rejectToken (request: FastifyRequest, reply: FastifyReply, ip: string): void {
    if (request[kFromCookie]) this.clearCookie(reply)
    const { count, crossed } = this.tracker.record(ip)
    if (crossed) {
      request.log.warn({ ip, count }, 'fastify-distributed-session: many invalid session tokens from one client')
      this.manager.emit('security', {
        type: 'security', timestamp: new Date(this.manager.now()), userId: '', sessionId: '', data: { rule: 'invalid_tokens', ip, count }
      })
    }
  }

  private securityReport (request: FastifyRequest, loaded: LoadedSession, ip: string): SuspiciousReport | null {
    const session = loaded.session
    const isIpChanged = this.options.checkIp && session.ipAddress !== '' && session.ipAddress !== ip
    let similarity: number | null = null
    const stored = session.deviceFingerprint
    if (stored !== '') {
      // A request only brings headers: the client-supplied slots given at login are left out of the comparison.
      const storedHeaders = stored.endsWith(NO_CLIENT_SLOTS) ? stored : headerFingerprint(stored)
      const current = fingerprintFromHeaders(request.headers)
      similarity = storedHeaders === current ? 1 : compareFingerprints(storedHeaders, current)
    }
    const isFingerprintMismatch = similarity !== null && similarity < this.options.fingerprintTolerance
    // The common case allocates nothing.
    if (loaded.concurrencyFlags === 0 && !isIpChanged && !isFingerprintMismatch) return null
    const reasons: SuspiciousReport['reasons'] = flagReasons(loaded.concurrencyFlags)
    if (isIpChanged) reasons.push('ip_changed')
    if (isFingerprintMismatch) reasons.push('fingerprint_mismatch')
    return { userId: session.userId, sessionId: session.id, reasons, fingerprintSimilarity: similarity }
  }

  /** Logs and records a suspicious session at most once a minute per session and instance. */
  private reportSuspicious (request: FastifyRequest, report: SuspiciousReport): void {
    const now = this.manager.now()
    const last = this.reported.get(report.sessionId)
    if (last !== undefined && now - last < SUSPICIOUS_REPORT_EVERY_MS) return
    if (this.reported.size >= MAX_REPORTED) this.reported.delete(this.reported.keys().next().value as string)
    this.reported.set(report.sessionId, now)
    this.recordSecurity(request, report.userId, report.sessionId, {
      rule: 'suspicious_session', reasons: report.reasons, fingerprintSimilarity: report.fingerprintSimilarity, ip: request.ip
    })
  }

  /** Security events: warn log, 'security' event and audit record; a store failure here never fails the request. */
  private recordSecurity (request: FastifyRequest, userId: string, sessionId: string, data: Record<string, unknown>, persist = true): void {
    request.log.warn({ userId, sessionId, ...data }, 'fastify-distributed-session: security event')
    this.guard(this.manager.recordSecurityEvent(userId, sessionId, data, persist)).catch((error: unknown) => {
      request.log.warn({ err: error }, 'fastify-distributed-session: could not record a security event')
    })
  }
}

function isOwnError (error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('FST_SESSION_')
}

function header (request: FastifyRequest, name: string): string {
  const value = request.headers[name]
  return typeof value === 'string' ? value : Array.isArray(value) ? (value[0] ?? '') : ''
}
