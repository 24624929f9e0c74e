import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { test, type Test } from 'tap'
import { startRedis } from './helpers/redis'
import { assertDistIsCurrent } from './helpers/dist'

assertDistIsCurrent()

const CHROME_LINUX = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36'
const FIREFOX_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0'
const SAFARI_IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

async function exampleApp (t: Test, redis?: string): Promise<FastifyInstance> {
  const { buildApp } = await import('../examples/app.mjs')
  const app = await buildApp({ redis })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

/** One browser: its own user agent, address and cookie jar. */
class Device {
  cookie = ''

  constructor (readonly app: FastifyInstance, readonly userAgent: string, readonly ip = '127.0.0.1') {}

  async request (method: 'GET' | 'POST', url: string, form?: Record<string, string>): Promise<LightMyRequestResponse> {
    const response = await this.app.inject({
      method,
      url,
      remoteAddress: this.ip,
      headers: {
        'user-agent': this.userAgent,
        'accept-language': 'en-GB,en;q=0.9',
        ...(this.cookie === '' ? {} : { cookie: `session_id=${this.cookie}` }),
        ...(form === undefined ? {} : FORM)
      },
      payload: form === undefined ? undefined : new URLSearchParams(form).toString()
    })
    const cookie = response.cookies.find((c) => c.name === 'session_id')
    if (cookie !== undefined) this.cookie = cookie.value
    return response
  }

  get (url: string): Promise<LightMyRequestResponse> {
    return this.request('GET', url)
  }

  post (url: string, form: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    return this.request('POST', url, form)
  }

  async login (username = 'alice', password = 'wonderland'): Promise<LightMyRequestResponse> {
    return this.post('/login', { username, password })
  }
}

function sessionIds (body: string): string[] {
  return [...body.matchAll(/data-session-id="([A-Za-z0-9_-]{24})"/g)].map((match) => match[1] as string)
}

test('anonymous visitors of the pages are sent to the login page', async (t) => {
  const app = await exampleApp(t)
  const visitor = new Device(app, CHROME_LINUX)
  for (const url of ['/', '/profile', '/devices', '/activity']) {
    const response = await visitor.get(url)
    t.equal(response.statusCode, 303, url)
    t.equal(response.headers.location, '/login', url)
  }
  const post = await visitor.post('/devices/sign-out-others')
  t.equal(post.headers.location, '/login', 'posts too')
  const api = await visitor.get('/api/sessions')
  t.equal(api.statusCode, 401, 'the plugin\'s JSON routes answer 401')
  t.equal(api.json().code, 'FST_SESSION_REQUIRED')
})

test('the login page shows the demo credentials and needs no JavaScript', async (t) => {
  const app = await exampleApp(t)
  const page = await new Device(app, CHROME_LINUX).get('/login')
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], 'text/html')
  t.match(page.body, '<form class="card" method="post" action="/login">')
  t.match(page.body, '<code>alice</code> / <code>wonderland</code>')
  t.match(page.body, '<code>bob</code> / <code>canwefixit</code>')
  t.notMatch(page.body, '<script')
  t.match(page.headers['content-security-policy'], "default-src 'none'")
})

