// The servers under test. Each builder returns a Node http.Server that is not listening yet; every variant answers
// POST /login { user } (to get a credential before the run) and GET /profile with { userId, sessionId }.
// The 0-round-trip anchors (@fastify/secure-session, @fastify/jwt) live in bench/anchors/, a package of their own:
// sodium-native is a native addon and the root node_modules must hold none (.ci/run reuses it for Node.js 24).
// bench/run.mjs installs it on demand; their builders load it only when they run.
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import path from 'node:path'
import { createRequire } from 'node:module'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import ConnectRedis from 'connect-redis'
import express from 'express'
import expressSession from 'express-session'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { MemoryStore, sessionPlugin } from '../dist/index.js'

const SECRET = 'a bench secret that is at least thirty-two characters long'
const IDLE_SECONDS = 1800
// A fixed 32-byte key (crypto_secretbox_KEYBYTES): with `secret` instead, secure-session would run a slow key
// derivation at startup, and a fixed key keeps every run the same.
const SECURE_SESSION_KEY = Buffer.from('fastify-distributed-session bench', 'utf8').subarray(0, 32)

/** Loads a package installed in bench/anchors/node_modules (see bench/run.mjs's installAnchors). */
function requireAnchor (name) {
  return createRequire(new URL('./anchors/package.json', import.meta.url))(name)
}

// The same response schema for every Fastify variant, so serialization costs the same everywhere.
const PROFILE_SCHEMA = {
  response: {
    200: {
      type: 'object',
      properties: { userId: { type: 'string' }, sessionId: { type: 'string' } }
    }
  }
}

function unauthorized (reply) {
  reply.code(401)
  return { userId: '', sessionId: '' }
}

function redisClient (url) {
  return new Redis(url, { maxRetriesPerRequest: 1 })
}

async function bare () {
  const app = Fastify()
  app.get('/profile', { schema: PROFILE_SCHEMA }, async () => ({ userId: 'user-1', sessionId: 'constant' }))
  await app.ready()
  return { server: app.server, close: () => app.close() }
}

/** The one-round-trip floor: one plain GET of a JSON value and JSON.parse, nothing else. */
async function floor (url) {
  const redis = redisClient(url)
  const app = Fastify()
  app.post('/login', async (request) => {
    const token = randomBytes(32).toString('base64url')
    const now = Date.now()
    const session = {
      userId: request.body.user,
      createdAt: now,
      lastActivity: now,
      ipAddress: request.ip,
      userAgent: request.headers['user-agent'] ?? '',
      metadata: { plan: 'free' }
    }
    await redis.set(`floor:${token}`, JSON.stringify(session), 'EX', IDLE_SECONDS)
    return { token }
  })
  app.get('/profile', { schema: PROFILE_SCHEMA }, async (request, reply) => {
    const token = request.headers['x-session-id']
    const raw = typeof token === 'string' ? await redis.get(`floor:${token}`) : null
    if (raw === null) return unauthorized(reply)
    const session = JSON.parse(raw)
    return { userId: session.userId, sessionId: token.slice(0, 24) }
  })
  await app.ready()
  return { server: app.server, close: async () => { await app.close(); redis.disconnect() } }
}

/** This package with default options; the plugin's own GET /profile route. */
async function ours (url, useMemoryStore, nearCache = false, lib = { MemoryStore, sessionPlugin }) {
  const redis = useMemoryStore ? null : redisClient(url)
  const app = Fastify()
  await app.register(lib.sessionPlugin, useMemoryStore ? { store: new lib.MemoryStore() } : { redis, nearCache })
  app.post('/login', async (request, reply) => {
    const { token } = await reply.startSession(request.body.user, { metadata: { plan: 'free' } })
    return { token }
  })
  await app.ready()
  // The near cache's hit counters, where this version of the plugin has them (app.sessions.cacheStats()).
  const cacheStats = typeof app.sessions.cacheStats === 'function' ? () => app.sessions.cacheStats() : undefined
  return { server: app.server, cacheStats, close: async () => { await app.close(); redis?.disconnect() } }
}

/**
 * This package registered (memory store) on a route that opts out with `config: { session: false }`, answering the
 * same constant as bare Fastify: what every request pays for the plugin being there (its onRequest hook, which
 * stops at the route's config, and the request decorations), without reading a token or loading a session.
 */
async function oursOptOut () {
  const app = Fastify()
  // routes: false, so that this GET /profile is the app's own.
  await app.register(sessionPlugin, { store: new MemoryStore(), routes: false })
  app.get('/profile', { schema: PROFILE_SCHEMA, config: { session: false } }, async () => ({ userId: 'user-1', sessionId: 'constant' }))
  await app.ready()
  return { server: app.server, close: () => app.close() }
}

