import fs from 'node:fs'
import path from 'node:path'
import type { AddressInfo } from 'node:net'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { test } from 'tap'
import { assertDistIsCurrent } from './helpers/dist'

const root = path.join(__dirname, '..')
const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
const SCREENSHOT = path.join(root, 'docs', 'devices.png')
// Two different user agents, so the devices page (and its screenshot) shows two recognisable devices.
const LAPTOP_AGENT = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.2849.68'
const DESKTOP_AGENT = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36'
const ACTION_TIMEOUT_MS = 10_000

async function signIn (page: Page, baseUrl: string): Promise<void> {
  await page.goto(`${baseUrl}/login`)
  await page.getByLabel('User name').fill('alice')
  await page.getByLabel('Password').fill('wonderland')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForURL(`${baseUrl}/profile`)
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

  await signIn(desktopPage, baseUrl)
  await desktopPage.getByRole('link', { name: 'Your devices' }).click()
  await desktopPage.waitForURL(`${baseUrl}/devices`)
  const cards = desktopPage.locator('.device')
  t.equal(await cards.count(), 2, 'the second browser sees two devices')
  t.equal(await desktopPage.locator('.device', { has: desktopPage.locator('.badge') }).locator('h2').textContent(), 'Chrome 130 on macOSThis device')
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
  await laptopPage.waitForURL(`${baseUrl}/login`)
  t.equal(await laptopPage.getByRole('heading', { level: 1 }).textContent(), 'Sign in')
  t.equal(await sessionCookie(laptop), undefined)

  // Signing out works without JavaScript too.
  await desktopPage.getByRole('button', { name: 'Sign out', exact: true }).first().click()
  await desktopPage.waitForURL(`${baseUrl}/login?signed_out=1`)
  t.equal(await desktopPage.getByRole('status').textContent(), 'You are signed out.')
  t.equal(await sessionCookie(desktop), undefined)
  await desktopPage.goto(`${baseUrl}/devices`)
  t.equal(desktopPage.url(), `${baseUrl}/login`)
})
