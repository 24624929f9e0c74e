import { test } from 'tap'
import Fastify, { type FastifyRequest } from 'fastify'
import sessionPlugin from '../lib/index'
import { Redis } from 'ioredis'
import { SessionManager } from '../lib/core/manager'
import { RedisStore } from '../lib/store/redis/store'
import { sessionKey } from '../lib/store/redis/keys'
import { FLAG_DISTINCT_USER_AGENTS } from '../lib/security/concurrency'
import { packUserAgent, unpackUserAgent, USER_AGENT_PHRASES } from '../lib/store/redis/user-agent'
import { startRedis } from './helpers/redis'

// Real user agents of the browsers and clients most sessions come from (desktop and mobile, 2024-2026 versions).
const AGENTS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36',
  'Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0',
  'Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.7 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/133.0 Mobile/15E148 Safari/605.1.15',
  'Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36',
  'curl/8.5.0',
  'okhttp/4.12.0',
  'PostmanRuntime/7.42.0'
]

// Strings a caller of the manager can pass (anything up to 512 characters; the manager removes control characters).
const HOSTILE = [
  '',
  '\\tA',
  'Mozilla/5.0 (\\tB',
  'ā Chrome/ ǿ \u0100\u0101',
  'latin1 ÿ é Mozilla/5.0 (',
  'emoji 😀 Mozilla/5.0 (X11; Linux x86_64)',
  'Mozilla/5.0 (Mozilla/5.0 (Mozilla/5.0 (',
  ' Safari/537.36 Mobile Safari/537.36',
  '"quoted" / slash \\/ backslash \\',
  'A Safari/537.36B',
  'iPhone; CPU iPhone OS ozilla/5.0 (',
  'x'.repeat(512)
]

const utf8 = (text: string): number => Buffer.byteLength(text, 'utf8')

test('user agents: every real and hostile text comes back exactly, and the common ones are stored in a fraction of their bytes', async (t) => {
  for (const agent of [...AGENTS, ...HOSTILE]) {
    t.equal(unpackUserAgent(packUserAgent(agent)), agent, `round trip: ${JSON.stringify(agent).slice(0, 60)}`)
    // Twice: the second read is answered by the remembered text.
    t.equal(unpackUserAgent(packUserAgent(agent)), agent)
  }
  let seed = 7
  const random = (): number => { seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648; return seed / 2_147_483_648 }
  // Whole phrases, their heads and tails (a tail after a code's letter once read as a phrase: 'M' + 'ozilla/5.0 ('),
  // every code letter, and characters of the JSON and the Lua pattern.
  const pieces = [
    ...USER_AGENT_PHRASES, ...USER_AGENT_PHRASES.map((phrase) => phrase.slice(1)), ...USER_AGENT_PHRASES.map((phrase) => phrase.slice(0, -1)),
    ...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789', ' ', '(', ')', ';', '/', '\\', '"', '%w', 'é', '😀', '\u0101'
  ]
  for (let n = 0; n < 20_000; n++) {
    let text = ''
    for (let k = Math.floor(random() * 8); k > 0; k--) text += pieces[Math.floor(random() * pieces.length)]
    if (unpackUserAgent(packUserAgent(text)) !== text) {
      t.fail(`round trip of ${JSON.stringify(text)}`)
      return
    }
  }
  const json = (text: string): number => utf8(JSON.stringify(text)) - 2
  const bench = AGENTS[2] as string
  t.equal(json(packUserAgent(bench)), 17, `the bench's user agent (${utf8(bench)} bytes) takes 17 bytes of the record's JSON`)
  for (const agent of AGENTS.slice(0, 15)) {
    const packed = packUserAgent(agent)
    t.ok(json(packed) <= utf8(agent) * 0.4, `a browser's user agent takes at most 40% of its bytes in JSON: ${json(packed)} of ${utf8(agent)}`)
    t.match(packed, /^[\x20-\x7e\t]*$/, 'packed text is ASCII: the reply decodes and parses on the fast paths')
  }
  for (const crafted of ['iPhone; CPU iPhone OS ozilla/5.0 (', 'Mozilla/5.0 (iPhone; CPU iPhone OS ozilla/5.0 (Windows NT 10.0; Win64; x64)']) {
    t.equal(unpackUserAgent(packUserAgent(crafted)), crafted, `a code's letter followed by a phrase's tail: ${crafted}`)
  }
  t.equal(packUserAgent('curl/8.5.0'), 'curl/8.5.0', 'text without a phrase is stored as it is')
  t.equal(packUserAgent('a\tb'), 'ab', 'a tab passed straight to the store is dropped, as the manager drops it')
  t.equal(unpackUserAgent('x\t~\tz'), 'x\t~\tz', 'a letter no phrase has (yet) comes back as it is')
})

test('user agents: the phrase list is append-only (stored records name phrases by position)', async (t) => {
  // A record outlives deploys and rollbacks: changing or reordering an entry would change what stored records say.
  // Append new phrases at the end of PHRASES and to this list.
  t.same(USER_AGENT_PHRASES, [
    'Mozilla/5.0 (',
    ') AppleWebKit/537.36 (KHTML, like Gecko) Chrome/',
    ' Safari/537.36',
    ' Mobile Safari/537.36',
    'AppleWebKit/537.36 (KHTML, like Gecko)',
    ') AppleWebKit/605.1.15 (KHTML, like Gecko)',
    'Windows NT 10.0; Win64; x64',
    'Macintosh; Intel Mac OS X 10_15_7',
    'Macintosh; Intel Mac OS X 10.15',
    'X11; Linux x86_64',
    'X11; Ubuntu; Linux x86_64',
    'Linux; Android ',
    'iPhone; CPU iPhone OS ',
    'iPad; CPU OS ',
    ' like Mac OS X',
    '.0.0.0',
    ') Gecko/20100101 Firefox/',
    '; rv:',
    ' Version/',
    ' Mobile/15E148 Safari/604.1',
    ' Safari/605.1.15',
    ' Safari/604.1',
    ' Edg/',
    ' OPR/',
    ' SamsungBrowser/',
    ' CriOS/',
    ' FxiOS/',
    ' Mobile/15E148'
  ])
  t.ok(USER_AGENT_PHRASES.length <= 62, 'every phrase has a letter of A-Z a-z 0-9')
})

