import Fastify, { type FastifyInstance, type InjectOptions } from 'fastify'
import { Redis } from 'ioredis'
import { test, type Test } from 'tap'
import sessionPlugin from '../lib/index'
import { auditFeedKey, auditTimelineKey, sessionKey, shardKey } from '../lib/store/redis/keys'
import { startRedis } from './helpers/redis'

// Same seed, same requests: a failure names its seed and request number, and FUZZ_SEED=<seed> replays it.
const SEED = Number(process.env.FUZZ_SEED ?? 0x5e55_10a)
const REQUESTS = 10_000
const CHUNK = 200

/** mulberry32: a small seeded PRNG, good enough to pick test inputs. */
function prng (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let x = state
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296
  }
}

interface Pick {
  int (max: number): number
  one<T> (items: readonly T[]): T
  chance (p: number): boolean
  string (length: number, alphabet: string): string
  unicode (length: number): string
}

function picker (random: () => number): Pick {
  const pick: Pick = {
    int: (max) => Math.floor(random() * max),
    one: (items) => items[pick.int(items.length)] as never,
    chance: (p) => random() < p,
    string: (length, alphabet) => Array.from({ length }, () => alphabet[pick.int(alphabet.length)]).join(''),
    // Any code point, lone surrogates included.
    unicode: (length) => Array.from({ length }, () => String.fromCodePoint(pick.chance(0.2) ? 0xd800 + pick.int(0x800) : pick.int(0x10ffff))).join('')
  }
  return pick
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const CONTROL = Array.from({ length: 32 }, (_, n) => String.fromCharCode(n)).join('') + '\u007f'

interface Fuzzed { token: string, sessionId: string, user: string }

/** The README app plus /meta, which hands request bodies to update and startSession untouched. */
async function fuzzApp (t: Test, client: Redis, unexpected: Error[]): Promise<FastifyInstance> {
  // Bodies with __proto__ and constructor reach the handler as own keys: the plugin must refuse them itself.
  const app = Fastify({ trustProxy: true, onProtoPoisoning: 'ignore', onConstructorPoisoning: 'ignore' })
  await app.register(sessionPlugin, { redis: client, cleanup: false, touchInterval: 0, maxSessionsPerUser: 3, maxMetadataBytes: 8192 })
  app.addHook('onError', async (request, reply, error) => {
    if (!(error.statusCode !== undefined && error.statusCode < 500)) unexpected.push(error)
  })
  app.post<{ Body: { user: string } }>('/login', async (request, reply) => {
    const { token, session } = await reply.startSession(request.body.user)
    return { token, sessionId: session.id }
  })
  app.get('/orders', { preHandler: app.requireSession }, async (request) => ({ userId: request.session?.userId }))
  app.get('/public', async (request) => ({ anonymous: request.session === null }))
  app.post<{ Body: { op?: unknown, user?: unknown, metadata?: unknown } }>('/meta', async (request, reply) => {
    const body = request.body ?? {}
    if (body.op === 'start') {
      const { session } = await reply.startSession(body.user as string, { metadata: body.metadata as Record<string, unknown> })
      return { sessionId: session.id }
    }
    if (request.session === null) return reply.code(401).send({ error: 'no session' })
    return { updated: await app.sessions.update(request.session.id, { metadata: body.metadata as Record<string, unknown> }) }
  })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

/** Percent-encodes the UTF-8 bytes of any string (lone surrogates included), as a hostile client would. */
function percentEncode (value: string): string {
  return [...Buffer.from(value)].map((byte) => `%${byte.toString(16).padStart(2, '0')}`).join('')
}

// Built once: 60,000 small keys (gave a 503 in 0.1.0) and 200,000 (a raw RangeError from an argument spread).
const MANY_KEYS = JSON.stringify(Object.fromEntries(Array.from({ length: 60_000 }, (_, n) => [`k${n}`, n])))
const TOO_MANY_KEYS = JSON.stringify(Object.fromEntries(Array.from({ length: 200_000 }, (_, n) => [`k${n}`, 0])))

function deeplyNested (depth: number): string {
  return '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
}

/** A hostile token: everything a client could send in X-Session-ID or the session cookie. */
function hostileToken (pick: Pick, pool: Fuzzed[]): string {
  const real = pick.one(pool)
  const other = pick.one(pool)
  const position = pick.int(real.token.length)
  switch (pick.int(16)) {
    case 0: return ''
    case 1: return pick.string(10 * 1024, BASE64URL + '.')
    case 2: return pick.unicode(1 + pick.int(80))
    case 3: return pick.string(1 + pick.int(40), CONTROL + 'ab.')
    case 4: return `${real.token}\r\nSet-Cookie: session_id=${other.token}`
    case 5: return other.sessionId
    case 6: return `${other.sessionId}.${real.token.slice(25)}`
    case 7: return real.token.slice(0, position) + pick.one([...BASE64URL].filter((c) => c !== real.token[position])) + real.token.slice(position + 1)
    case 8: return `${pick.string(24, BASE64URL)}.${pick.string(43, BASE64URL)}`
    case 9: return ` ${real.token} `
    case 10: return real.token + pick.one(['.', ',', ';', '=', '%00', '\u0000', 'x'])
    case 11: return pick.one(['null', 'undefined', '[object Object]', '{"$ne":null}', '../../etc/passwd', '%2e%2e', '*', '\\', '"', "'"])
    case 12: return real.token.replace('.', pick.one(['%2E', '..', ':', '']))
    case 13: return real.token.toUpperCase()
    case 14: return pick.chance(0.05) ? 'A'.repeat(1024 * 1024) : real.token
    default: return real.token
  }
}

/** A hostile /meta body: prototype keys, deep nesting, huge strings, wrong types, bad keys. */
function hostileBody (pick: Pick, pool: Fuzzed[]): { payload: string, op: string } {
  const op = pick.chance(0.5) ? 'start' : 'update'
  const user = pick.one([pick.one(pool).user, '', pick.string(300, 'u'), `a${pick.string(3, CONTROL)}`, pick.unicode(10), 'x'])
  const metadata = (() => {
    switch (pick.int(16)) {
      case 0: return '{"__proto__":{"polluted":true}}'
      case 1: return '{"ok":{"constructor":{"prototype":{"polluted":true}}}}'
      case 2: return `{"deep":${deeplyNested(1 + pick.int(pick.chance(0.1) ? 100_000 : 50))}}`
      case 3: return JSON.stringify({ big: 'x'.repeat(pick.int(2) === 0 ? 9000 : 2 * 1024 * 1024) })
      case 4: return pick.one(['[]', '1', '"s"', 'null', 'true', '[{"a":1}]'])
      case 5: return JSON.stringify({ [pick.string(1 + pick.int(5), '"\\\u0000\n')]: 1 })
      case 6: return JSON.stringify({ ['k'.repeat(200)]: 1 })
      case 7: return JSON.stringify(Object.fromEntries(Array.from({ length: 1000 }, (_, n) => [`k${n}`, n])))
      case 8: return JSON.stringify({ [pick.unicode(5)]: pick.unicode(20) })
      case 9: return '{"prototype":1,"__proto__":null}'
      case 10: return JSON.stringify({ plan: 'pro', n: pick.int(100), nested: { list: [1, 'two', null] } })
      // A display name cut mid-emoji, in a value, a key and deep inside: JSON.parse keeps the lone surrogate.
      case 11: return pick.one(['{"name":"\\ud83d"}', '{"\\udc00":1}', '{"a":{"b":["x\\ud800y"]}}', '{"ok":"\\ud83d\\ude00"}'])
      case 12: return JSON.stringify({ nul: `a${'\u0000'.repeat(1 + pick.int(3))}b`, [`k${pick.int(9)}`]: '\u0000' })
      case 13: return MANY_KEYS
      case 14: return pick.chance(0.2) ? TOO_MANY_KEYS : '{}'
      default: return JSON.stringify({ remove: null })
    }
  })()
  return { op, payload: `{"op":${JSON.stringify(op)},"user":${JSON.stringify(user)},"metadata":${metadata}}` }
}

test(`fuzz: ${REQUESTS} hostile requests through the Redis-backed app (seed ${SEED})`, async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const unexpected: Error[] = []
  const app = await fuzzApp(t, client, unexpected)
  const pick = picker(prng(SEED))
  const users = Array.from({ length: 12 }, (_, n) => `fuzz${n}`)
  const pool: Fuzzed[] = []
  const refill = async () => {
    pool.length = 0
    for (const user of users) {
      const response = await app.inject({ method: 'POST', url: '/login', payload: { user } })
      pool.push({ ...response.json(), user })
    }
  }
  await refill()

  const statuses = new Map<number, number>()
  let refused = 0
  let sent = 0
  const failures: string[] = []
  // Every key the store owns, overwritten with another type: the scripts repair it, requests never get a 5xx.
  const damaged: string[] = []
  const damage = async (): Promise<void> => {
    const victim = pick.one(pool)
    const tag = victim.sessionId.slice(0, 2)
    const key = pick.one([shardKey('sess:', tag), `sess:{${tag}}:u:${victim.user}`, auditTimelineKey('sess:', tag, victim.user), auditFeedKey('sess:', tag), sessionKey('sess:', victim.sessionId)])
    const type = pick.one(['string', 'hash', 'list', 'set', 'zset', 'stream'])
    await client.del(key)
    if (type === 'string') await client.set(key, pick.unicode(8))
    else if (type === 'hash') await client.hset(key, 'u', victim.user)
    else if (type === 'list') await client.rpush(key, 'x')
    else if (type === 'set') await client.sadd(key, 'x')
    else if (type === 'zset') await client.zadd(key, 1, 'x')
    else await client.xadd(key, '*', 'f', 'v')
    damaged.push(`${key.replace(/:[^:]*$/, '')} as ${type}`)
  }
  for (let first = 0; first < REQUESTS; first += CHUNK) {
    if ((first / CHUNK) % 5 === 0) await refill()
    await damage()
    const batch: Array<{ n: number, options: InjectOptions }> = []
    for (let n = first; n < first + CHUNK; n++) {
      const token = hostileToken(pick, pool)
      const where = pick.int(4)
      const headers: Record<string, string> = {}
      if (where === 0 || where === 2) headers['x-session-id'] = token
      if (where === 1 || where === 2) headers.cookie = `session_id=${token}`
      if (where === 3) headers.cookie = `session_id=${percentEncode(token)}; session_id=${pick.one(pool).token}`
      if (pick.chance(0.1)) headers['x-forwarded-for'] = pick.one(['', '::1', '999.1.1.1', pick.unicode(8), `${pick.int(256)}.0.0.1, 10.0.0.1`])
      const kind = pick.int(10)
      let options: InjectOptions
      if (kind < 4) options = { url: pick.one(['/orders', '/public', '/profile', '/sessions']), headers }
      else if (kind < 6) options = { method: 'DELETE', url: `/sessions/${pick.one([pick.one(pool).sessionId, pick.string(24, BASE64URL), percentEncode(pick.unicode(5)), '..%2F..'])}`, headers }
      else if (kind < 8) {
        const body = hostileBody(pick, pool)
        if (body.op === 'update') headers['x-session-id'] = pick.one(pool).token
        options = { method: 'POST', url: '/meta', headers: { ...headers, 'content-type': 'application/json' }, payload: body.payload }
      } else if (kind === 8) options = { method: 'POST', url: '/logout', headers }
      else options = { method: 'POST', url: '/login', headers, payload: { user: pick.one(users) } }
      batch.push({ n, options })
    }
    await Promise.all(batch.map(async ({ n, options }) => {
      let status: number
      try {
        status = (await app.inject(options)).statusCode
      } catch (error) {
        // light-my-request refuses some header values (control characters) before they reach Fastify.
        if ((error as { code?: string }).code === 'ERR_INVALID_CHAR' || /Invalid character/i.test(String(error))) {
          refused++
          return
        }
        throw error
      }
      sent++
      statuses.set(status, (statuses.get(status) ?? 0) + 1)
      if (status < 200 || status >= 500) failures.push(`seed ${SEED} request ${n}: ${status} ${JSON.stringify(options).slice(0, 300)}`)
    }))
  }

  t.equal(sent + refused, REQUESTS, `${REQUESTS} requests generated`)
  t.same(failures, [], `every response is 2xx or 4xx, with ${damaged.length} keys damaged on the way`)
  t.same(unexpected.map((e) => e.message), [], 'no handler threw an unexpected error')
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched')
  t.ok((statuses.get(200) ?? 0) > 1000, 'plenty of requests got through with a real session')
  t.comment(`seed ${SEED}: ${sent} answered (${[...statuses].sort(([a], [b]) => a - b).map(([s, c]) => `${s}: ${c}`).join(', ')}), ${refused} refused by inject`)
})

test('corrupt data in Redis is no session: cleaned up, audited as corrupt, never a 500', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const unexpected: Error[] = []
  const app = await fuzzApp(t, client, unexpected)
  /** Rewrites the session's stored record (a JSON object: docs/design.md) as text. */
  const edit = (change: (raw: string) => string) => async (key: string) => {
    await client.set(key, change(await client.get(key) as string), 'KEEPTTL')
  }
  const field = (change: (record: Record<string, unknown>) => void) => edit((raw) => {
    const record = JSON.parse(raw) as Record<string, unknown>
    change(record)
    return JSON.stringify(record)
  })
  const replace = (write: (key: string) => Promise<unknown>) => async (key: string) => {
    await client.del(key)
    await write(key)
  }
  // [what, how, whether the owner can still be read from the key]
  const corruptions: Array<[string, (key: string) => Promise<unknown>, boolean]> = [
    ['bad JSON in a metadata value', field((r) => { r.m = { plan: '{"unterminated' } }), true],
    ['a metadata value that is not JSON text', field((r) => { r.m = { plan: 5 } }), true],
    ['a prototype key in metadata', edit((raw) => raw.replace(/\}$/, ',"m":{"__proto__":"{\\"polluted\\":true}"}}')), true],
    ['a timestamp that is not a number', field((r) => { r.l = 'yesterday' }), true],
    ['a missing creation time', field((r) => { delete r.c }), true],
    ['a missing token hash', field((r) => { delete r.h }), true],
    ['a token hash of the wrong length', field((r) => { r.h = 'short' }), true],
    ['an empty user id', field((r) => { r.u = '' }), false],
    ['not JSON at all', edit(() => 'garbage'), false],
    ['JSON that is not an object', edit(() => '[1,2,3]'), false],
    ['a hash where the record should be', replace((key) => client.hset(key, 'u', 'someone', 'h', 'x')), false],
    ['a list where the record should be', replace((key) => client.rpush(key, 'a', 'b')), false]
  ]
  const audited: Array<{ type: string, sessionId: string }> = []
  app.sessions.on('audit', (event) => audited.push(event))

  for (const [n, [name, corrupt, isOwnerReadable]] of corruptions.entries()) {
    const user = `victim${n}`
    const { token, sessionId } = (await app.inject({ method: 'POST', url: '/login', payload: { user } })).json()
    const tag = sessionId.slice(0, 2)
    const key = sessionKey('sess:', sessionId)
    await corrupt(key)
    const statuses = []
    for (const url of ['/orders', '/profile', '/public', '/sessions', '/orders']) {
      statuses.push((await app.inject({ url, headers: { 'x-session-id': token } })).statusCode)
    }
    t.same(statuses, [401, 401, 200, 401, 401], `${name}: no session, never a 5xx`)
    if (!isOwnerReadable) {
      // The owner cannot be read from the key: the index and expiry entries are found by the owner's next login.
      t.equal((await app.inject({ method: 'POST', url: '/login', payload: { user } })).statusCode, 200, `${name}: the owner can log in again`)
    }
    const ends = (await app.sessions.auditLog(user)).filter((e) => e.sessionId === sessionId && e.type !== 'created').map((e) => e.type)
    t.same({
      key: await client.exists(key),
      index: await client.zscore(`sess:{${tag}}:u:${user}`, sessionId),
      queue: await client.zscore(shardKey('sess:', tag), `${sessionId}${user}`),
      audited: ends
    }, { key: 0, index: null, queue: null, audited: ['corrupt'] }, `${name}: key, index and expiry entries removed, audited once as 'corrupt'`)
    t.ok(audited.some((e) => e.type === 'corrupt' && e.sessionId === sessionId), `${name}: the 'corrupt' event was emitted`)
  }
  t.same(unexpected.map((e) => e.message), [], 'no handler threw an unexpected error')

  // Not a session but the user's index: the scripts rebuild it from the shard's expiry queue.
  const { token, sessionId } = (await app.inject({ method: 'POST', url: '/login', payload: { user: 'indexed' } })).json()
  const index = `sess:{${sessionId.slice(0, 2)}}:u:indexed`
  await client.del(index)
  await client.set(index, 'garbage')
  const answers = await Promise.all([
    app.inject({ url: '/sessions', headers: { 'x-session-id': token } }),
    app.inject({ method: 'POST', url: '/logout', headers: { 'x-session-id': token } }),
    app.inject({ method: 'POST', url: '/login', payload: { user: 'indexed' } })
  ])
  t.ok(answers.every((a) => a.statusCode !== 500), `a string where the user's index should be: never a 500 (${answers.map((a) => a.statusCode).join(', ')})`)
  t.ok(answers.every((a) => a.statusCode < 500), 'and the user can still list, log out and log in')
  t.equal(await client.type(index), 'zset', 'the index is a sorted set again')
  t.ok((await app.sessions.auditLog('indexed')).some((e) => e.type === 'corrupt' && e.data.reason === 'index'), 'the repair is audited')
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched')
})
