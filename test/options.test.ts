import Fastify from 'fastify'
import { test } from 'tap'
import sessionPlugin, { MemoryStore, SessionCleanupService, SessionManager, type SessionPluginOptions } from '../lib/index'
import { COUNT_BOUNDS, DURATION_BOUNDS, markResolved } from '../lib/core/bounds'
import { resolveManagerSettings } from '../lib/core/manager'
import { parseDuration } from '../lib/core/duration'
import { resolveOptions } from '../lib/plugin/options'
import { InvalidTokenTracker } from '../lib/security/abuse'

const PREFIX = 'fastify-distributed-session: option '

async function refusal (options: unknown): Promise<{ code?: string, message: string, statusCode?: number }> {
  const app = Fastify()
  app.register(sessionPlugin, { cleanup: false, ...(options as SessionPluginOptions) })
  try {
    await app.ready()
    return { message: 'registered' }
  } catch (error) {
    return error as { code?: string, message: string, statusCode?: number }
  } finally {
    await app.close()
  }
}

/** Sets `value` at a dotted option path: 'security.invalidTokenWindow' -> { security: { invalidTokenWindow } }. */
function at (path: string, value: unknown): Record<string, unknown> {
  return path.split('.').reduceRight<unknown>((inner, key) => ({ [key]: inner }), value) as Record<string, unknown>
}

test('every duration option is refused past its bounds with one error type that names the documented option', async (t) => {
  for (const [name, { min, max }] of Object.entries(DURATION_BOUNDS)) {
    if (name === 'ttl') continue
    // What each option needs besides itself: a longer idle timeout, a Redis for the near cache (never reached).
    const context: Record<string, unknown> = name === 'touchInterval'
      ? { idleTimeout: '365d' }
      : name.startsWith('nearCache.') ? { redis: 'redis://127.0.0.1:1', startupCheck: false } : {}
    for (const value of [...(min > 0 ? [min - 1] : []), max + 1]) {
      const error = await refusal({ ...context, ...at(name, value) })
      t.equal(error.code, 'FST_SESSION_INVALID_OPTION', `${name}: ${value}`)
      t.equal(error.statusCode, 500)
      t.ok(error.message.startsWith(`${PREFIX}"${name}" must be a duration from `), error.message)
    }
    t.equal((await refusal({ ...context, ...at(name, max) })).message, 'registered', `${name}: ${max} is accepted`)
  }
})

test('every count option is refused past its bounds naming the documented option', async (t) => {
  for (const [name, { min, max }] of Object.entries(COUNT_BOUNDS)) {
    for (const value of [min - 1, max + 1, 1.5]) {
      const error = await refusal(at(name, value))
      t.equal(error.code, 'FST_SESSION_INVALID_OPTION', `${name}: ${value}`)
      t.ok(error.message.startsWith(`${PREFIX}"${name}" must be an integer `), error.message)
    }
  }
})

test("the issue's cases: retention '36500d' and invalidTokenWindow 0 are refused under their documented names", async (t) => {
  t.equal((await refusal({ audit: { retention: '36500d' } })).message,
    `${PREFIX}"audit.retention" must be a duration from 0 ms to 365 days (milliseconds, or a string such as '500ms', '30s', '30m', '24h', '7d'), got "36500d"`)
  t.equal((await refusal({ security: { invalidTokenWindow: 0 } })).message,
    `${PREFIX}"security.invalidTokenWindow" must be a duration from 1 second to 1 day (milliseconds, or a string such as '500ms', '30s', '30m', '24h', '7d'), got 0`)
})

