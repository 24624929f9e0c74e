import { Cluster, Redis } from 'ioredis'
import { test, type Test } from 'tap'
import { allConcurrencyFlags, concurrencyFlags } from '../lib/security/concurrency'
import { metadataBytes } from '../lib/core/metadata'
import { packUserAgent, unpackUserAgent } from '../lib/store/redis/user-agent'
import { sessionKey, shardKey } from '../lib/store/redis/keys'
import { shardTag } from '../lib/core/token'
import { rateLimited, warningLogger } from '../lib/core/logger'
import { SessionManager, type SessionManagerOptions } from '../lib/core/manager'
import { MemoryStore } from '../lib/store/memory/store'
import { parseRecord, RedisStore } from '../lib/store/redis/store'
import { sessionDeadline, type Store } from '../lib/store/types'
import { startRedis, startRedisCluster } from './helpers/redis'
import { probeLua, seededRandom } from './helpers/parity'

type Client = Redis | Cluster
interface Logged { level: 'warn' | 'error', obj: Record<string, unknown>, msg: string }

function recordingLogger (): { logged: Logged[], logger: NonNullable<SessionManagerOptions['logger']> } {
  const logged: Logged[] = []
  return {
    logged,
    logger: {
      warn: (obj, msg) => { logged.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }) },
      error: (obj, msg) => { logged.push({ level: 'error', obj: obj as Record<string, unknown>, msg }) }
    }
  }
}

let prefixes = 0
function setup (client: Client, options: Partial<SessionManagerOptions> = {}): { m: SessionManager, prefix: string, logged: Logged[], logger: NonNullable<SessionManagerOptions['logger']> } {
  const prefix = `i${prefixes++}:`
  const { logged, logger } = recordingLogger()
  const m = new SessionManager({ store: new RedisStore({ client, prefix, logger }), logger, ...options })
  return { m, prefix, logged, logger }
}

/** A valid record as the store writes it, for planting variants by hand. */
function record (fields: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Date.now()
  return { u: 'plant', h: 'h'.repeat(43), c: now, l: now, a: now + 3_600_000, i: '', g: '', f: '', s: 0, ...fields }
}

/** Plants a raw record under a fresh session id on the user's shard, listed in the index and the expiry queue. */
async function plant (client: Client, prefix: string, tag: string, uid: string, raw: string): Promise<string> {
  const sid = tag + 'P'.repeat(22)
  await client.set(sessionKey(prefix, sid), raw, 'PX', 3_600_000)
  await client.zadd(`${prefix}{${tag}}:u:${uid}`, Date.now(), sid)
  await client.zadd(shardKey(prefix, tag), Date.now() + 3_600_000, sid + uid)
  return sid
}

test('a logout never lies: a record holding a lone surrogate (the 0.1.0 bug) is ended, and its token no longer works', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const { m, prefix } = setup(client)
  // 0.1.0 stored metadata { name: '\ud83d' } as JSON text Lua cannot decode: INVALIDATE answered "gone" while
  // JSON.parse in Node still opened the session. The edge refuses it now; a record planted by hand shows the store.
  await t.rejects(m.create('victim', { metadata: { name: '\ud83d' } }), { code: 'FST_SESSION_INVALID_METADATA', statusCode: 400 })
  const { token, session } = await m.create('victim', { metadata: { name: 'ok' } })
  const key = sessionKey(prefix, session.id)
  const planted = (await client.get(key) as string).replace('"\\"ok\\""', '"\\"\\\\ud83d\\""')
  t.not(planted, await client.get(key), 'the planted record differs')
  await client.set(key, planted, 'KEEPTTL')
  t.same(JSON.parse(JSON.parse(planted).m.name), '\ud83d', 'Node can read the lone surrogate')
  t.equal(parseRecord(session.id, planted), 'corrupt', 'but the record is corrupt for Node as it is for Lua')
  t.equal(await m.invalidate(session.id, { userId: 'victim' }), true, 'logout reports the session ended')
  t.equal(await client.exists(key), 0, 'and the key is gone')
  t.equal(await m.get(token), null, 'the token opens nothing')
  t.same(await m.list('victim'), [])

  for (const bad of ['"\\ud83d"', '"\\udc00x"', '"a\\ud83d\\ud83d"']) {
    const other = await m.create('victim2')
    const otherKey = sessionKey(prefix, other.session.id)
    const text = JSON.parse(await client.get(otherKey) as string)
    text.g = JSON.parse(bad)
    await client.set(otherKey, JSON.stringify(text), 'KEEPTTL')
    t.equal(await m.get(other.token), null, `a user agent ${bad} planted in the record: no session`)
    const again = await m.create('victim2')
    const againKey = sessionKey(prefix, again.session.id)
    await client.set(againKey, (await client.get(againKey) as string).replace('"u":"victim2"', `"u":"victim2","x":${bad}`), 'KEEPTTL')
    t.equal(await m.invalidate(again.session.id), true, `an unknown field ${bad}: invalidate still ends it`)
    t.equal(await m.get(again.token), null)
  }
  t.equal(await m.invalidate(session.id), false, 'a second logout finds nothing')
})

