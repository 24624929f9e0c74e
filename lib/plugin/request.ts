import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { boundedDuration, markResolved } from '../core/bounds'
import { InvalidTokenTracker } from '../security/abuse'
import { flagReasons } from '../security/concurrency'
import { DeadlineQueue } from './deadline'
import { StoreGuard } from './store-guard'
import { kDenied, kFromCookie, kHandler, kSessionToken } from './symbols'
import { TokenTransport } from './transport'
import { errors } from '../core/errors'
import { logQuietly } from '../core/logger'
import { fingerprintFromHeaders, requestSimilarity } from '../security/fingerprint'
import { storedIpAddress, storedUserAgent, type LoadedSession, type Resolution, type Session, type SessionManager, type SessionData, type SessionMetadata } from '../core/manager'
import type { ResolvedOptions, SuspiciousReport } from './options'
import { parseToken, type ParsedToken } from '../core/token'

export interface StartSessionData {
  metadata?: SessionData['metadata']
  /** Client-supplied fingerprint fields (screen, timezone, platform). */
  fingerprint?: { screen?: string, timezone?: string, platform?: string }
  /** Absolute lifetime of this session (ms or a duration string); the cookie's Max-Age follows it. @default absoluteTimeout */
  ttl?: number | string
  /** Idle timeout of this session (ms or a duration string). @default idleTimeout */
  idleTimeout?: number | string
  /**
   * `false` issues a browser-session cookie (no Max-Age: the browser drops it when it closes); the session itself
   * still ends at its idle or absolute deadline. @default true
   */
  persistent?: boolean
}

export interface RotateSessionOptions {
  /** `false` issues a browser-session cookie, as `startSession(..., { persistent: false })`. @default true */
  persistent?: boolean
}

/**
 * The arguments of `reply.startSession` after the user id. Once your `SessionMetadata` declares a required field,
 * `data` and its `metadata` are required and must hold every required field: a session never starts without what the
 * type promises. Without required fields, `data` stays optional.
 */
export type StartSessionArgs = {} extends SessionMetadata
  ? [data?: StartSessionData]
  : [data: StartSessionData & { metadata: SessionMetadata & Record<string, unknown> }]

const STORE_ERROR = 'FST_SESSION_STORE_UNAVAILABLE'
const SUSPICIOUS_REPORT_EVERY_MS = 60_000
const MAX_REPORTED = 10_000

/** The plugin's warnings on the request's logger; a logger that throws is ignored (see logQuietly). */
function warn (request: FastifyRequest, fields: Record<string, unknown>, message: string): void {
  logQuietly(request.log, 'warn', fields, message)
}

/** `done`'s error for a throw or rejection: a falsy value must not read as success (the request would be served). */
function failure (error: unknown): Error {
  return error instanceof Error ? error : new Error(`fastify-distributed-session: a request hook failed without an Error (${String(error)})`)
}

/**
 * The request path: loading the session with one store call, the security report and its throttling, and the reply
 * operations (start, confirm, rotate, end). Token transport and cookies are in transport.ts, the store-failure policy
 * in store-guard.ts, the per-request Symbols in symbols.ts. Routes and the plugin entry call into this.
 */
export class RequestHandler {
  private readonly transport: TokenTransport
  private readonly store: StoreGuard
  private readonly tracker: InvalidTokenTracker
  /** sessionId -> last time a suspicious report was recorded for it by this instance. */
  private readonly reported = new Map<string, number>()
  /** Bounds an async `onSuspicious` handler by `storeTimeout`: a handler that never settles must not hang the request. */
  private readonly handlerDeadlines: DeadlineQueue

  constructor (readonly manager: SessionManager, readonly options: ResolvedOptions) {
    this.transport = new TokenTransport(options, manager.now)
    this.store = new StoreGuard(manager, options.storeTimeoutMs)
    this.handlerDeadlines = new DeadlineQueue(options.storeTimeoutMs)
    this.tracker = new InvalidTokenTracker(markResolved({
      threshold: options.invalidTokenThreshold,
      windowMs: options.invalidTokenWindowMs,
      blockMs: options.blockMs
    }), manager.now)
  }

  /** Bounds a store call by `storeTimeout` and turns store failures into FST_SESSION_STORE_UNAVAILABLE. */
  guard<T> (promise: Promise<T>): Promise<T> {
    return this.store.guard(promise)
  }