test('patterns are shown as written, unknown options and wrong types say what is allowed', async (t) => {
  const cases: Array<[unknown, string]> = [
    [{ header: 'X Session' }, `${PREFIX}"header" must be a string of at least 1 and at most 64 characters matching ^[A-Za-z0-9-]+$, got "X Session"`],
    [{ keyPrefix: 'App{1}' }, `${PREFIX}"keyPrefix" must be a string of at least 1 and at most 64 characters matching ^[^{}\\s]+$, got "App{1}"`],
    [{ cookie: { secret: 'short' } }, `${PREFIX}"cookie.secret" must be a secret of at least 32 characters, or a non-empty array of them (the first signs, all verify), got "short"`],
    [{ cookie: { nme: 'x' } }, `${PREFIX}"cookie.nme" is not an option of this plugin (see docs/configuration.md), got "x"`],
    [{ cookie: { secure: 'yes' } }, `${PREFIX}"cookie.secure" must be true, false or 'auto', got "yes"`],
    [{ cookie: { partitioned: true, secure: false } }, `${PREFIX}"cookie.partitioned" must not be true with cookie.secure: false (a Partitioned cookie must be Secure): set cookie.secure to true or 'auto'`],
    [{ startupCheck: true }, `${PREFIX}"startupCheck" must be false or { timeout } with a duration such as '5s', got true`],
    [{ security: { checkIp: 'no' } }, `${PREFIX}"security.checkIp" must be true or false, got "no"`],
    [{ security: { maxDistinctIps: -1 } }, `${PREFIX}"security.maxDistinctIps" must be an integer >= 0, got -1`],
    [{ security: { fingerprintTolerance: 2 } }, `${PREFIX}"security.fingerprintTolerance" must be a number from 0 to 1, got 2`],
    [{ security: 'strict' }, `${PREFIX}"security" must be an object, got "strict"`],
    [{ cookie: { domain: '' } }, `${PREFIX}"cookie.domain" must be a string of at least 1 and at most 253 characters matching ^\\.?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$, got ""`],
    [{ cookie: { sameSite: 'none', secure: false } }, `${PREFIX}"cookie.sameSite" must not be "none" with cookie.secure: false (browsers refuse such cookies): set cookie.secure to true or 'auto'`],
    [{ cookie: { hostPrefix: true, path: '/app' } }, `${PREFIX}"cookie.hostPrefix" requires secure cookies, path "/" and no domain: remove cookie.domain, cookie.path and cookie.secure: false`],
    [{ metrics: { registry: {} } }, `${PREFIX}"metrics" must be { registry } with a prom-client Registry`],
    [{ now: 5 }, `${PREFIX}"now" must be a function`],
    [{ redis: {} }, `${PREFIX}"redis" must be an ioredis-compatible Redis or Cluster client or a redis:// or rediss:// URL`]
  ]
  for (const [options, message] of cases) {
    const error = await refusal(options)
    t.equal(error.code, 'FST_SESSION_INVALID_OPTION')
    t.equal(error.message, message)
  }
})

test('a custom store is checked for every method of the Store contract at registration', async (t) => {
  const complete = new MemoryStore()
  t.equal((await refusal({ store: complete })).message, 'registered')
  const partial = { load: complete.load.bind(complete), create: complete.create.bind(complete), configure: complete.configure.bind(complete) }
  t.equal((await refusal({ store: partial })).message,
    `${PREFIX}"store" must implement every method of the Store interface; missing: check, touch, update, invalidate, invalidateAll, list, rotate, discard, recordEvent, auditLog, cleanup, close, confirm, rename, reportUnrecognized, tryLock, release`)
  t.match((await refusal({ store: null })).message, /^fastify-distributed-session: option "store" must implement every method/)
  const wrongOptional = Object.assign(new MemoryStore(), { loadNow: 'yes', cacheStats: 1 })
  t.equal((await refusal({ store: wrongOptional })).message,
    `${PREFIX}"store" optional Store methods must be functions when present: loadNow, cacheStats`)
  const withoutOptional = Object.assign(new MemoryStore(), { loadNow: undefined })
  t.equal((await refusal({ store: withoutOptional })).message, 'registered', 'the optional methods may be left out')
})