test('parseRecord and the scripts accept and refuse the same records, and compute the same deadline', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const { m, prefix } = setup(client, { idleTimeout: '30m', touchInterval: 0 })
  const store = m.store
  await m.create('plant')
  const tag = shardTag('plant')
  const variants: Array<[string, string]> = [
    ['valid', JSON.stringify(record())],
    ['revision 3', JSON.stringify(record({ r: 3 }))],
    ['revision -1', JSON.stringify(record({ r: -1 }))],
    ['revision 1.5', JSON.stringify(record({ r: 1.5 }))],
    ['revision "1"', JSON.stringify(record({ r: '1' }))],
    ['revision 2^60', JSON.stringify(record({ r: 2 ** 60 }))],
    ['idle 60000', JSON.stringify(record({ d: 60_000 }))],
    ['idle 0', JSON.stringify(record({ d: 0 }))],
    ['idle -5', JSON.stringify(record({ d: -5 }))],
    ['idle "60000"', JSON.stringify(record({ d: '60000' }))],
    ['idle 1e999', JSON.stringify(record({ d: 1 })).replace('"d":1', '"d":1e999')],
    ['lone surrogate in user id', JSON.stringify(record()).replace('"u":"plant"', '"u":"plant\\ud800"')],
    ['lone surrogate in metadata', JSON.stringify(record({ m: { k: '"\\ud83d"' } }))],
    ['surrogate pair in metadata', JSON.stringify(record({ m: { k: '"\\ud83d\\ude00"' } }))],
    ['NUL in metadata', JSON.stringify(record({ m: { k: '"a\\u0000b"' } }))],
    ['unknown field kept', JSON.stringify(record({ z: { deep: [1, 2] } }))],
    ['lone surrogate in an unknown field', JSON.stringify(record()).replace('"s":0', '"s":0,"z":"\\udfff"')],
    // The store leaves i, g, f and s out at their defaults and writes slashes plain (encode in scripts.ts).
    ['defaults left out', JSON.stringify({ ...record(), i: undefined, g: undefined, f: undefined, s: undefined })],
    ['slashes escaped, as cjson writes them', JSON.stringify(record({ g: 'Mozilla/5.0 (X11) a\\/b' })).replaceAll('/', '\\/')],
    ['slashes plain', JSON.stringify(record({ g: 'Mozilla/5.0 (X11) a\\/b' }))],
    ['flags of the wrong type', JSON.stringify(record({ s: '3' }))]
  ]
  for (const [name, raw] of variants) {
    const sid = await plant(client, prefix, tag, 'plant', raw)
    const node = parseRecord(sid, raw)
    const lua = await store.touch(sid, Date.now(), 0, null)
    t.equal(lua.status === 'gone', node === 'corrupt', `${name}: Node says ${node === 'corrupt' ? 'corrupt' : 'valid'}, Lua says ${lua.status}`)
    await client.del(sessionKey(prefix, sid))
  }
  // The deadline rule: the record's own idle timeout when it has one, else the store's; never past the absolute one.
  for (const [fields, label] of [[{ d: 60_000 }, 'own idle'], [{}, 'default idle'], [{ d: 7_200_000 }, 'idle past the absolute deadline']] as const) {
    const now = Date.now()
    const raw = JSON.stringify(record({ ...fields, c: now, l: now, a: now + 3_600_000 }))
    const parsed = parseRecord('x', raw)
    if (parsed === null || parsed === 'corrupt' || 'ended' in parsed) throw new Error('valid record refused')
    const deadline = sessionDeadline(parsed, 30 * 60_000)
    const sid = await plant(client, prefix, tag, 'plant', raw)
    t.equal((await store.touch(sid, deadline - 1, 0, null)).status, 'touched', `${label}: alive for Lua 1 ms before the TS deadline`)
    await client.set(sessionKey(prefix, sid), raw, 'PX', 3_600_000)
    t.equal((await store.touch(sid, deadline, 0, null)).status, 'gone', `${label}: gone for Lua at the TS deadline`)
  }
})

