import Fastify from 'fastify'
import { expectError, expectType } from 'tsd'
import sessionPlugin, { type Session, type StartSessionArgs, type StartSessionData } from '..'

// The README's sample: a required metadata field (the same augmentation as index.test-d.ts, merged once).
declare module '..' {
  interface SessionMetadata {
    plan: string
  }
}

const app = Fastify()
const shout = (text: string): string => text.toUpperCase()
app.register(sessionPlugin)

app.post('/login', async (request, reply) => {
  // With a required field declared, a session cannot start without it.
  expectError(reply.startSession('u1'))
  expectError(reply.startSession('u1', {}))
  expectError(reply.startSession('u1', { ttl: '30d' }))
  expectError(reply.startSession('u1', { metadata: {} }))
  expectError(reply.startSession('u1', { metadata: { plan: 42 } }))
  // Given, it compiles; extra keys stay allowed.
  const { session } = await reply.startSession('u1', { metadata: { plan: 'pro' }, ttl: '30d' })
  await reply.startSession('u1', { metadata: { plan: 'pro', theme: 'dark' } })
  expectType<Session>(session)
  expectType<[data: StartSessionData & { metadata: { plan: string } & Record<string, unknown> }]>(null as unknown as StartSessionArgs)
  return session.id
})

app.get('/plan', async (request) => {
  const session = request.session
  if (session === null) return null
  // On read the field is only as present as the store says: `.plan` may be undefined.
  expectType<string | undefined>(session.metadata.plan)
  expectError(shout(session.metadata.plan))
  return session.metadata.plan ?? 'free'
})

app.post('/downgrade', async (request) => {
  const session = request.session
  if (session === null) return null
  // An update is a patch: `null` removes a key, declared ones included; a wrong type is still refused.
  await app.sessions.update(session.id, { metadata: { plan: null } }, { userId: session.userId })
  await app.sessions.update(session.id, { metadata: { plan: 'free', theme: null } }, { userId: session.userId })
  expectError(app.sessions.update(session.id, { metadata: { plan: 42 } }))
  return 'ok'
})