test('the classes report their options the same way: SessionManager, SessionCleanupService and the invalid-token tracker', async (t) => {
  const store = new MemoryStore()
  t.throws(() => new SessionManager({ store, audit: { retention: '366d' } }), { code: 'FST_SESSION_INVALID_OPTION', message: /^fastify-distributed-session: option "audit\.retention" must be a duration from 0 ms to 365 days/ })
  t.throws(() => new SessionManager({ store, maxSessionsPerUser: 0 }), { code: 'FST_SESSION_INVALID_OPTION', message: `${PREFIX}"maxSessionsPerUser" must be an integer from 1 to 1000, got 0` })
  t.throws(() => new SessionManager({ store, limitPolicy: 'lru' as 'deny' }), { code: 'FST_SESSION_INVALID_OPTION', message: `${PREFIX}"limitPolicy" must be one of "evict-oldest", "deny", got "lru"` })
  const manager = new SessionManager({ store })
  t.throws(() => new SessionCleanupService({ manager, intervalMs: 0 }), { code: 'FST_SESSION_INVALID_OPTION', message: /^fastify-distributed-session: option "intervalMs"/ })
  t.throws(() => new InvalidTokenTracker({ windowMs: 0 }), { code: 'FST_SESSION_INVALID_OPTION', message: `${PREFIX}"windowMs" must be an integer >= 1, got 0` })
})

test('options are resolved once: the manager, cleanup service and tracker the plugin builds take the resolver\'s values as they are', async (t) => {
  const resolved = resolveOptions({ idleTimeout: '10m', touchInterval: '30s', maxSessionsPerUser: 3, audit: { retention: 0 }, security: { knownDevices: false } })
  t.same(resolved.manager, resolveManagerSettings({ idleTimeout: '10m', touchInterval: '30s', maxSessionsPerUser: 3, audit: { retention: 0 }, security: { knownDevices: false } }))
  t.match(resolved.manager, { idleTimeoutMs: 600_000, touchIntervalMs: 30_000, maxSessionsPerUser: 3, auditRetentionMs: 0, knownDevicesMs: 0 })

  const app = Fastify()
  app.register(sessionPlugin, { idleTimeout: '10m', touchInterval: '30s', maxSessionsPerUser: 3, cleanup: { interval: '2h', batchSize: 7 } })
  await app.ready()
  t.teardown(() => app.close())
  t.match(app.sessions, { idleTimeoutMs: 600_000, touchIntervalMs: 30_000, maxSessionsPerUser: 3 })

  // A value the resolver produced is taken without a second check: a marked options object is not validated again,
  // while the same object unmarked is (the classes a user builds validate through core/bounds.ts).
  const manager = new SessionManager({ store: new MemoryStore() })
  t.equal(new SessionCleanupService(markResolved({ manager, intervalMs: 0 })).intervalMs, 0)
  t.throws(() => new SessionCleanupService({ manager, intervalMs: 0 }), { code: 'FST_SESSION_INVALID_OPTION' })
  t.equal(new InvalidTokenTracker(markResolved({ windowMs: 0 })).windowMs, 0)
  t.throws(() => new InvalidTokenTracker({ windowMs: 0 }), { code: 'FST_SESSION_INVALID_OPTION' })
})

test('one duration syntax: the option schema accepts exactly the strings the manager parses', async (t) => {
  // Values within idleTimeout's bounds, so only the syntax decides.
  for (const idleTimeout of ['30m', ' 30m', '30m ', '30 m', '0.5h', '1800000ms', '1d', '30', 'm', '-1m', '1e3s', '30 min', '3O m']) {
    const parsed = parseDuration(idleTimeout)
    let isAccepted = true
    try {
      resolveOptions({ idleTimeout })
    } catch {
      isAccepted = false
    }
    t.equal(isAccepted, parsed !== null, `${JSON.stringify(idleTimeout)}: the plugin ${isAccepted ? 'accepts' : 'refuses'} it, parseDuration says ${String(parsed)}`)
  }
})

test('a BigInt or a circular object in a numeric option is refused with FST_SESSION_INVALID_OPTION, not a TypeError from the message', async (t) => {
  const circular: Record<string, unknown> = {}
  circular.self = circular
  for (const [value, shownAs] of [[10n, /got 10n/], [circular, /cannot be shown as JSON/]] as const) {
    t.throws(() => new SessionManager({ store: new MemoryStore(), idleTimeout: value as unknown as number }),
      { code: 'FST_SESSION_INVALID_OPTION', message: shownAs })
    t.throws(() => new SessionManager({ store: new MemoryStore(), maxSessionsPerUser: value as unknown as number }),
      { code: 'FST_SESSION_INVALID_OPTION', message: shownAs })
  }
})