test('the record as the scripts write it: defaults left out, slashes plain; both sides read back what was stored', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const { m, prefix } = setup(client, { touchInterval: 0 })
  const userAgent = 'Mozilla/5.0 (X11) \\/ a\\\\/b /\\'
  const bare = await m.create('writer')
  const bareRaw = await client.get(sessionKey(prefix, bare.session.id)) as string
  t.same(Object.keys(JSON.parse(bareRaw)).sort(), ['a', 'c', 'h', 'l', 'u'], `no IP, user agent, fingerprint, flags or metadata: ${bareRaw.length} bytes`)
  const full = await m.create('writer', { ipAddress: '192.0.2.1', userAgent, deviceFingerprint: 'v1.a/b', metadata: { path: '/x/y' } })
  const raw = await client.get(sessionKey(prefix, full.session.id)) as string
  t.notMatch(raw, /(?<!\\)(?:\\\\)*\\\//, 'no escaped slash is stored (a backslash of the text may precede a plain one)')
  t.equal(JSON.parse(raw).g, packUserAgent(userAgent), 'the user agent is stored packed')
  t.equal(unpackUserAgent(JSON.parse(raw).g), userAgent, 'and reads back exactly')
  const parsed = parseRecord(full.session.id, raw)
  if (parsed === null || parsed === 'corrupt' || 'ended' in parsed) throw new Error('the stored record is refused')
  t.same([parsed.userAgent, parsed.deviceFingerprint, parsed.metadata, parsed.concurrencyFlags], [userAgent, 'v1.a/b', { path: '/x/y' }, 0])
  // A script reads it (readRec), changes it and writes it again (encode): nothing drifts.
  t.ok(await m.update(full.session.id, { metadata: { n: 1 } }))
  const listed = (await m.list('writer')).find((session) => session.id === full.session.id)
  t.same([listed?.userAgent, listed?.deviceFingerprint, listed?.metadata], [userAgent, 'v1.a/b', { path: '/x/y', n: 1 }], 'after a script rewrote it')
  t.equal((await m.get(full.token))?.userAgent, userAgent, 'and the request path reads the same')
})

/** Overwrites `key` with a value of `type`. */
async function overwrite (client: Client, key: string, type: string): Promise<void> {
  await client.del(key)
  if (type === 'string') await client.set(key, 'garbage')
  else if (type === 'hash') await client.hset(key, 'f', 'v')
  else if (type === 'list') await client.rpush(key, 'a')
  else if (type === 'set') await client.sadd(key, 'a')
  else if (type === 'zset') await client.zadd(key, 1, 'a')
  else await client.xadd(key, '*', 'f', 'v')
}

async function damagedKeys (t: Test, client: Client): Promise<void> {
  const cases: Array<[string, string[], (prefix: string, tag: string, uid: string) => string, string]> = [
    ['the shard expiry queue', ['string', 'hash', 'list', 'set', 'stream'], (p, tag) => shardKey(p, tag), 'queue'],
    ["the user's index", ['string', 'hash', 'list', 'set', 'stream'], (p, tag, uid) => `${p}{${tag}}:u:${uid}`, 'index']
  ]
  for (const [what, types, keyOf, reason] of cases) {
    for (const type of types) {
      const { m, prefix, logged, logger } = setup(client)
      const uid = `user-${reason}-${type}`
      const audited: string[] = []
      m.on('audit', (event) => { if (event.type === 'corrupt') audited.push(String(event.data.reason)) })
      const first = await m.create(uid)
      const tag = first.session.id.slice(0, 2)
      await overwrite(client, keyOf(prefix, tag, uid), type)
      // A second manager, as another instance.
      const other = new SessionManager({ store: new RedisStore({ client, prefix, logger }), logger })
      other.on('audit', (event) => { if (event.type === 'corrupt') audited.push(String(event.data.reason)) })
      const second = await other.create(uid)
      t.ok(await other.get(second.token), `${what} as a ${type}: a login works`)
      t.ok((await other.list(uid)).length >= 1, `${what} as a ${type}: the user's sessions can be listed`)
      t.equal(await m.invalidate(second.session.id), true, `${what} as a ${type}: a logout works`)
      t.equal(await other.get(second.token), null)
      await other.invalidateAll(uid)
      const log = await other.auditLog(uid)
      t.ok(audited.includes(reason) || log.some((event) => event.type === 'corrupt' && event.data.reason === reason),
        `${what} as a ${type}: the repair is audited as 'corrupt' (${reason})`)
      t.ok(logged.some((entry) => entry.level === 'warn' && String(entry.obj.data).includes(reason)),
        `${what} as a ${type}: the repair is logged`)
    }
  }
}

