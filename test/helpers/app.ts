import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import type { Test } from 'tap'
import sessionPlugin, { type SessionPluginOptions } from '../../lib/index'
import { startRedis } from './redis'

/**
 * The README example app: /login starts a session, /orders needs one, /public does not.
 * `cleanup: false` unless a test asks for it, so no timer runs.
 */
export async function buildApp (t: Test, options: SessionPluginOptions = {}, fastifyOptions: Record<string, unknown> = {}): Promise<FastifyInstance> {
  const app = Fastify({ trustProxy: true, ...fastifyOptions })
  await app.register(sessionPlugin, { cleanup: false, ...options })
  app.post<{ Body: { user: string, plan?: string } }>('/login', async (request, reply) => {
    const { token, session } = await reply.startSession(request.body.user, { metadata: { plan: request.body.plan ?? 'free' } })
    return { token, sessionId: session.id }
  })
  app.get('/orders', { preHandler: app.requireSession }, async (request) => {
    return { userId: request.session?.userId, check: request.requiresSecurityCheck, metadata: request.session?.metadata }
  })
  app.get('/public', async (request) => ({ anonymous: request.session === null }))
  t.teardown(() => app.close())
  await app.ready()
  return app
}

export const BROWSER = {
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36',
  'accept-language': 'en-GB,en;q=0.9',
  'accept-encoding': 'gzip, deflate, br'
}

export async function login (app: FastifyInstance, user: string, headers: Record<string, string> = BROWSER): Promise<{ token: string, sessionId: string, cookie: string, response: LightMyRequestResponse }> {
  const response = await app.inject({ method: 'POST', url: '/login', payload: { user }, headers })
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  const body = response.json() as { token: string, sessionId: string }
  const cookie = response.cookies.find((c) => c.name.endsWith('session_id'))
  return { ...body, cookie: cookie?.value ?? '', response }
}

/**
 * A Fastify app (trustProxy) with the plugin on a real redis-server of its own and a hand-driven clock (`clock.now`);
 * the routes are the caller's, added before `app.ready()`.
 */
export async function clockedApp (t: Test, options: SessionPluginOptions = {}, start = Date.UTC(2026, 0, 1)): Promise<{ app: FastifyInstance, clock: { now: number } }> {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const clock = { now: start }
  const app = Fastify({ trustProxy: true })
  t.teardown(() => app.close())
  await app.register(sessionPlugin, { redis: client, cleanup: false, now: () => clock.now, ...options })
  return { app, clock }
}

/** What GET /scribble answers: the metadata its session had, before the handler changed it in place. */
export const UNSCRIBBLED = { theme: 'dark', plan: 'pro', added: null }

/**
 * POST /login starts a session of 'carol' with nested metadata; GET /scribble answers what its session's metadata
 * held and then changes it in place (nested, top level, a new key): the change must stay with that request.
 */
export function addScribbleRoutes (app: FastifyInstance): void {
  app.post('/login', async (_request, reply) => await reply.startSession('carol', { metadata: { prefs: { theme: 'dark' }, plan: 'pro' } }))
  app.get('/scribble', { preHandler: app.requireSession }, async (request) => {
    const metadata = request.session?.metadata as { prefs: { theme: string }, plan: string, added?: string }
    const seen = { theme: metadata.prefs.theme, plan: metadata.plan, added: metadata.added ?? null }
    metadata.prefs.theme = 'scribbled'
    metadata.plan = 'scribbled'
    metadata.added = 'scribbled'
    return seen
  })
}
