import createError from '@fastify/error'

/**
 * Every error this package raises on purpose. HTTP-facing ones carry the status code the plugin answers with;
 * `code` is stable and documented in docs/api.md.
 */
export const errors = {
  SESSION_REQUIRED: createError('FST_SESSION_REQUIRED', 'A valid session is required: log in and send the session cookie or the X-Session-ID header', 401),
  SESSION_NOT_FOUND: createError('FST_SESSION_NOT_FOUND', 'Session not found', 404),
  SESSION_SUSPICIOUS: createError('FST_SESSION_SUSPICIOUS', 'This session shows suspicious concurrent use: authenticate again', 403),
  STORE_UNAVAILABLE: createError('FST_SESSION_STORE_UNAVAILABLE', 'The session store is unavailable: try again shortly', 503),
  TOO_MANY_INVALID_TOKENS: createError('FST_SESSION_TOO_MANY_INVALID_TOKENS', 'Too many invalid session tokens from this address: try again later', 429),
  LIMIT_REACHED: createError('FST_SESSION_LIMIT_REACHED', 'The user already has %s active sessions: log out another device first', 409),
  INVALID_USER_ID: createError('FST_SESSION_INVALID_USER_ID', 'userId must be a non-empty string of at most 256 characters without control characters', 400),
  INVALID_METADATA: createError('FST_SESSION_INVALID_METADATA', 'Invalid session metadata: %s', 400),
  METADATA_TOO_LARGE: createError('FST_SESSION_METADATA_TOO_LARGE', 'Session metadata would exceed %s bytes serialized: store less or raise maxMetadataBytes', 400),
  INVALID_ARGUMENT: createError('FST_SESSION_INVALID_ARGUMENT', 'Invalid argument: %s', 400),
  /** The message names the documented option and what it allows: `"<option>" must be ...`. */
  INVALID_OPTION: createError('FST_SESSION_INVALID_OPTION', 'fastify-distributed-session: option %s', 500),
  NOT_REGISTERED: createError('FST_SESSION_NOT_REGISTERED', 'fastify-distributed-session is not registered for this route: register the plugin on the root instance (or in a parent of the context that declares this route) before the routes that use requireSession', 500),
  HOOK_TOO_EARLY: createError('FST_SESSION_HOOK_TOO_EARLY', 'requireSession ran before fastify-distributed-session loaded the session: use it as a preValidation or preHandler hook, or as an onRequest hook added after the plugin', 500),
  ALREADY_REGISTERED: createError('FST_SESSION_ALREADY_REGISTERED', 'fastify-distributed-session is already registered in this context or a parent of it: register it once, on the root instance', 500),
  INVALID_OWNER: createError('FST_SESSION_INVALID_OWNER', 'The owner (userId) was given but is not a non-empty string: pass the owner\'s user id, or leave the key out to mean any owner', 400),
  CONFLICT: createError('FST_SESSION_CONFLICT', 'The session changed since revision %s: read it again and retry', 409),
  STORE_CHECK_FAILED: createError('FST_SESSION_STORE_CHECK_FAILED', 'fastify-distributed-session: the session store failed the startup check: %s (option "startupCheck": false starts without it)', 500),
  SUSPICIOUS_HANDLER_TIMEOUT: createError('FST_SESSION_SUSPICIOUS_HANDLER_TIMEOUT', 'The security check of this session did not finish in time: try again shortly', 503),
  REAUTH_REQUIRED: createError('FST_SESSION_REAUTH_REQUIRED', 'This action needs a recent authentication: confirm your password or second factor first', 403)
}
