import fs from 'node:fs'
import path from 'node:path'
import type { AddressInfo } from 'node:net'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { test, type Test } from 'tap'
import { assertDistIsCurrent } from './helpers/dist'

const root = path.join(__dirname, '..')
const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
const SCREENSHOT = path.join(root, 'docs', 'devices.png')
const ACTIVITY_SCREENSHOT = path.join(root, 'docs', 'activity.png')
const PHONE_SCREENSHOT = path.join(root, 'docs', 'devices-phone.png')
const PHONE_AGENT = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
// Two different user agents, so the devices page (and its screenshot) shows two recognisable devices.
const LAPTOP_AGENT = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.2849.68'
const DESKTOP_AGENT = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36'
const ACTION_TIMEOUT_MS = 10_000

async function signIn (page: Page, baseUrl: string, landing = '/profile'): Promise<void> {
  await page.goto(`${baseUrl}/login`)
  await page.getByLabel('User name').fill('alice')
  await page.getByLabel('Password').fill('wonderland')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForURL(`${baseUrl}${landing}`)
}

/** How wide the page is against the window (an expression string: the tests are compiled without the DOM library). */
async function overflow (page: Page): Promise<{ scrollWidth: number, innerWidth: number }> {
  return await page.evaluate('({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth })') as { scrollWidth: number, innerWidth: number }
}

function hasChromium (t: Test): boolean {
  if (fs.existsSync(CHROMIUM)) return true
  t.fail(`${CHROMIUM} is missing: the browser test needs Chromium. Install it with \`apt-get update && apt-get install -y chromium\` (Debian; .ci/run does it)`)
  return false
}

async function startDemo (t: Test): Promise<string> {
  assertDistIsCurrent()
  const { buildApp } = await import('../examples/app.mjs')
  const app = await buildApp()
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

async function sessionCookie (context: BrowserContext): Promise<{ httpOnly: boolean, sameSite: string } | undefined> {
  return (await context.cookies()).find((cookie) => cookie.name === 'session_id')
}

test('two browsers of one user: the second sees both devices and signs the first out', async (t) => {
  if (!fs.existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: the browser test needs Chromium. Install it with \`apt-get update && apt-get install -y chromium\` (Debian; .ci/run does it)`)
    return
  }
  assertDistIsCurrent()
  const { buildApp } = await import('../examples/app.mjs')
  const app = await buildApp()
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 })
  t.teardown(() => browser.close())
  // The laptop runs JavaScript; the desktop has it turned off: the pages must work either way.
  const laptop = await browser.newContext({ userAgent: LAPTOP_AGENT, viewport: { width: 960, height: 720 } })
  const desktop = await browser.newContext({ userAgent: DESKTOP_AGENT, viewport: { width: 960, height: 560 }, javaScriptEnabled: false })
  laptop.setDefaultTimeout(ACTION_TIMEOUT_MS)
  desktop.setDefaultTimeout(ACTION_TIMEOUT_MS)
  const laptopPage = await laptop.newPage()
  const desktopPage = await desktop.newPage()

  await signIn(laptopPage, baseUrl)
  t.equal(await laptopPage.getByRole('heading', { level: 1 }).textContent(), 'Hello, Alice Liddell')
  const cookie = await sessionCookie(laptop)
  t.equal(cookie?.httpOnly, true, 'the session cookie is HttpOnly')
  t.equal(cookie?.sameSite, 'Lax')
  // An expression string: the tests are compiled without the DOM library.
  const visibleToScripts = await laptopPage.evaluate('document.cookie') as string
  t.notMatch(visibleToScripts, 'session_id', 'page scripts cannot read the session cookie')

  // Another browser family than the laptop's: a new device, so the sign-in lands on the devices page.
  await signIn(desktopPage, baseUrl, '/devices?new_device=1')
  await desktopPage.getByRole('link', { name: 'Your devices' }).click()
  await desktopPage.waitForURL(`${baseUrl}/devices`)
  const cards = desktopPage.locator('.device')
  t.equal(await cards.count(), 2, 'the second browser sees two devices')
  t.equal(await desktopPage.locator('.device', { has: desktopPage.locator('.badge') }).locator('h2').textContent(), 'Chrome 130 on macOSThis deviceNew device')
  const laptopCard = desktopPage.locator('.device', { hasNot: desktopPage.locator('.badge') })
  t.equal(await laptopCard.locator('h2').textContent(), 'Edge 130 on Windows')
  t.match(await laptopCard.textContent(), 'IP address 127.0.0.1')

  if (process.env.UPDATE_SCREENSHOT === '1' || !fs.existsSync(SCREENSHOT)) {
    await desktopPage.screenshot({ path: SCREENSHOT, fullPage: true })
    t.comment(`wrote ${path.relative(root, SCREENSHOT)}`)
  }

  await laptopCard.getByRole('button', { name: 'Sign out this device' }).click()
  await desktopPage.waitForURL(`${baseUrl}/devices?signed_out=1`)
  t.equal(await desktopPage.getByRole('status').textContent(), 'Signed out 1 device.')
  t.equal(await cards.count(), 1)

  // The laptop's next click lands on the login page, and the dead cookie is cleared.
  await laptopPage.getByRole('link', { name: 'Your devices' }).click()
  await laptopPage.waitForURL(`${baseUrl}/login?ended=revoked`)
  t.equal(await laptopPage.getByRole('heading', { level: 1 }).textContent(), 'Sign in')
  t.equal(await laptopPage.getByRole('status').textContent(), 'You were signed out from another device.')
  t.equal(await sessionCookie(laptop), undefined)

  // Signing out works without JavaScript too.
  await desktopPage.getByRole('button', { name: 'Sign out', exact: true }).first().click()
  await desktopPage.waitForURL(`${baseUrl}/login?signed_out=1`)
  t.equal(await desktopPage.getByRole('status').textContent(), 'You are signed out.')
  t.equal(await sessionCookie(desktop), undefined)
  await desktopPage.goto(`${baseUrl}/devices`)
  t.equal(desktopPage.url(), `${baseUrl}/login`)
})

