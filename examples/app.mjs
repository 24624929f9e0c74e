// The demo app: a login page, a profile, "your devices" (each session, with sign-out, rename and "this wasn't me"
// buttons), a /verify step-up page and the account's audit log, all server-rendered HTML that works without JavaScript. `node examples/server.mjs` runs it;
// the tests build it with `buildApp()` and call it with `app.inject()` or a real browser.
import Fastify from 'fastify'
import sessionPlugin, { requireSession } from 'fastify-distributed-session'
import { createUserDirectory, DEMO_USERS } from './users.mjs'
import * as views from './views.mjs'

/** The plugin's default cookie name; the logout route clears it. */
const FORM_BODY_LIMIT = 8 * 1024
const MAX_FIELD_LENGTH = 256
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin'
}

function field (body, name) {
  const value = body !== null && typeof body === 'object' ? body[name] : undefined
  return typeof value === 'string' ? value.slice(0, MAX_FIELD_LENGTH) : ''
}

/** Same-origin check for form posts: the SameSite=Lax cookie already keeps cross-site posts anonymous. */
function isCrossSite (request) {
  const origin = request.headers.origin
  if (origin === undefined) return false
  try {
    return new URL(origin).host !== request.headers.host
  } catch {
    return true
  }
}

/**
 * Builds the app without listening.
 * - `redis`: a redis:// URL (or an ioredis client); without it the plugin uses its embedded memory store.
 * - `session`: more options for the session plugin; `fastify`: options for Fastify itself.
 */