/**
 * @fastify/secure-session: the session travels in an encrypted cookie (libsodium secretbox, decrypted and parsed on
 * every request), nothing is stored, so nothing can be revoked. The same cookie parser as the others
 * (@fastify/cookie registered first, so secure-session uses it), `secure: false` because the bench speaks HTTP.
 */
async function secureSessionApp () {
  const fastifySecureSession = requireAnchor('@fastify/secure-session')
  const app = Fastify()
  await app.register(fastifyCookie)
  await app.register(fastifySecureSession, {
    key: SECURE_SESSION_KEY,
    expiry: IDLE_SECONDS,
    cookie: { path: '/', httpOnly: true, secure: false, sameSite: 'lax' }
  })
  app.post('/login', async (request) => {
    request.session.set('userId', request.body.user)
    request.session.set('sessionId', randomBytes(18).toString('base64url'))
    request.session.set('plan', 'free')
    return { ok: true }
  })
  app.get('/profile', { schema: PROFILE_SCHEMA }, async (request, reply) => {
    const userId = request.session.get('userId')
    if (userId === undefined) return unauthorized(reply)
    return { userId, sessionId: request.session.get('sessionId') }
  })
  await app.ready()
  return { server: app.server, close: () => app.close() }
}

/** @fastify/jwt: a bearer token signed with HS256 and verified (signature and expiry) on every request; nothing stored. */
async function jwtApp () {
  const fastifyJwt = requireAnchor('@fastify/jwt')
  const app = Fastify()
  await app.register(fastifyJwt, {
    secret: SECRET,
    sign: { algorithm: 'HS256', expiresIn: `${IDLE_SECONDS}s` },
    verify: { algorithms: ['HS256'] }
  })
  app.post('/login', async (request, reply) => {
    const token = await reply.jwtSign({ sub: request.body.user, sid: randomBytes(18).toString('base64url'), plan: 'free' })
    return { token }
  })
  app.get('/profile', { schema: PROFILE_SCHEMA }, async (request, reply) => {
    let claims
    try {
      claims = await request.jwtVerify()
    } catch {
      return unauthorized(reply)
    }
    return { userId: claims.sub, sessionId: claims.sid }
  })
  await app.ready()
  return { server: app.server, close: () => app.close() }
}

/** @fastify/session + connect-redis 7 on ioredis, defaults except `cookie.secure: false` (it never saves over HTTP otherwise). */
async function fastifySessionApp (url, rolling) {
  const redis = redisClient(url)
  const app = Fastify()
  await app.register(fastifyCookie)
  await app.register(fastifySession, {
    secret: SECRET,
    cookie: { secure: false },
    store: new ConnectRedis({ client: redis }),
    ...(rolling ? {} : { rolling: false })
  })
  app.post('/login', async (request) => {
    request.session.set('userId', request.body.user)
    request.session.set('plan', 'free')
    return { ok: true }
  })
  app.get('/profile', { schema: PROFILE_SCHEMA }, async (request, reply) => {
    const userId = request.session.get('userId')
    if (userId === undefined) return unauthorized(reply)
    return { userId, sessionId: request.session.sessionId }
  })
  await app.ready()
  return { server: app.server, close: async () => { await app.close(); redis.disconnect() } }
}

/** express-session + connect-redis 7 on express 5, defaults (resave and saveUninitialized true, spelled out). */
async function expressSessionApp (url) {
  const redis = redisClient(url)
  const app = express()
  app.set('etag', false)
  app.use(expressSession({
    secret: SECRET,
    resave: true,
    saveUninitialized: true,
    store: new ConnectRedis({ client: redis })
  }))
  app.post('/login', express.json(), (req, res) => {
    req.session.userId = req.body.user
    req.session.plan = 'free'
    res.json({ ok: true })
  })
  app.get('/profile', (req, res) => {
    if (req.session.userId === undefined) return res.status(401).json({ userId: '', sessionId: '' })
    res.json({ userId: req.session.userId, sessionId: req.sessionID })
  })
  const server = http.createServer(app)
  return { server, close: async () => { server.close(); redis.disconnect() } }
}

/**
 * The design this package replaces: seven sequential commands per authenticated request (session, user record,
 * the user's session set for the concurrency check, IP and fingerprint of the session, sliding TTL, audit entry).
 */