test('user agents in Redis: stored packed, read, listed, updated and confirmed as sent; records of builds before packing still count as the same device', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const prefix = 'ua:'
  const manager = new SessionManager({
    store: new RedisStore({ client, prefix }),
    maxSessionsPerUser: 50,
    security: { maxDistinctUserAgents: 1, maxDistinctIps: 100, rapidCreationWindow: 0 }
  })
  t.teardown(() => manager.close())
  const recordOf = async (id: string): Promise<Record<string, unknown>> => JSON.parse(await client.get(sessionKey(prefix, id)) as string)

  for (const agent of [...AGENTS, ...HOSTILE.filter((h) => h !== '')]) {
    const { token, session } = await manager.create('reader', { userAgent: agent })
    t.equal(session.userAgent, agent, 'create answers the text sent')
    t.equal((await manager.load(token, false))?.session.userAgent, agent, 'a load reads it back')
    t.equal((await recordOf(session.id)).g, packUserAgent(agent), 'the record holds the packed text')
  }
  const listed = await manager.list('reader')
  t.same(listed.map((s) => s.userAgent).sort(), [...AGENTS, ...HOSTILE.filter((h) => h !== '')].sort(), 'the list shows every text as sent')

  const chrome = AGENTS[0] as string
  const firefox = AGENTS[6] as string
  const { token, session } = await manager.create('updated', { userAgent: chrome })
  t.ok(await manager.update(session.id, { userAgent: firefox }), 'update')
  t.equal((await recordOf(session.id)).g, packUserAgent(firefox), 'an update stores the packed text')
  t.equal((await manager.load(token, false))?.session.userAgent, firefox)
  t.ok(await manager.confirm(session.id, { userId: 'updated', userAgent: chrome, ipAddress: '', deviceFingerprint: '', method: 'password' }), 'confirm')
  t.equal((await recordOf(session.id)).g, packUserAgent(chrome), 'a confirm stores the packed text')
  t.equal((await manager.load(token, false))?.session.userAgent, chrome)

  // A record written by a build before packing holds the plain text: it reads back unchanged, and the
  // distinct-user-agent rule (here: more than 1 other user agent flags) sees it as the same browser as a packed one.
  const first = await manager.create('mixed', { userAgent: chrome })
  const old = await manager.create('mixed', { userAgent: chrome })
  const oldRecord = await recordOf(old.session.id)
  t.not(oldRecord.g, chrome, 'packed when written')
  oldRecord.g = chrome
  await client.set(sessionKey(prefix, old.session.id), JSON.stringify(oldRecord), 'KEEPTTL')
  t.equal((await manager.load(old.token, false))?.session.userAgent, chrome, 'a plain record reads back unchanged')
  const newest = await manager.create('mixed', { userAgent: chrome })
  for (const { token: held } of [first, old, newest]) {
    t.equal((await manager.load(held, false))?.concurrencyFlags, 0, 'one browser: no distinct-user-agent flag')
  }
  // The rule still counts: with a Firefox session, Chrome's sessions see two other browsers, Firefox's one.
  const other = await manager.create('mixed', { userAgent: firefox })
  t.equal((await manager.load(first.token, false))?.concurrencyFlags, FLAG_DISTINCT_USER_AGENTS, 'Chrome next to Chrome (plain), Chrome and Firefox: flagged')
  t.equal((await manager.load(other.token, false))?.concurrencyFlags, 0, 'Firefox next to three Chromes: not flagged')
})

test('after reply.confirmSession, request.session shows the user agent and IP as the store holds them, not the raw header', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const app = Fastify({ trustProxy: true })
  await app.register(sessionPlugin, { redis: client, cleanup: false })
  app.post<{ Body: { user: string } }>('/login', async (request, reply) => ({ token: (await reply.startSession(request.body.user)).token }))
  const shown = (request: FastifyRequest): { userAgent?: string, ipAddress?: string } => ({ userAgent: request.session?.userAgent, ipAddress: request.session?.ipAddress })
  app.post('/verify', { preHandler: app.requireSession }, async (request, reply) => {
    await reply.confirmSession({ method: 'password' })
    return shown(request)
  })
  app.get('/me', { preHandler: app.requireSession }, async (request) => shown(request))
  t.teardown(() => app.close())
  await app.ready()
  const { token } = (await app.inject({ method: 'POST', url: '/login', payload: { user: 'verifier' } })).json()
  const headers = { 'x-session-id': token, 'user-agent': 'Bot\t/1 ' + 'x'.repeat(600), 'x-forwarded-for': '203.0.113.9' }
  const confirmed = (await app.inject({ method: 'POST', url: '/verify', headers })).json()
  const stored = (await app.inject({ url: '/me', headers })).json()
  t.equal(stored.userAgent, ('Bot/1 ' + 'x'.repeat(600)).slice(0, 512), 'stored: tab removed, 512 characters')
  t.same(confirmed, stored, 'the confirming request shows what the store holds')
})
