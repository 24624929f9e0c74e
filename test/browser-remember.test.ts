import fs from 'node:fs'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { chromium } from 'playwright-core'
import { test } from 'tap'
import sessionPlugin, { getSession, requireSession } from '../lib/index'
import { startRedis } from './helpers/redis'

const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
const DAY_S = 24 * 3600

test('in Chromium: "remember me" keeps a 30-day cookie and a session that outlives a day without requests; without it the cookie is a browser-session cookie', async (t) => {
  if (!fs.existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: the browser test needs Chromium. Install it with \`apt-get update && apt-get install -y chromium\` (Debian; .ci/run does it)`)
    return
  }
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const clock = { offsetMs: 0 }
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sessionPlugin, { redis: client, cleanup: false, now: () => Date.now() + clock.offsetMs })
  app.get<{ Querystring: { remember?: string } }>('/sign-in', async (request, reply) => {
    await reply.startSession('alice', request.query.remember === '1' ? { ttl: '30d', idleTimeout: '7d' } : { persistent: false })
    return reply.redirect('/me', 303)
  })
  app.get('/me', { preHandler: requireSession }, async (request) => ({ userId: getSession(request).userId }))
  app.get('/sign-out', async (request, reply) => {
    await reply.endSession()
    return { signedOut: true }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 })
  t.teardown(() => browser.close())

  const remembered = await browser.newContext()
  const page = await remembered.newPage()
  await page.goto(`${baseUrl}/sign-in?remember=1`)
  t.equal(await page.textContent('body'), '{"userId":"alice"}')
  const cookie = (await remembered.cookies()).find((c) => c.name === 'session_id')
  const lifetimeS = (cookie?.expires ?? 0) - Date.now() / 1000
  t.ok(lifetimeS > 30 * DAY_S - 60 && lifetimeS <= 30 * DAY_S, `the browser keeps the cookie for 30 days (${Math.round(lifetimeS)} s)`)
  clock.offsetMs = DAY_S * 1000
  await page.goto(`${baseUrl}/me`)
  t.equal(await page.textContent('body'), '{"userId":"alice"}', 'still signed in after a day without requests')
  await page.goto(`${baseUrl}/sign-out`)
  t.same((await remembered.cookies()).filter((c) => c.name === 'session_id'), [], 'signing out removes the cookie from the browser')

  clock.offsetMs = 0
  const forgetful = await browser.newContext()
  const other = await forgetful.newPage()
  await other.goto(`${baseUrl}/sign-in`)
  t.equal(await other.textContent('body'), '{"userId":"alice"}')
  t.equal((await forgetful.cookies()).find((c) => c.name === 'session_id')?.expires, -1, 'a browser-session cookie: no expiry')
})
