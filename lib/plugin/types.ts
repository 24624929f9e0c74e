import type { HookHandlerDoneFunction } from 'fastify'
import type { Session, SessionManager } from '../core/manager'
import type { SessionEnded } from '../security/stepup'
import type { RotateSessionOptions, StartSessionArgs } from './request'

// What the plugin adds to Fastify's request, reply and instance types.
declare module 'fastify' {
  interface FastifyRequest {
    /** The request's session, or null when it carries no valid token. */
    session: Session | null
    /** True when the session shows suspicious concurrent use, another IP or another device: ask for a second factor. */
    requiresSecurityCheck: boolean
    /** For a token whose session has ended (within the last day): why and when; else null. */
    sessionEnded: SessionEnded | null
  }
  interface FastifyReply {
    /**
     * Creates a session for the user (ending the request's previous one), sets the cookie, returns the token.
     * `data.metadata` is required when your `SessionMetadata` declares a required field (see `StartSessionArgs`).
     */
    startSession (userId: string, ...data: StartSessionArgs): Promise<{ token: string, session: Session, newDevice: boolean }>
    /** Ends the request's session server-side and clears the cookie; false when there was none. */
    endSession (reason?: string): Promise<boolean>
    /** Replaces the request's token (privilege change) and sets the new cookie; null without a session. */
    rotateSession (options?: RotateSessionOptions): Promise<{ token: string, session: Session } | null>
    /**
     * Call after verifying a second factor or the password: clears `requiresSecurityCheck` until something new
     * happens and moves `session.authenticatedAt` to now (audited `confirmed`). False when the session is gone.
     */
    confirmSession (options: { method: string }): Promise<boolean>
  }
  interface FastifyInstance {
    sessions: SessionManager
    /** The same hook as the named export `requireSession` (which also works where this decorator is not visible). */
    requireSession (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void
  }
  interface FastifyContextConfig {
    /**
     * `false`: the plugin does not load a session for this route (no store call); request.session stays null.
     * `'step-up'`: under `onSuspicious: 'deny'`, a flagged session is still served on this route (with
     * `requiresSecurityCheck` true), so a verification route can call `reply.confirmSession()`.
     */
    session?: boolean | 'step-up'
  }
}
