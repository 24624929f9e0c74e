/**
 * The logger the manager and the Redis store report through (a Fastify / pino logger fits): what failed, with
 * context, and never a token.
 */
export interface SessionLogger {
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

function warning (obj: object, msg: string): void {
  let detail: string
  try {
    detail = JSON.stringify(obj, (_key, value: unknown) => value instanceof Error ? { name: value.name, message: value.message } : value)
  } catch {
    detail = '(unserializable context)'
  }
  process.emitWarning(`${msg} ${detail}`, { code: 'FST_SESSION_WARNING' })
}

/**
 * Logs through `logger`, ignoring a logger that throws: a report must never change how the operation it reports ends,
 * and in a promise handler a throw would become an unhandled rejection (the process exits).
 */
export function logQuietly (logger: SessionLogger, level: 'warn' | 'error', obj: object, msg: string): void {
  try {
    logger[level](obj, msg)
  } catch {
    // A throwing logger cannot be reported anywhere else.
  }
}

/** Without a logger: process warnings (Node prints them to stderr; an app can listen to process "warning"). */
export const warningLogger: SessionLogger = { warn: warning, error: warning }

/**
 * Reports connection errors at most once per `intervalMs`, with how many were left out since the last report:
 * a Redis that refuses connections fails every retry, and each would otherwise be a log line.
 */
export function rateLimited (logger: SessionLogger, msg: string, intervalMs = 10_000, now: () => number = Date.now): (error: unknown) => void {
  let lastAt = -Infinity
  let suppressed = 0
  return (error) => {
    const at = now()
    if (at - lastAt < intervalMs) {
      suppressed++
      return
    }
    lastAt = at
    logQuietly(logger, 'error', { err: error, suppressed }, msg)
    suppressed = 0
  }
}
