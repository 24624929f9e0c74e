// Server-rendered pages. Every value goes through the `html` tag, which escapes it unless it is already HTML built
// by the tag: a user agent, a user name or an audit detail can never inject markup.
import { parseUserAgent } from './user-agent.mjs'

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml (value) {
  return String(value).replace(/[&<>"']/g, (character) => ESCAPES[character])
}

class SafeHtml {
  constructor (value) {
    this.value = value
  }

  toString () {
    return this.value
  }
}

function render (value) {
  if (value instanceof SafeHtml) return value.value
  if (Array.isArray(value)) return value.map(render).join('')
  if (value === null || value === undefined || value === false) return ''
  return escapeHtml(value)
}

/** Tagged template: `html\`<p>${userInput}</p>\`` escapes `userInput`; nested `html` results are kept as they are. */
export function html (strings, ...values) {
  let out = strings[0]
  for (let n = 0; n < values.length; n++) out += render(values[n]) + strings[n + 1]
  return new SafeHtml(out)
}

export const STYLESHEET = `
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f4f6f9; }
header { background: #1d2430; color: #fff; padding: .75rem 1.5rem; display: flex; gap: 1.25rem; align-items: center; }
header a { color: #fff; text-decoration: none; }
header .who { margin-left: auto; opacity: .8; }
header form { margin: 0; }
main { max-width: 46rem; margin: 1.5rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 1rem; }
.card { background: #fff; border: 1px solid #d9dee7; border-radius: 8px; padding: 1rem 1.25rem; margin-bottom: .75rem; }
.device { display: flex; justify-content: space-between; align-items: center; gap: 1rem; }
.device h2 { font-size: 1.05rem; margin: 0; }
.device p, .event p { margin: .15rem 0; color: #4a5568; font-size: .9rem; }
.badge { display: inline-block; background: #def7e5; color: #14632d; border-radius: 999px; padding: 0 .6rem; font-size: .8rem; margin-left: .4rem; vertical-align: middle; }
.banner { background: #fff4d6; border: 1px solid #e8b931; border-radius: 8px; padding: .75rem 1rem; margin-bottom: 1rem; }
.notice { background: #e3efff; border: 1px solid #8db4f0; border-radius: 8px; padding: .5rem 1rem; margin-bottom: 1rem; }
.error { background: #fde8e8; border: 1px solid #e59999; border-radius: 8px; padding: .5rem 1rem; margin-bottom: 1rem; }
button { white-space: nowrap; font: inherit; border: 1px solid #b3bccb; background: #fff; border-radius: 6px; padding: .3rem .9rem; cursor: pointer; }
button.primary { background: #2158d1; border-color: #2158d1; color: #fff; }
button.danger { border-color: #c53030; color: #c53030; }
header button { background: transparent; color: #fff; border-color: #6b7585; }
label { display: block; margin: .5rem 0 .2rem; }
input { font: inherit; padding: .35rem .5rem; width: 100%; box-sizing: border-box; border: 1px solid #b3bccb; border-radius: 6px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0; }
dt { color: #4a5568; }
dd { margin: 0; }
code { font-size: .85rem; }
.ua { font-size: .75rem; color: #718096; overflow-wrap: anywhere; }
`

const SECURITY_REASONS = {
  distinct_ips: 'your account is signed in from many different networks',
  distinct_user_agents: 'your account is signed in from many different browsers',
  rapid_creation: 'several sign-ins happened within a few minutes',
  ip_changed: 'this session is now used from another network than the one it signed in from',
  fingerprint_mismatch: 'this session is now used from a browser that does not look like the one that signed in'
}

function timestamp (date) {
  const iso = date.toISOString()
  return html`<time datetime="${iso}">${iso.slice(0, 16).replace('T', ' ')} UTC</time>`
}

function ago (date, now) {
  const seconds = Math.max(0, Math.round((now - date.getTime()) / 1000))
  if (seconds < 60) return 'just now'
  const minutes = Math.round(seconds / 60)
  if (minutes < 60) return `${minutes} min ago`
  const hours = Math.round(minutes / 60)
  return hours < 48 ? `${hours} h ago` : `${Math.round(hours / 24)} days ago`
}

/**
 * The page around `body`. `user` is null on the login page; `securityCheck` is `{ reasons }` when the request was
 * flagged by the plugin (request.requiresSecurityCheck).
 */
export function layout ({ title, user = null, securityCheck = null, body }) {
  const nav = user === null
    ? ''
    : html`
      <a href="/profile">Profile</a>
      <a href="/devices">Your devices</a>
      <a href="/activity">Activity</a>
      <span class="who">Signed in as ${user.name}</span>
      <form method="post" action="/logout"><button type="submit">Sign out</button></form>`
  const banner = securityCheck === null
    ? ''
    : html`
    <div class="banner" role="alert">
      <strong>Please check your account.</strong>
      ${securityCheck.reasons.length === 0 ? 'We noticed unusual activity.' : html`We noticed that ${securityCheck.reasons.map((reason) => SECURITY_REASONS[reason] ?? reason).join('; ')}.`}
      If you do not recognise a device, <a href="/devices">sign it out</a> and change your password.
    </div>`
  return html`<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>${title} · Session demo</title>
  <link rel="stylesheet" href="/style.css">
</head>
<body>
  <header><strong>Session demo</strong>${nav}</header>
  <main>${banner}
    <h1>${title}</h1>
    ${body}
  </main>
</body>
</html>
`.value
}

export function loginPage ({ username = '', error = null, notice = null, users }) {
  return layout({
    title: 'Sign in',
    body: html`
    ${notice === null ? '' : html`<p class="notice" role="status">${notice}</p>`}
    ${error === null ? '' : html`<p class="error" role="alert">${error}</p>`}
    <form class="card" method="post" action="/login">
      <label for="username">User name</label>
      <input id="username" name="username" autocomplete="username" required value="${username}">
      <label for="password">Password</label>
      <input id="password" name="password" type="password" autocomplete="current-password" required>
      <p><button class="primary" type="submit">Sign in</button></p>
    </form>
    <div class="card">
      <p>Demo accounts (never show real credentials like this):</p>
      <ul>${users.map((user) => html`<li><code>${user.id}</code> / <code>${user.password}</code></li>`)}</ul>
    </div>`
  })
}

export function profilePage ({ user, session, securityCheck }) {
  return layout({
    title: `Hello, ${user.name}`,
    user,
    securityCheck,
    body: html`
    <div class="card">
      <dl>
        <dt>User id</dt><dd><code>${session.userId}</code></dd>
        <dt>Session id</dt><dd><code>${session.id}</code> (public: it is not the token)</dd>
        <dt>Signed in</dt><dd>${timestamp(session.createdAt)}</dd>
        <dt>Session ends</dt><dd>${timestamp(session.expiresAt)} at the latest</dd>
        <dt>Device</dt><dd>${parseUserAgent(session.userAgent).label} · ${session.ipAddress}</dd>
      </dl>
    </div>
    <p>See <a href="/devices">where you are signed in</a> and <a href="/activity">your recent activity</a>.</p>`
  })
}

export function devicesPage ({ user, sessions, currentSessionId, signedOut, securityCheck, now }) {
  const others = sessions.filter((session) => session.id !== currentSessionId).length
  const notice = signedOut === null
    ? ''
    : html`<p class="notice" role="status">${signedOut === 0 ? 'That device was already signed out.' : `Signed out ${signedOut} device${signedOut === 1 ? '' : 's'}.`}</p>`
  const cards = sessions.map((session) => {
    const device = parseUserAgent(session.userAgent)
    const isCurrent = session.id === currentSessionId
    return html`
    <div class="card device" data-session-id="${session.id}">
      <div>
        <h2>${device.label}${isCurrent ? html`<span class="badge">This device</span>` : ''}</h2>
        <p>IP address ${session.ipAddress || 'unknown'}</p>
        <p>Signed in ${timestamp(session.createdAt)} · last active ${ago(session.lastActivity, now)}</p>
        <p class="ua">${session.userAgent === '' ? 'No user agent' : session.userAgent}</p>
      </div>
      <form method="post" action="/devices/${session.id}/sign-out">
        <button class="danger" type="submit">${isCurrent ? 'Sign out' : 'Sign out this device'}</button>
      </form>
    </div>`
  })
  return layout({
    title: 'Your devices',
    user,
    securityCheck,
    body: html`
    ${notice}
    <p>You are signed in on ${sessions.length} device${sessions.length === 1 ? '' : 's'}.</p>
    ${cards}
    ${others === 0
      ? ''
      : html`<form method="post" action="/devices/sign-out-others"><button class="danger" type="submit">Sign out all other devices</button></form>`}`
  })
}

const EVENT_LABELS = {
  created: 'Signed in',
  invalidated: 'Signed out',
  evicted: 'Signed out: too many devices',
  expired: 'Session expired',
  all_user_sessions_invalidated: 'Signed out of several devices',
  rotated: 'Session token renewed',
  updated: 'Session updated',
  activity: 'Activity',
  corrupt: 'Damaged session removed',
  security: 'Security alert'
}

function eventDetails (event) {
  const details = []
  for (const [key, value] of Object.entries(event.data)) {
    if (key === 'userAgent') details.push(`device: ${parseUserAgent(value).label}`)
    else if (Array.isArray(value)) details.push(`${key}: ${value.join(', ')}`)
    else details.push(`${key}: ${typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value)}`)
  }
  return details.join(' · ')
}

export function activityPage ({ user, events, currentSessionId, securityCheck }) {
  const rows = events.map((event) => html`
    <div class="card event">
      <strong>${EVENT_LABELS[event.type] ?? event.type}</strong>
      ${event.sessionId === currentSessionId ? html`<span class="badge">This device</span>` : ''}
      <p>${timestamp(event.timestamp)}${event.sessionId === '' ? '' : html` · session <code>${event.sessionId.slice(0, 8)}</code>`}</p>
      <p>${eventDetails(event)}</p>
    </div>`)
  return layout({
    title: 'Recent activity',
    user,
    securityCheck,
    body: html`
    <p>The latest ${events.length} events of your account, newest first, from the session audit log.</p>
    ${rows}`
  })
}

export function errorPage ({ statusCode, message }) {
  return layout({
    title: statusCode >= 500 ? 'Something went wrong' : 'Request refused',
    body: html`<p class="error">${message}</p><p><a href="/">Back to the start page</a></p>`
  })
}