test('step-up in a browser: three sign-ins raise the banner, /verify clears it for good', async (t) => {
  if (!hasChromium(t)) return
  const baseUrl = await startDemo(t)
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 })
  t.teardown(() => browser.close())
  const pages: Page[] = []
  for (const [userAgent, landing] of [[LAPTOP_AGENT, '/profile'], [DESKTOP_AGENT, '/devices?new_device=1'], [PHONE_AGENT, '/devices?new_device=1']] as const) {
    const context = await browser.newContext({ userAgent, viewport: { width: 960, height: 720 } })
    context.setDefaultTimeout(ACTION_TIMEOUT_MS)
    const page = await context.newPage()
    await signIn(page, baseUrl, landing)
    pages.push(page)
  }
  const phone = pages[2] as Page
  t.equal(await phone.getByRole('status').textContent(), 'You signed in from a new device. We would e-mail you about it in a real app.')
  const banner = phone.locator('div.banner[role="alert"]')
  t.match(await banner.textContent(), 'Please check your account.')
  await banner.getByRole('link', { name: 'Confirm it is you' }).click()
  await phone.waitForURL(`${baseUrl}/verify`)
  await phone.getByLabel('Password').fill('wonderland')
  await phone.getByRole('button', { name: 'Confirm' }).click()
  await phone.waitForURL(`${baseUrl}/profile?verified=1`)
  t.equal(await phone.getByRole('status').textContent(), 'Thank you: this device is confirmed.')
  for (const url of ['/profile', '/devices', '/activity']) {
    await phone.goto(`${baseUrl}${url}`)
    t.equal(await phone.locator('div.banner').count(), 0, `no banner on ${url}`)
  }
  if (process.env.UPDATE_SCREENSHOT === '1' || !fs.existsSync(ACTIVITY_SCREENSHOT)) {
    await phone.goto(`${baseUrl}/activity`)
    await phone.screenshot({ path: ACTIVITY_SCREENSHOT, fullPage: true })
    t.comment(`wrote ${path.relative(root, ACTIVITY_SCREENSHOT)}`)
  }
})

test('on a 375 px wide phone no page scrolls sideways and the header stays usable', async (t) => {
  if (!hasChromium(t)) return
  const baseUrl = await startDemo(t)
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 })
  t.teardown(() => browser.close())
  const laptop = await browser.newContext({ userAgent: LAPTOP_AGENT })
  const phone = await browser.newContext({ userAgent: PHONE_AGENT, viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 })
  phone.setDefaultTimeout(ACTION_TIMEOUT_MS)
  laptop.setDefaultTimeout(ACTION_TIMEOUT_MS)
  const phonePage = await phone.newPage()
  for (const url of ['/login', '/nowhere']) {
    await phonePage.goto(`${baseUrl}${url}`)
    const { scrollWidth, innerWidth } = await overflow(phonePage)
    // A mobile browser widens its layout viewport to fit a page too wide for the screen: innerWidth must stay 375.
    t.equal(innerWidth, 375, `${url}: not zoomed out`)
    t.ok(scrollWidth <= innerWidth, `${url}: scrollWidth ${scrollWidth} <= innerWidth ${innerWidth}`)
  }
  t.equal(await phonePage.getByRole('heading', { level: 1 }).textContent(), 'Page not found', 'an HTML 404 page')
  await signIn(await laptop.newPage(), baseUrl)
  await signIn(phonePage, baseUrl, '/devices?new_device=1')
  for (const url of ['/profile', '/devices', '/devices?new_device=1', '/activity', '/verify', '/nowhere']) {
    await phonePage.goto(`${baseUrl}${url}`)
    const { scrollWidth, innerWidth } = await overflow(phonePage)
    t.equal(innerWidth, 375)
    t.ok(scrollWidth <= innerWidth, `${url}: scrollWidth ${scrollWidth} <= innerWidth ${innerWidth}`)
  }
  await phonePage.goto(`${baseUrl}/devices`)
  const signOut = phonePage.locator('header').getByRole('button', { name: 'Sign out' })
  const box = await signOut.boundingBox()
  t.ok(box !== null && box.x >= 0 && box.x + box.width <= 375, 'the header\'s sign-out button is on screen')
  if (process.env.UPDATE_SCREENSHOT === '1' || !fs.existsSync(PHONE_SCREENSHOT)) {
    await phonePage.screenshot({ path: PHONE_SCREENSHOT, fullPage: true })
    t.comment(`wrote ${path.relative(root, PHONE_SCREENSHOT)}`)
  }
  await signOut.click()
  await phonePage.waitForURL(`${baseUrl}/login?signed_out=1`)
})