  /** The hook behind `requireSession`: the plugin's handler must have seen the request, and found a session. */
  static requireSession (request: FastifyRequest, done: HookHandlerDoneFunction): void {
    const handler = request[kHandler]
    if (handler === undefined || handler === null) {
      done(RequestHandler.unserved(request))
      return
    }
    done(request.session === null ? handler.refusal(request) : undefined)
  }

  /**
   * Why no handler saw the request: the plugin is not registered for its context (the decorator is missing), or the
   * hook runs before the plugin's onRequest hook (the decorator is there, still null).
   */
  static unserved (request: FastifyRequest): Error {
    return request[kHandler] === null ? new errors.HOOK_TOO_EARLY() : new errors.NOT_REGISTERED()
  }

  /** The error for a request without a served session: 403 for a session refused by 'deny', 401 otherwise. */
  refusal (request: FastifyRequest): Error {
    return request[kDenied] != null ? new errors.SESSION_SUSPICIOUS() : new errors.SESSION_REQUIRED()
  }

  /** A served session, or the one refused by 'deny': logout and login may end it. */
  endable (request: FastifyRequest): Session | null {
    return request.session ?? request[kDenied] ?? null
  }

  /**
   * onRequest, callback style: sets request.session and request.requiresSecurityCheck, then calls `done` once. No
   * store call without a token, for a request that matches no route, or for a route with `config: { session: false }`.
   * A near-cache hit or the memory store answers at once; a store read costs no promise beyond the store's own (a
   * throw before `done` reaches Fastify's hook runner, which answers it as `done(error)` would).
   */
  loadSession (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    request[kHandler] = this
    const routeSession = request.is404 ? false : request.routeOptions.config.session
    const token = routeSession === false ? null : this.transport.readToken(request, reply)
    if (token === null) {
      done()
      return
    }
    const ip = request.ip
    if (this.tracker.isBlocked(ip)) throw new errors.TOO_MANY_INVALID_TOKENS()
    const parsed = parseToken(token)
    if (parsed === null) {
      this.rejectToken(request, reply, ip)
      done()
      return
    }
    const isStepUpRoute = routeSession === 'step-up'
    // Under 'deny' the session is read without a touch: a refused request must not extend its life.
    const resolution = this.manager.resolveParsed(parsed, this.options.onSuspicious !== 'deny')
    if (!(resolution instanceof Promise)) {
      this.finish(request, reply, token, parsed, resolution, ip, isStepUpRoute, done)
      return
    }
    this.store.watch(resolution,
      (loaded) => { this.finish(request, reply, token, parsed, loaded, ip, isStepUpRoute, done) },
      (error: unknown) => { this.storeFailed(request, error, done) })
  }

  /** `serve`, then `done` once: with serve's error (thrown or rejected), or without. */
  private finish (request: FastifyRequest, reply: FastifyReply, token: string, parsed: ParsedToken, loaded: Resolution, ip: string, isStepUpRoute: boolean, done: HookHandlerDoneFunction): void {
    let serving: Promise<void> | undefined
    try {
      serving = this.serve(request, reply, token, parsed, loaded, ip, isStepUpRoute)
    } catch (error) {
      done(failure(error))
      return
    }
    if (serving === undefined) done()
    else serving.then(() => { done() }, (error: unknown) => { done(failure(error)) })
  }

  /** A failed session read: 503 (the guard's FST_SESSION_STORE_UNAVAILABLE), or anonymous under `failOpen`. */
  private storeFailed (request: FastifyRequest, error: unknown, done: HookHandlerDoneFunction): void {
    if ((error as { code?: string } | null)?.code === STORE_ERROR && this.options.failOpen) {
      warn(request, { err: error }, 'fastify-distributed-session: session store unavailable, serving the request as anonymous')
      done()
      return
    }
    done(failure(error))
  }