export async function buildApp ({ redis, logger = false, session = {}, fastify = {} } = {}) {
  const app = Fastify({ logger, ...fastify })
  const users = await createUserDirectory()
  // Why the plugin flagged a request, kept for the banner; the plugin itself only sets request.requiresSecurityCheck.
  const flaggedReasons = new WeakMap()

  await app.register(sessionPlugin, {
    redis,
    // The plugin's JSON routes (GET /api/sessions, DELETE /api/sessions/:id, ...) live under /api, the pages at /.
    routes: { prefix: '/api' },
    ...session,
    security: {
      onSuspicious: (request, report) => { flaggedReasons.set(request, report.reasons) },
      ...session.security
    }
  })

  // HTML forms post application/x-www-form-urlencoded; URLSearchParams parses it, no extra dependency needed.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT },
    (request, body, done) => { done(null, Object.fromEntries(new URLSearchParams(body))) })

  app.addHook('onRequest', async (request, reply) => {
    reply.headers(SECURITY_HEADERS)
    if (request.method === 'POST' && isCrossSite(request)) {
      reply.code(403).type('text/html; charset=utf-8').send(views.errorPage({ statusCode: 403, message: 'Cross-site form posts are refused.' }))
      return reply
    }
  })

  app.setErrorHandler((error, request, reply) => {
    // The plugin's JSON routes keep their JSON errors (FST_SESSION_* codes).
    if (request.url.startsWith('/api/')) return reply.send(error)
    const statusCode = error.statusCode >= 400 ? error.statusCode : 500
    if (statusCode >= 500) request.log.error({ err: error }, 'request failed')
    return reply.code(statusCode).type('text/html; charset=utf-8')
      .send(views.errorPage({ statusCode, message: statusCode >= 500 ? 'Please try again in a moment.' : error.message }))
  })

  /**
   * preValidation of the pages: the plugin's requireSession, except that anonymous visitors go to the login page
   * instead of getting a 401 (told why when the browser's session has just ended: the plugin clears the dead cookie
   * in this very response). Any other refusal (500 FST_SESSION_NOT_REGISTERED if these pages ever moved to a context
   * without the plugin) is kept: a page is never served without a session.
   */
  async function requireLogin (request, reply) {
    const refusal = await new Promise((resolve) => { requireSession(request, reply, resolve) })
    if (refusal?.code === 'FST_SESSION_REQUIRED') {
      const ended = request.sessionEnded
      return reply.redirect(ended === null ? '/login' : `/login?ended=${ended.reason}`, 303)
    }
    if (refusal != null) throw refusal
    reply.header('cache-control', 'no-store')
  }

  /** Pages that end other sessions need a confirmed session: a flagged one is sent to /verify first. */
  async function requireConfirmed (request, reply) {
    if (request.requiresSecurityCheck) return reply.redirect('/verify', 303)
  }

  const NAME_PATTERN = { type: 'object', properties: { id: { type: 'string', pattern: '^[A-Za-z0-9_-]{24}$' } } }

  function pageContext (request) {
    const session = request.session
    return {
      user: users.find(session.userId) ?? { id: session.userId, name: session.metadata.name ?? session.userId },
      securityCheck: request.requiresSecurityCheck ? { reasons: flaggedReasons.get(request) ?? [] } : null
    }
  }

  async function signOut (request, reply) {
    await reply.endSession('logout') // ends it server-side and clears the cookie
    return reply.redirect('/login?signed_out=1', 303)
  }

  function sendPage (reply, page, statusCode = 200) {
    return reply.code(statusCode).type('text/html; charset=utf-8').send(page)
  }

  app.get('/style.css', async (request, reply) => {
    return reply.type('text/css; charset=utf-8').header('cache-control', 'public, max-age=3600').send(views.STYLESHEET)
  })

  app.get('/', async (request, reply) => reply.redirect(request.session === null ? '/login' : '/profile', 303))

  app.get('/login', async (request, reply) => {
    if (request.session !== null) return reply.redirect('/profile', 303)
    const ended = request.sessionEnded?.reason ?? request.query.ended
    const notice = request.query.signed_out === '1' ? 'You are signed out.' : views.endedNotice(ended)
    return sendPage(reply, views.loginPage({ notice, users: DEMO_USERS }))
  })

  app.post('/login', async (request, reply) => {
    const username = field(request.body, 'username').trim().toLowerCase()
    const user = await users.verify(username, field(request.body, 'password'))
    if (user === null) {
      request.log.info({ username }, 'failed login')
      return sendPage(reply, views.loginPage({ username, error: 'Wrong user name or password.', users: DEMO_USERS }), 401)
    }
    // Ends the session this browser had (no session fixation), creates a new one and sets the HttpOnly cookie.
    const { newDevice } = await reply.startSession(user.id, { metadata: { name: user.name } })
    // A real app would e-mail the user here (app.sessions emits 'newDevice' with what the message needs).
    return reply.redirect(newDevice ? '/devices?new_device=1' : '/profile', 303)
  })

  // Step-up: the banner sends the user here; the password again confirms the session and clears the banner.
  app.get('/verify', { preValidation: requireLogin }, async (request, reply) => {
    return sendPage(reply, views.verifyPage({ ...pageContext(request) }))
  })

  app.post('/verify', { preValidation: requireLogin }, async (request, reply) => {
    const user = await users.verify(request.session.userId, field(request.body, 'password'))
    if (user === null) {
      return sendPage(reply, views.verifyPage({ ...pageContext(request), error: 'Wrong password.' }), 401)
    }
    await reply.confirmSession({ method: 'password' })
    return reply.redirect('/profile?verified=1', 303)
  })

  app.post('/logout', signOut)

  app.get('/profile', { preValidation: requireLogin }, async (request, reply) => {
    return sendPage(reply, views.profilePage({
      ...pageContext(request),
      session: request.session,
      verified: request.query.verified === '1',
      idleTimeoutMs: app.sessions.idleTimeoutMs,
      absoluteTimeoutMs: app.sessions.absoluteTimeoutMs,
      touchIntervalMs: app.sessions.touchIntervalMs
    }))
  })

  app.get('/devices', { preValidation: requireLogin }, async (request, reply) => {
    const sessions = await app.sessions.list(request.session.userId)
    const signedOut = /^\d{1,4}$/.test(request.query.signed_out ?? '') ? Number(request.query.signed_out) : null
    // Sessions that signed in from a device the account had not used: the audit log's 'new_device' events.
    const events = await app.sessions.auditLog(request.session.userId, { limit: 50 })
    const newDeviceIds = new Set(events.filter((event) => event.type === 'security' && event.data.rule === 'new_device').map((event) => event.sessionId))
    return sendPage(reply, views.devicesPage({
      ...pageContext(request),
      sessions,
      currentSessionId: request.session.id,
      signedOut,
      newDeviceIds,
      isNewDevice: request.query.new_device === '1',
      reported: request.query.reported === '1',
      renamed: request.query.renamed === '1',
      now: Date.now()
    }))
  })

  // Forms cannot send DELETE: the "sign out" buttons post here.
  app.post('/devices/:id/sign-out', {
    preValidation: requireLogin,
    schema: { params: NAME_PATTERN }
  }, async (request, reply) => {
    if (request.params.id === request.session.id) return signOut(request, reply)
    if (request.requiresSecurityCheck) return reply.redirect('/verify', 303)
    // With userId, the session is only ended when it belongs to this user: ids from the form are not trusted.
    const isSignedOut = await app.sessions.invalidate(request.params.id, { userId: request.session.userId, reason: 'signed_out_from_devices_page' })
    return reply.redirect(`/devices?signed_out=${isSignedOut ? 1 : 0}`, 303)
  })

  app.post('/devices/:id/rename', { preValidation: requireLogin, schema: { params: NAME_PATTERN } }, async (request, reply) => {
    const name = field(request.body, 'name').trim()
    await app.sessions.rename(request.params.id, { userId: request.session.userId, name: name === '' ? null : name.slice(0, 64) })
    return reply.redirect('/devices?renamed=1', 303)
  })

  // "This wasn't me": ends that session as unrecognized (its browser is told so), and sends the user to change the password.
  app.post('/devices/:id/not-me', { preValidation: [requireLogin, requireConfirmed], schema: { params: NAME_PATTERN } }, async (request, reply) => {
    if (request.params.id === request.session.id) return reply.redirect('/devices', 303)
    await app.sessions.reportUnrecognized(request.params.id, { userId: request.session.userId })
    return reply.redirect('/devices?reported=1', 303)
  })

  app.post('/devices/sign-out-others', { preValidation: [requireLogin, requireConfirmed] }, async (request, reply) => {
    const count = await app.sessions.invalidateAll(request.session.userId, { except: request.session.id, reason: 'signed_out_other_devices' })
    return reply.redirect(`/devices?signed_out=${count}`, 303)
  })

  app.get('/activity', { preValidation: requireLogin }, async (request, reply) => {
    const events = await app.sessions.auditLog(request.session.userId, { limit: 50 })
    return sendPage(reply, views.activityPage({ ...pageContext(request), events, currentSessionId: request.session.id }))
  })

  app.setNotFoundHandler((request, reply) => {
    if (request.url.startsWith('/api/')) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: 'Not found' })
    return sendPage(reply, views.errorPage({ statusCode: 404, message: 'There is no page at this address.' }), 404)
  })

  return app
}