// The audit keys (timeline, feed) are replaced by their next write: test/audit.test.ts.
test('every key the store owns, found with the wrong type, is repaired with a corrupt audit record and a log line: no user or shard stays at 503', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  await damagedKeys(t, client)
})

test('damaged keys are repaired on a Redis Cluster too', async (t) => {
  const cluster = await startRedisCluster(t)
  const client = new Cluster(cluster.startupNodes)
  t.teardown(() => client.quit())
  await client.ping()
  await damagedKeys(t, client)
})

test('a damaged record is no session even when removing it fails: load never throws for it', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const { logger, logged } = recordingLogger()
  const store: Store = new RedisStore({ client, prefix: 'fail:', logger })
  const failingDiscard = Object.create(store) as Store
  failingDiscard.discard = async () => { throw new Error('READONLY You can\'t write against a read only replica.') }
  const m = new SessionManager({ store: failingDiscard, logger })
  const errors: unknown[] = []
  m.on('storeError', (error) => errors.push(error))
  const { token, session } = await m.create('dora')
  await client.set(sessionKey('fail:', session.id), 'not json', 'KEEPTTL')
  t.equal(await m.load(token), null, 'no session, no throw')
  t.equal(errors.length, 1, "the failed removal is reported as 'storeError'")
  t.ok(logged.some((entry) => entry.obj.operation === 'discard' && entry.obj.sessionId === session.id), 'and logged with its context')
  t.notMatch(JSON.stringify(logged), token.split('.')[1] as string, 'never with the token')
})

test('a RedisStore that creates its own client logs connection errors, at most once per 10 s with the count left out', async (t) => {
  const { logger, logged } = recordingLogger()
  const printed: string[] = []
  const original = console.error
  console.error = (...args: unknown[]) => { printed.push(args.map(String).join(' ')) }
  t.teardown(() => { console.error = original })
  // Port 1 on localhost refuses connections at once.
  const store = new RedisStore({ client: 'redis://127.0.0.1:1', logger })
  t.teardown(() => store.close())
  for (let n = 0; n < 100 && logged.length === 0; n++) await new Promise((resolve) => setTimeout(resolve, 20)) // waits for ioredis's first retry
  const connectionErrors = logged.filter((entry) => /Redis connection error/.test(entry.msg))
  t.equal(connectionErrors.length, 1, 'one line for the first error')
  t.match(String((connectionErrors[0]?.obj.err as Error | undefined)?.message), /ECONNREFUSED/, 'with the cause')
  t.same(printed.filter((line) => /Unhandled error event/.test(line)), [], 'ioredis printed no "Unhandled error event"')
})