  /** What a resolved token means for the request; a promise only for a due touch under 'deny' or a suspicious-session handler. */
  private serve (request: FastifyRequest, reply: FastifyReply, token: string, parsed: ParsedToken, loaded: Resolution, ip: string, isStepUpRoute: boolean): Promise<void> | undefined {
    if (loaded === null) {
      this.rejectToken(request, reply, ip)
      return
    }
    if (loaded.session === null) {
      // The holder of an ended session's token (not a guesser: the secret matched) learns why it ended.
      request.sessionEnded = loaded.ended
      // After a rotation or a new login this browser already holds a newer cookie (a request sent before it was set
      // can be answered after): clearing here would sign it out. A logout cleared the cookie itself.
      if (request[kFromCookie] && loaded.ended.reason !== 'rotated' && loaded.ended.reason !== 'signed_out') this.transport.clearCookie(request, reply)
      return
    }
    request[kSessionToken] = token
    const isDenyPolicy = this.options.onSuspicious === 'deny'
    const report = this.securityReport(request, loaded, ip)
    if (report === null) {
      if (isDenyPolicy && this.isTouchDue(loaded.session)) return this.touchAllowed(request, parsed, loaded.session)
      request.session = loaded.session
      return
    }
    request.requiresSecurityCheck = true
    this.reportSuspicious(request, report)
    const policy = this.options.onSuspicious
    if (policy === 'deny' && !isStepUpRoute) {
      // Not served: requireSession answers 403; reply.endSession() and reply.startSession() can still end it, and a
      // step-up route (config: { session: 'step-up' }) can confirm it.
      request[kDenied] = loaded.session
      return
    }
    request.session = loaded.session
    if (typeof policy !== 'function') return
    const handled: unknown = policy(request, report)
    // An async handler is waited for, up to storeTimeout (then 503: the check did not decide); a plain one returned
    // undefined.
    if (handled === undefined) return undefined
    return this.handlerDeadlines.bound(Promise.resolve(handled).then(() => {}), () => this.handlerTimedOut(request, report), (error) => error)
  }

  private handlerTimedOut (request: FastifyRequest, report: SuspiciousReport): Error {
    warn(request, { userId: report.userId, sessionId: report.sessionId, timeoutMs: this.options.storeTimeoutMs },
      'fastify-distributed-session: the onSuspicious handler did not settle within storeTimeout; the request is refused')
    return new errors.SUSPICIOUS_HANDLER_TIMEOUT()
  }

  /**
   * Under 'deny', the touch of an allowed request: a second load, with the touch. Like a failed touch in the manager,
   * a store failure here leaves the idle deadline where it was and serves the session just read.
   */
  private async touchAllowed (request: FastifyRequest, parsed: ParsedToken, read: Session): Promise<void> {
    try {
      const touched = await this.guard(this.manager.load(parsed, true))
      request.session = touched === null ? null : touched.session
    } catch (error) {
      warn(request, { err: error }, 'fastify-distributed-session: could not touch the session')
      request.session = read
    }
  }

  private isTouchDue (session: Session): boolean {
    return this.manager.now() - session.lastActivity.getTime() >= this.manager.touchIntervalMs
  }

  /**
   * reply.startSession: creates a session and sets the cookie. The request's previous session (a refused one
   * included) is ended in the same atomic step as the create (`replace`), and only when the create succeeds: a
   * failed login leaves the device signed in.
   */
  async startSession (request: FastifyRequest, reply: FastifyReply, userId: string, data: StartSessionData = {}): Promise<{ token: string, session: Session, newDevice: boolean }> {
    if (data === null || typeof data !== 'object') throw new errors.INVALID_ARGUMENT('startSession options must be an object')
    if (data.persistent !== undefined && typeof data.persistent !== 'boolean') throw new errors.INVALID_ARGUMENT('persistent must be a boolean')
    // Checked here as well as by the manager: a bad value fails the login before anything is sent to the store.
    const ttlMs = boundedDuration('ttl', data.ttl, this.manager.absoluteTimeoutMs)
    boundedDuration('idleTimeout', data.idleTimeout, this.manager.idleTimeoutMs)
    const previous = this.endable(request)
    // notAfter: a create that reaches Redis after this request has answered 503 must change nothing (no eviction of
    // the user's oldest session, no end of this device's previous one). Real time: Redis compares it with its clock.
    const createOptions: { ttl?: number | string, idleTimeout?: number | string, replace?: string, notAfter: number } = {
      ttl: data.ttl, idleTimeout: data.idleTimeout, replace: previous?.id, notAfter: Date.now() + this.options.storeTimeoutMs
    }
    const creating = this.manager.create(userId, {
      ipAddress: request.ip,
      userAgent: header(request, 'user-agent'),
      deviceFingerprint: fingerprintFromHeaders(request.headers, data.fingerprint),
      metadata: data.metadata
    }, createOptions)
    let created: Awaited<typeof creating>
    try {
      created = await this.guard(creating)
    } catch (error) {
      // The client was told the login failed: a create that still completes later must not leave a session that
      // nobody holds the token of (and that could evict the user's real ones).
      creating.then((late) => this.manager.invalidate(late.session.id, { reason: 'login_timed_out' }), () => false)
        .catch((lateError: unknown) => { warn(request, { err: lateError }, 'fastify-distributed-session: could not end a login that timed out') })
      throw error
    }
    request.session = created.session
    request[kDenied] = null
    request.requiresSecurityCheck = false
    request[kSessionToken] = created.token
    this.transport.setCookie(request, reply, created.token, data.persistent === false ? null : absoluteDeadlineOf(created.session, ttlMs))
    for (const evicted of created.evicted) {
      // The create script has already written the 'evicted' audit record: log and emit, no second round trip.
      this.recordSecurity(request, userId, evicted, { rule: 'session_limit_eviction', newSessionId: created.session.id }, false)
    }
    return { token: created.token, session: created.session, newDevice: created.newDevice }
  }