test('the right password signs in with an HttpOnly cookie and shows the profile', async (t) => {
  const app = await exampleApp(t)
  const device = new Device(app, CHROME_LINUX)
  const login = await device.login('  Alice ', 'wonderland')
  t.equal(login.statusCode, 303)
  t.equal(login.headers.location, '/profile')
  const cookie = login.cookies.find((c) => c.name === 'session_id')
  t.equal(cookie?.httpOnly, true)
  t.equal(cookie?.sameSite, 'Lax')
  t.match(cookie?.value, /^[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{43}$/)
  const profile = await device.get('/profile')
  t.equal(profile.statusCode, 200)
  t.match(profile.body, 'Hello, Alice Liddell')
  t.match(profile.body, 'Chrome 130 on Linux')
  t.equal(profile.headers['cache-control'], 'no-store')
  t.equal((await device.get('/login')).headers.location, '/profile', 'the login page sends a signed-in user on')
})

test('a wrong password and an unknown user get the same refusal and no session', async (t) => {
  const app = await exampleApp(t)
  for (const [username, password] of [['alice', 'Wonderland'], ['mallory', 'wonderland'], ['', '']] as const) {
    const device = new Device(app, CHROME_LINUX)
    const response = await device.login(username, password)
    t.equal(response.statusCode, 401, `${username}/${password}`)
    t.match(response.body, 'Wrong user name or password.')
    t.equal(response.cookies.length, 0)
    t.equal((await device.get('/profile')).headers.location, '/login')
  }
  const hostile = await new Device(app, CHROME_LINUX).login('"><script>alert(1)</script>', 'x')
  t.notMatch(hostile.body, '<script>alert(1)</script>')
  t.match(hostile.body, 'value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"', 'the user name is echoed escaped')
})

test('the devices page lists every session with its browser, system, address and "this device"', async (t) => {
  const app = await exampleApp(t)
  const laptop = new Device(app, CHROME_LINUX, '203.0.113.7')
  const phone = new Device(app, SAFARI_IPHONE, '198.51.100.23')
  await laptop.login()
  await phone.login()
  const page = await phone.get('/devices')
  t.equal(page.statusCode, 200)
  t.match(page.body, 'You are signed in on 2 devices.')
  t.match(page.body, 'Chrome 130 on Linux')
  t.match(page.body, 'Safari 17 on iPhone')
  t.match(page.body, 'IP address 203.0.113.7')
  t.match(page.body, 'IP address 198.51.100.23')
  t.match(page.body, /Signed in <time datetime="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d UTC<\/time> · last active just now/)
  const ids = sessionIds(page.body)
  t.equal(ids.length, 2)
  // Most recently active first: the phone, which is this device.
  t.match(page.body, /Safari 17 on iPhone<span class="badge">This device<\/span>/)
  t.equal(page.body.match(/This device/g)?.length, 1)
  t.match(page.body, `action="/devices/${ids[1]}/sign-out"`)
  t.match(page.body, 'Sign out all other devices')
})

test('signing out another device ends that session, and only the user\'s own', async (t) => {
  const app = await exampleApp(t)
  const laptop = new Device(app, CHROME_LINUX, '203.0.113.7')
  const phone = new Device(app, SAFARI_IPHONE, '198.51.100.23')
  const bob = new Device(app, FIREFOX_WINDOWS)
  await laptop.login()
  await phone.login()
  await bob.login('bob', 'canwefixit')
  const [phoneId, laptopId] = sessionIds((await phone.get('/devices')).body)
  const [bobId] = sessionIds((await bob.get('/devices')).body)

  const foreign = await phone.post(`/devices/${bobId}/sign-out`)
  t.equal(foreign.headers.location, '/devices?signed_out=0', 'alice cannot end bob\'s session')
  t.equal((await bob.get('/profile')).statusCode, 200)

  const signOut = await phone.post(`/devices/${laptopId}/sign-out`)
  t.equal(signOut.statusCode, 303)
  t.equal(signOut.headers.location, '/devices?signed_out=1')
  const after = await phone.get('/devices?signed_out=1')
  t.match(after.body, 'Signed out 1 device.')
  t.same(sessionIds(after.body), [phoneId])
  t.notMatch(after.body, 'Sign out all other devices', 'no other device left')
  t.equal((await laptop.get('/devices')).headers.location, '/login?ended=revoked', 'the laptop is signed out at its next click, and told why')
  t.match((await laptop.get('/login?ended=revoked')).body, 'You were signed out from another device.')
  t.equal((await phone.post('/devices/not-a-session-id/sign-out')).statusCode, 400, 'ids are validated')
})

test('"sign out all other devices" keeps only this one; "sign out" ends this one', async (t) => {
  const app = await exampleApp(t)
  const devices = [new Device(app, CHROME_LINUX), new Device(app, FIREFOX_WINDOWS), new Device(app, SAFARI_IPHONE)]
  for (const device of devices) await device.login()
  const [first, second, third] = devices as [Device, Device, Device]
  // Three sign-ins in a row flag the sessions: a flagged session must confirm before it ends the others.
  t.equal((await third.post('/devices/sign-out-others')).headers.location, '/verify')
  t.equal((await third.post('/verify', { password: 'wonderland' })).headers.location, '/profile?verified=1')
  const response = await third.post('/devices/sign-out-others')
  t.equal(response.headers.location, '/devices?signed_out=2')
  t.match((await third.get('/devices?signed_out=2')).body, 'Signed out 2 devices.')
  t.equal((await first.get('/profile')).headers.location, '/login?ended=revoked')
  t.equal((await second.get('/profile')).headers.location, '/login?ended=revoked')

  const logout = await third.post('/logout')
  t.equal(logout.headers.location, '/login?signed_out=1')
  const cleared = logout.cookies.find((c) => c.name === 'session_id')
  t.equal(cleared?.value, '', 'the cookie is cleared')
  t.match((await third.get('/login?signed_out=1')).body, 'You are signed out.')
  t.equal((await third.get('/profile')).headers.location, '/login')
})

test('the activity page shows the account\'s audit log, newest first', async (t) => {
  const app = await exampleApp(t)
  const laptop = new Device(app, CHROME_LINUX, '203.0.113.7')
  const phone = new Device(app, SAFARI_IPHONE, '198.51.100.23')
  await laptop.login()
  await phone.login()
  const [, laptopId] = sessionIds((await phone.get('/devices')).body)
  await phone.post(`/devices/${laptopId}/sign-out`)
  const page = await phone.get('/activity')
  t.equal(page.statusCode, 200)
  t.match(page.body, 'Recent activity')
  const labels = [...page.body.matchAll(/<strong>([^<]+)<\/strong>\s*(?:<span class="badge">This device<\/span>)?\s*<p><time/g)].map((match) => match[1])
  t.same(labels, ['Signed out', 'New device', 'Signed in', 'Signed in'])
  t.match(page.body, 'Why: signed out from the devices page.')
  t.match(page.body, 'From Safari 17 on iPhone, address 198.51.100.23.')
  t.match(page.body, 'Sign-in from a new device. From Safari 17 on iPhone, address 198.51.100.23.')
  t.match(page.body, 'The latest 4 events of your account')
  t.notMatch(page.body, /reason:|rule:|suspicious_session|new_device|signed_out_from/, 'no raw codes')
  t.match(page.body, `session <code>${(laptopId as string).slice(0, 8)}</code>`)
})

test('a hostile user agent is escaped on every page', async (t) => {
  const app = await exampleApp(t)
  const hostileAgent = '<script>alert(1)</script><img src=x onerror="alert(2)"> Firefox/99 \'quoted\' & more'
  const attacker = new Device(app, hostileAgent)
  const victim = new Device(app, CHROME_LINUX)
  await attacker.login()
  await victim.login()
  for (const url of ['/devices', '/activity', '/profile']) {
    const page = await victim.get(url)
    t.equal(page.statusCode, 200, url)
    t.notMatch(page.body, '<script>', url)
    t.notMatch(page.body, '<img', url)
  }
  const devices = await victim.get('/devices')
  t.match(devices.body, '&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt; Firefox/99 &#39;quoted&#39; &amp; more')
  t.match(devices.body, 'Firefox 99 on Unknown system')
  const own = await attacker.get('/profile')
  t.notMatch(own.body, '<script>')
})

test('the banner appears when the plugin flags the request', async (t) => {
  const app = await exampleApp(t)
  const devices = [new Device(app, CHROME_LINUX, '203.0.113.7'), new Device(app, FIREFOX_WINDOWS, '198.51.100.23'), new Device(app, SAFARI_IPHONE, '192.0.2.44')]
  await devices[0]?.login()
  t.notMatch((await devices[0]?.get('/profile'))?.body, 'Please check your account', 'one session: no banner')
  for (const device of devices.slice(1)) await device.login()
  // Three sign-ins within five minutes: each session sees two others created close together (rapid_creation).
  const page = await devices[2]?.get('/devices')
  t.match(page?.body, '<div class="banner" role="alert">')
  t.match(page?.body, 'several sign-ins happened within a few minutes')
  const moved = new Device(app, CHROME_LINUX, '203.0.113.99')
  moved.cookie = devices[0]?.cookie as string
  t.match((await moved.get('/profile')).body, 'this session is now used from another network', 'another IP than at sign-in')
})

test('with a Redis URL, two instances of the demo share their sessions', async (t) => {
  const server = await startRedis(t)
  const first = await exampleApp(t, server.url)
  const second = await exampleApp(t, server.url)
  const laptop = new Device(first, CHROME_LINUX)
  await laptop.login()
  const laptopViaSecond = new Device(second, CHROME_LINUX)
  laptopViaSecond.cookie = laptop.cookie
  t.match((await laptopViaSecond.get('/profile')).body, 'Hello, Alice Liddell', 'a session made on one instance works on the other')

  const phone = new Device(second, SAFARI_IPHONE, '198.51.100.23')
  await phone.login()
  const seenFromFirst = await laptop.get('/devices')
  t.match(seenFromFirst.body, 'You are signed in on 2 devices.')
  const [, laptopId] = sessionIds((await phone.get('/devices')).body)
  t.equal((await phone.post(`/devices/${laptopId}/sign-out`)).headers.location, '/devices?signed_out=1')
  t.equal((await laptop.get('/profile')).headers.location, '/login?ended=revoked', 'signed out on every instance')
})

test('cross-site form posts are refused', async (t) => {
  const app = await exampleApp(t)
  const response = await app.inject({
    method: 'POST',
    url: '/login',
    headers: { ...FORM, origin: 'https://evil.example', host: 'localhost:3000' },
    payload: 'username=alice&password=wonderland'
  })
  t.equal(response.statusCode, 403)
  t.equal(response.cookies.length, 0)
  const sameSite = await app.inject({
    method: 'POST',
    url: '/login',
    headers: { ...FORM, origin: 'http://localhost:3000', host: 'localhost:3000' },
    payload: 'username=alice&password=wonderland'
  })
  t.equal(sameSite.statusCode, 303)
})

test('the user agent parser names common browsers and systems', async (t) => {
  const { parseUserAgent } = await import('../examples/user-agent.mjs')
  const cases: Array<[unknown, string]> = [
    [CHROME_LINUX, 'Chrome 130 on Linux'],
    [FIREFOX_WINDOWS, 'Firefox 128 on Windows'],
    [SAFARI_IPHONE, 'Safari 17 on iPhone'],
    ['Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15', 'Safari 17 on macOS'],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.2849.68', 'Edge 130 on Windows'],
    ['Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36', 'Chrome 130 on Android 14'],
    ['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36', 'Headless Chrome 131 on Linux'],
    ['Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36', 'Chrome 130 on ChromeOS'],
    ['Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/130.0 Mobile/15E148 Safari/604.1', 'Chrome 130 on iPad'],
    ['curl/8.5.0', 'curl 8 on Unknown system'],
    ['', 'Unknown device'],
    [undefined, 'Unknown device'],
    ['something else', 'Unknown browser on Unknown system']
  ]
  for (const [userAgent, label] of cases) t.equal(parseUserAgent(userAgent).label, label, String(userAgent))
})

test('escapeHtml escapes the five HTML metacharacters', async (t) => {
  const { escapeHtml } = await import('../examples/views.mjs')
  t.equal(escapeHtml('<a href="x" title=\'y\'>&</a>'), '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;')
  t.equal(escapeHtml(42), '42')
})

test('step-up: /verify with the password clears the banner, which stays away; a wrong password does not', async (t) => {
  const app = await exampleApp(t)
  const laptop = new Device(app, CHROME_LINUX, '203.0.113.7')
  await laptop.login()
  const moved = new Device(app, CHROME_LINUX, '198.51.100.23')
  moved.cookie = laptop.cookie
  t.match((await moved.get('/profile')).body, '<div class="banner" role="alert">')
  t.match((await moved.get('/profile')).body, '<a href="/verify">Confirm it is you</a>')
  const wrong = await moved.post('/verify', { password: 'nope' })
  t.equal(wrong.statusCode, 401)
  t.match(wrong.body, 'Wrong password.')
  t.match((await moved.get('/profile')).body, '<div class="banner"')
  t.equal((await moved.post('/verify', { password: 'wonderland' })).headers.location, '/profile?verified=1')
  const after = await moved.get('/profile?verified=1')
  t.match(after.body, 'Thank you: this device is confirmed.')
  for (const url of ['/profile', '/devices', '/activity']) t.notMatch((await moved.get(url)).body, '<div class="banner"', url)
  t.match((await moved.get('/activity')).body, 'Confirmed it was you')
})

test('the login page says why the session ended: signed out elsewhere, or expired', async (t) => {
  const { buildApp } = await import('../examples/app.mjs')
  const clock = { now: Date.now() }
  const app = await buildApp({ session: { now: () => clock.now, idleTimeout: '30m' } })
  t.teardown(() => app.close())
  const laptop = new Device(app, CHROME_LINUX)
  await laptop.login()
  clock.now += 31 * 60_000
  const expired = await laptop.get('/profile')
  t.equal(expired.headers.location, '/login?ended=expired')
  t.match((await laptop.get('/login?ended=expired')).body, 'Your session expired. Please sign in again.')
  t.match((await laptop.get('/login?ended=__proto__')).body, 'Sign in', 'an unknown reason shows no notice')
  t.notMatch((await laptop.get('/login?ended=__proto__')).body, 'class="notice"')
})

test('devices: a new-device notice, a name for a device, and "This wasn\'t me"', async (t) => {
  const app = await exampleApp(t)
  const laptop = new Device(app, CHROME_LINUX, '203.0.113.7')
  const phone = new Device(app, SAFARI_IPHONE, '198.51.100.23')
  t.equal((await laptop.login()).headers.location, '/profile', 'the first device is not news')
  t.equal((await phone.login()).headers.location, '/devices?new_device=1')
  t.match((await phone.get('/devices?new_device=1')).body, 'You signed in from a new device.')
  const page = (await laptop.get('/devices')).body
  t.match(page, 'New sign-in from Safari 17 on iPhone, a device your account had not used before.')
  t.match(page, '<span class="badge new">New device</span>')
  const laptopSession = /Session id<\/dt><dd><code>([A-Za-z0-9_-]{24})<\/code>/.exec((await laptop.get('/profile')).body)?.[1] as string
  const phoneOnly = sessionIds(page).find((id) => id !== laptopSession) as string
  t.ok(laptopSession && phoneOnly)
  t.equal((await laptop.post(`/devices/${laptopSession}/rename`, { name: 'Work laptop & "more"' })).headers.location, '/devices?renamed=1')
  const renamed = (await laptop.get('/devices?renamed=1')).body
  t.match(renamed, 'Device name saved.')
  t.match(renamed, 'Work laptop &amp; &quot;more&quot;</h2>'.replace('</h2>', ''), 'escaped on the page')
  t.match((await laptop.get('/api/sessions')).json().sessions.find((s: { id: string }) => s.id === laptopSession), { name: 'Work laptop & "more"' })
  const markup = await laptop.post(`/devices/${laptopSession}/rename`, { name: '<b>bold</b>' })
  t.equal(markup.statusCode, 400, 'markup is refused')
  t.match(markup.body, 'name must be null or 1 to 64 characters of plain text')
  await laptop.post(`/devices/${laptopSession}/rename`, { name: '' })
  t.notMatch((await laptop.get('/devices')).body, 'Work laptop')

  t.equal((await laptop.post(`/devices/${laptopSession}/not-me`)).headers.location, '/devices', 'not for this device')
  const roaming = new Device(app, CHROME_LINUX, '192.0.2.99')
  roaming.cookie = laptop.cookie
  t.equal((await roaming.post(`/devices/${phoneOnly}/sign-out`)).headers.location, '/verify', 'a flagged session confirms first')
  t.equal((await roaming.post(`/devices/${phoneOnly}/not-me`)).headers.location, '/verify')
  t.equal((await phone.get('/profile')).statusCode, 200, 'nothing was ended')
  t.equal((await laptop.post(`/devices/${phoneOnly}/not-me`)).headers.location, '/devices?reported=1')
  t.match((await laptop.get('/devices?reported=1')).body, 'That device is signed out. Please change your password.')
  t.equal((await phone.get('/profile')).headers.location, '/login?ended=unrecognized')
  t.match((await laptop.get('/activity')).body, 'Reported as not you and signed out')
})

test('the profile shows the idle and the absolute deadline, and the activity page counts in words', async (t) => {
  const app = await exampleApp(t)
  const laptop = new Device(app, CHROME_LINUX)
  await laptop.login()
  const page = (await laptop.get('/profile')).body
  t.match(page, /If you stay idle<\/dt><dd>signed out at <time[^>]*>[^<]+<\/time>, after 30 minutes without activity/)
  t.match(page, /In any case<\/dt><dd>signed out at <time[^>]*>[^<]+<\/time>, 24 hours after signing in/)
  t.match((await laptop.get('/devices')).body, 'You are signed in on 1 device.')
  t.match((await laptop.get('/activity')).body, 'The latest event of your account')
})

test('an unknown page is an HTML 404; an unknown API path stays JSON', async (t) => {
  const app = await exampleApp(t)
  const visitor = new Device(app, CHROME_LINUX)
  const page = await visitor.get('/nowhere')
  t.equal(page.statusCode, 404)
  t.match(page.headers['content-type'], 'text/html')
  t.match(page.body, '<h1>Page not found</h1>')
  const api = await visitor.get('/api/nowhere')
  t.equal(api.statusCode, 404)
  t.match(api.headers['content-type'], 'application/json')
})

test('the demo server says clearly when its port is taken, and exits with 1', async (t) => {
  const { createServer } = await import('node:net')
  const { spawn } = await import('node:child_process')
  const path = await import('node:path')
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => blocker.close())
  const port = (blocker.address() as { port: number }).port
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'examples', 'server.mjs')], { env: { ...process.env, PORT: String(port), HOST: '127.0.0.1' } })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  t.equal(code, 1)
  t.match(stderr, `Port ${port} on 127.0.0.1 is already in use (another demo still running?). Stop that program, or pick another port: PORT=${port + 1} npm start`)
  t.notMatch(stderr, 'EADDRINUSE', 'no stack trace')
})