test('the O(n) concurrency flags of both stores equal the reference rule for every session (seeded)', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  let seed = 0x0f1a9
  const random = (): number => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648
    return seed / 2_147_483_648
  }
  const rules = { maxDistinctIps: 2, maxDistinctUserAgents: 1, rapidCreationWindow: 5000 }
  const seen = new Set<number>()
  for (let round = 0; round < 6; round++) {
    const sessions = Array.from({ length: 3 + Math.floor(random() * 12) }, () => ({
      ipAddress: random() < 0.2 ? '' : `10.0.0.${Math.floor(random() * 4)}`,
      userAgent: random() < 0.2 ? '' : `UA/${Math.floor(random() * 3)}`,
      at: Math.floor(random() * 4) * 3000
    })).sort((a, b) => a.at - b.at)
    for (const make of [() => new MemoryStore(), () => new RedisStore({ client, prefix: `flags${round}:` })]) {
      let clock = Date.UTC(2026, 0, 1)
      const start = clock
      const m = new SessionManager({ store: make(), now: () => clock, maxSessionsPerUser: 50, security: rules })
      const created = []
      for (const session of sessions) {
        clock = start + session.at
        created.push(await m.create('flagged', { ipAddress: session.ipAddress, userAgent: session.userAgent }))
      }
      const inputs = created.map((c) => ({ id: c.session.id, ipAddress: c.session.ipAddress, userAgent: c.session.userAgent, createdAt: c.session.createdAt.getTime() }))
      const expected = inputs.map((input) => concurrencyFlags(input.id, inputs, { maxDistinctIps: 2, maxDistinctUserAgents: 1, rapidCreationWindowMs: 5000 }))
      const actual = []
      for (const c of created) actual.push((await m.load(c.token, false))?.concurrencyFlags)
      t.same(actual, expected, `round ${round}, ${m.store.constructor.name}: ${sessions.length} sessions`)
      for (const flags of expected) seen.add(flags)
    }
  }
  t.ok(seen.size >= 4, `the rounds cover ${seen.size} different flag combinations`)
})

test('connection errors are reported once per interval with the number left out, and a throwing logger is contained', async (t) => {
  let clock = 0
  const lines: Array<Record<string, unknown>> = []
  const report = rateLimited({ warn: () => {}, error: (obj) => { lines.push(obj as Record<string, unknown>) } }, 'down', 10_000, () => clock)
  for (let n = 0; n < 5; n++) { report(new Error('ECONNREFUSED')); clock += 1000 }
  clock = 10_000
  report(new Error('ECONNREFUSED'))
  t.same(lines.map((line) => line.suppressed), [0, 4], 'the first error, then one line after 10 s counting the 4 left out')
  const throwing = rateLimited({ warn: () => {}, error: () => { throw new Error('logger down') } }, 'down')
  t.doesNotThrow(() => throwing(new Error('x')))
  const warnings: string[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning.message) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  warningLogger.warn({ err: new Error('boom'), sessionId: 'abc' }, 'fastify-distributed-session: test')
  await new Promise((resolve) => setImmediate(resolve))
  t.match(warnings, [/fastify-distributed-session: test .*"boom".*"abc"/], 'without a logger: a process warning with the context')
})

// Lua/TypeScript parity, seeded: each test prints its seed in its title; PARITY_SEED=<seed> replays the same cases.
const parity = seededRandom()

test(`the deadline rule is the same in Lua and TypeScript over 4000 random records (seed ${parity.seed})`, async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  for (let batch = 0; batch < 8; batch++) {
    const idleMs = 1 + parity.int(7_200_000)
    const cases = Array.from({ length: 500 }, () => {
      const l = 1_700_000_000_000 + parity.int(1_000_000_000)
      const rec: { l: number, a: number, d?: number } = { l, a: l - 3_600_000 + parity.int(7_200_000 * 2) }
      if (parity.random() < 0.5) rec.d = 1 + parity.int(7_200_000)
      return rec
    })
    const lua = await probeLua(client, 'deadline', cases, { idleMs })
    const ts = cases.map((rec) => String(sessionDeadline({ lastActivity: rec.l, absoluteDeadline: rec.a, idleTimeoutMs: rec.d }, idleMs)))
    t.same(lua, ts, `batch ${batch}: idle ${idleMs} ms`)
  }
})

test(`the metadata size is the same in Lua and TypeScript over 3000 random objects (seed ${parity.seed})`, async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const pieces = ['a', 'plan', 'é', '日本', '😀', 'x'.repeat(40), ' ', '\u0001', '\u00ff']
  const cases = Array.from({ length: 3000 }, () => {
    const m: Record<string, string> = {}
    for (let k = parity.int(8); k > 0; k--) {
      const key = Array.from({ length: 1 + parity.int(3) }, () => parity.pick(pieces)).join('')
      m[key] = JSON.stringify(parity.random() < 0.5 ? parity.int(1e9) : Array.from({ length: parity.int(4) }, () => parity.pick(pieces)).join(''))
    }
    return m
  })
  const lua = await probeLua(client, 'size', cases)
  const ts = cases.map((m) => `${metadataBytes(Object.entries(m))}/${Object.keys(m).length}`)
  t.same(lua, ts)
})