async function naive (url) {
  const redis = redisClient(url)
  const app = Fastify()
  app.decorateRequest('requiresSecurityCheck', false)
  app.post('/login', async (request) => {
    const sid = randomBytes(18).toString('base64url')
    const userId = request.body.user
    const now = Date.now()
    await redis.set(`session:${sid}`, JSON.stringify({ userId, createdAt: now, lastActivity: now, metadata: { plan: 'free' } }), 'EX', IDLE_SECONDS)
    await redis.set(`user:${userId}`, JSON.stringify({ id: userId, maxSessions: 5 }))
    await redis.sadd(`user_sessions:${userId}`, sid)
    await redis.hset(`session_meta:${sid}`, 'ip', request.ip, 'fingerprint', request.headers['user-agent'] ?? '')
    return { token: sid }
  })
  app.get('/profile', { schema: PROFILE_SCHEMA }, async (request, reply) => {
    const sid = request.headers['x-session-id']
    if (typeof sid !== 'string') return unauthorized(reply)
    const raw = await redis.get(`session:${sid}`)
    if (raw === null) return unauthorized(reply)
    const session = JSON.parse(raw)
    const user = JSON.parse(await redis.get(`user:${session.userId}`))
    const others = await redis.smembers(`user_sessions:${session.userId}`)
    const ip = await redis.hget(`session_meta:${sid}`, 'ip')
    const fingerprint = await redis.hget(`session_meta:${sid}`, 'fingerprint')
    request.requiresSecurityCheck = others.length > user.maxSessions || ip !== request.ip ||
      fingerprint !== (request.headers['user-agent'] ?? '')
    await redis.expire(`session:${sid}`, IDLE_SECONDS)
    await redis.lpush(`audit:${session.userId}`, JSON.stringify({ type: 'access', sid, ip: request.ip, at: Date.now() }))
    return { userId: session.userId, sessionId: sid }
  })
  await app.ready()
  return { server: app.server, close: async () => { await app.close(); redis.disconnect() } }
}

/**
 * Variant key -> label, how the credential travels (none, `x-session-id` header, cookie, `authorization: Bearer`),
 * whether it talks to Redis, whether it needs bench/anchors installed, and the builder. Order is the order of the tables.
 */
export const VARIANTS = [
  { key: 'bare', label: 'bare Fastify (constant)', auth: 'none', redis: false, build: () => bare() },
  { key: 'floor', label: 'one GET + JSON.parse (floor)', auth: 'header', redis: true, build: (url) => floor(url) },
  { key: 'ours', label: 'this package, Redis', auth: 'header', redis: true, build: (url) => ours(url, false) },
  { key: 'oursMemory', label: 'this package, memory store', auth: 'header', redis: false, build: (url) => ours(url, true) },
  { key: 'oursOptOut', label: 'this package registered, route opts out', auth: 'none', redis: false, build: () => oursOptOut() },
  { key: 'oursNearCache', label: 'this package, Redis + near cache (opt-in)', auth: 'header', redis: true, build: (url) => ours(url, false, true) },
  { key: 'secureSession', label: '@fastify/secure-session (cookie, no store)', auth: 'cookie', redis: false, anchors: true, build: () => secureSessionApp() },
  { key: 'jwt', label: '@fastify/jwt verify (bearer, no store)', auth: 'bearer', redis: false, anchors: true, build: () => jwtApp() },
  { key: 'fastifySession', label: '@fastify/session + connect-redis', auth: 'cookie', redis: true, build: (url) => fastifySessionApp(url, true) },
  { key: 'fastifySessionNoRolling', label: '@fastify/session, rolling: false', auth: 'cookie', redis: true, build: (url) => fastifySessionApp(url, false) },
  { key: 'expressSession', label: 'express-session + connect-redis', auth: 'cookie', redis: true, build: (url) => expressSessionApp(url) },
  { key: 'naive', label: 'naive 7 commands', auth: 'header', redis: true, build: (url) => naive(url) }
]

// BENCH_BASELINE=<another build's dist/index.js>: the same three variants of this package built from that build, in
// the same run (a change measured against the code before it, ratios within each round like every other variant).
const BASELINE = process.env.BENCH_BASELINE
if (BASELINE !== undefined && BASELINE !== '') {
  const baseline = () => import(path.resolve(BASELINE))
  VARIANTS.push(
    { key: 'baseline', label: 'baseline build, Redis', auth: 'header', redis: true, build: async (url) => ours(url, false, false, await baseline()) },
    { key: 'baselineMemory', label: 'baseline build, memory store', auth: 'header', redis: false, build: async (url) => ours(url, true, false, await baseline()) },
    { key: 'baselineNearCache', label: 'baseline build, Redis + near cache', auth: 'header', redis: true, build: async (url) => ours(url, false, true, await baseline()) }
  )
}