  /**
   * Reply.confirmSession. The app has just verified a second factor or the password: the request's IP and
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
    // What the store now holds, not the raw request: the same clipping as every stored IP and user agent.
    request.session = {
      ...session, authenticatedAt: new Date(this.manager.now()), ipAddress: storedIpAddress(request.ip), userAgent: storedUserAgent(header(request, 'user-agent'))
    }
    return true
  }

  /** reply.rotateSession: a new token for the request's session (privilege change); the old one dies at once. */
  async rotateSession (request: FastifyRequest, reply: FastifyReply, options: RotateSessionOptions = {}): Promise<{ token: string, session: Session } | null> {
    const token = request[kSessionToken]
    if (request.session === null || token === null) return null
    // A rotation that reaches Redis after this request answered 503 must not replace the token the client still holds.
    const rotated = await this.guard(this.manager.rotate(token, { notAfter: Date.now() + this.options.storeTimeoutMs }))
    if (rotated === null) return null
    request.session = rotated.session
    request[kSessionToken] = rotated.token
    this.transport.setCookie(request, reply, rotated.token, options.persistent === false ? null : absoluteDeadlineOf(rotated.session, this.manager.absoluteTimeoutMs))
    return rotated
  }

  /** Ends the request's session and clears its cookie. */
  async endSession (request: FastifyRequest, reply: FastifyReply, reason: string): Promise<boolean> {
    const session = this.endable(request)
    if (session === null) {
      this.transport.clearCookie(request, reply)
      return false
    }
    // Cleared only once the session is ended: after a store failure (503) the client can still retry the logout.
    const ended = await this.guard(this.manager.invalidate(session.id, { reason }))
    this.transport.clearCookie(request, reply)
    request.session = null
    request[kDenied] = null
    request[kSessionToken] = null
    return ended
  }

  /** An unknown, expired, tampered or malformed token: anonymous, cookie cleared, counted against the client. */
  private rejectToken (request: FastifyRequest, reply: FastifyReply, ip: string): void {
    if (request[kFromCookie]) this.transport.clearCookie(request, reply)
    const { count, crossed } = this.tracker.record(ip)
    if (crossed) {
      warn(request, { ip, count }, 'fastify-distributed-session: many invalid session tokens from one client')
      this.manager.emit('security', {
        type: 'security', timestamp: new Date(this.manager.now()), userId: '', sessionId: '', data: { rule: 'invalid_tokens', ip, count }
      })
    }
  }

  private securityReport (request: FastifyRequest, loaded: LoadedSession, ip: string): SuspiciousReport | null {
    const session = loaded.session
    const isIpChanged = this.options.checkIp && session.ipAddress !== '' && session.ipAddress !== ip
    const stored = session.deviceFingerprint
    const similarity = stored === '' ? null : requestSimilarity(stored, fingerprintFromHeaders(request.headers))
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
    warn(request, { userId, sessionId, ...data }, 'fastify-distributed-session: security event')
    this.guard(this.manager.recordSecurityEvent(userId, sessionId, data, persist)).catch((error: unknown) => {
      warn(request, { err: error }, 'fastify-distributed-session: could not record a security event')
    })
  }
}

/** The session's absolute deadline (epoch ms); `lifetimeMs` after its creation when the store does not report it. */
function absoluteDeadlineOf (session: Session, lifetimeMs: number): number {
  const reported = (session as Session & { absoluteDeadline?: Date | number }).absoluteDeadline
  if (reported instanceof Date) return reported.getTime()
  if (typeof reported === 'number') return reported
  return session.createdAt.getTime() + lifetimeMs
}

function header (request: FastifyRequest, name: string): string {
  const value = request.headers[name]
  return typeof value === 'string' ? value : Array.isArray(value) ? (value[0] ?? '') : ''
}