test(`the concurrency flags are the same in Lua and TypeScript over 2000 random users (seed ${parity.seed})`, async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  for (let batch = 0; batch < 4; batch++) {
    const rules = { maxDistinctIps: parity.int(4), maxDistinctUserAgents: parity.int(4), rapidCreationWindowMs: parity.pick([0, 1000, 5000, 60_000]) }
    const cases = Array.from({ length: 500 }, () => Array.from({ length: 1 + parity.int(8) }, () => ({
      i: parity.random() < 0.2 ? '' : `10.0.0.${parity.int(5)}`,
      g: parity.random() < 0.2 ? '' : `UA/${parity.int(4)}`,
      c: 1_700_000_000_000 + parity.int(6) * 1000
    })))
    const lua = await probeLua(client, 'flags', cases, { maxIps: rules.maxDistinctIps, maxUas: rules.maxDistinctUserAgents, rapidMs: rules.rapidCreationWindowMs })
    const ts = cases.map((sessions) => {
      const inputs = sessions.map((s, n) => ({ id: `probe${n + 1}`, ipAddress: s.i, userAgent: s.g, createdAt: s.c }))
      const all = allConcurrencyFlags(inputs, rules)
      t.same(all, inputs.map((input) => concurrencyFlags(input.id, inputs, rules)), 'the O(n) rule equals the reference rule')
      return all.join(',')
    })
    t.same(lua, ts, `batch ${batch}: ${JSON.stringify(rules)}`)
  }
})

test(`parseRecord and readRec accept and refuse the same 3000 random records (seed ${parity.seed})`, async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const values: unknown[] = ['', 'plant', 'h'.repeat(43), 'h'.repeat(42), 0, -1, 1.5, 60_000, 2 ** 60, 1e20, null, true, [], {}, [1], { k: '1' }]
  const fields = ['u', 'h', 'c', 'l', 'a', 'i', 'g', 'f', 's', 'm', 'r', 'd', 'x', 'z']
  // JSON.parse makes `__proto__` an own key, as a record written by hand would have it.
  const metadata: unknown[] = [{ k: '1' }, { k: '"\\ud83d"' }, { k: '"\\ud83d\\ude00"' }, { k: 'not json' }, { k: 1 }, JSON.parse('{"__proto__":"1"}'), { constructor: '1' }, {}, []]
  const raws = Array.from({ length: 3000 }, () => {
    // One in ten starts as an ended session's tombstone (no user id, a reason `x`).
    const rec: Record<string, unknown> = parity.random() < 0.1 ? { x: 'revoked', at: 1, h: 'h'.repeat(43) } : record()
    for (let k = parity.int(3); k > 0; k--) {
      const field = parity.pick(fields)
      if (parity.random() < 0.2) delete rec[field]
      else rec[field] = field === 'm' && parity.random() < 0.7 ? parity.pick(metadata) : parity.pick(values)
    }
    let raw = JSON.stringify(rec)
    // Texts JSON.stringify cannot write: infinity, and a lone surrogate in a top-level string.
    if (parity.random() < 0.05) raw = raw.replace(/"c":[^,}]+/, '"c":1e999')
    if (parity.random() < 0.05) raw = raw.replace('"u":"plant"', '"u":"plant\\udfff"')
    if (parity.random() < 0.03) raw = raw.slice(0, -1)
    return raw
  })
  const lua = await probeLua(client, 'record', raws)
  const ts = raws.map((raw) => {
    const parsed = parseRecord('probe', raw)
    return parsed === null || (parsed !== 'corrupt' && 'ended' in parsed) ? 'none' : parsed === 'corrupt' ? 'corrupt' : 'valid'
  })
  const disagreements = raws.filter((_, n) => lua[n] !== ts[n]).map((raw) => `${raw}: Lua ${lua[raws.indexOf(raw)] ?? ''}, TS ${ts[raws.indexOf(raw)] ?? ''}`)
  t.same(disagreements, [], `${raws.length} records, ${new Set(ts).size} verdicts seen`)
  t.ok(ts.includes('valid') && ts.includes('corrupt') && ts.includes('none'), 'the cases cover every verdict')
})
