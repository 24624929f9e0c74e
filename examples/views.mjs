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
header { background: #1d2430; color: #fff; padding: .75rem 1.5rem; display: flex; flex-wrap: wrap; gap: .5rem 1.25rem; align-items: center; }
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
code { font-size: .85rem; overflow-wrap: anywhere; }
.ua { font-size: .75rem; color: #718096; overflow-wrap: anywhere; }
.actions { display: flex; flex-direction: column; gap: .4rem; align-items: stretch; }
.actions form { margin: 0; }
.rename { display: flex; gap: .4rem; margin-top: .4rem; }
.rename input { width: auto; flex: 1; min-width: 0; }
.new { background: #fde8e8; color: #9b1c1c; }
@media (max-width: 40rem) {
  header { padding: .6rem 1rem; }
  header .who { margin-left: 0; flex-basis: 100%; font-size: .9rem; }
  main { margin: 1rem auto; }
  .device { flex-direction: column; align-items: stretch; }
  dl { grid-template-columns: 1fr; }
  dd { margin-bottom: .4rem; }
}
`

/** What the login page says when the browser's session has just ended (request.sessionEnded.reason). */
const ENDED_NOTICES = {
  expired: 'Your session expired. Please sign in again.',
  signed_out: 'You are signed out.',
  revoked: 'You were signed out from another device.',
  evicted: 'You were signed out because your account signed in on too many devices.',
  rotated: 'Your session was renewed elsewhere. Please sign in again.',
  reauth_required: 'For your security, please sign in again.',
  unrecognized: 'This session was reported as not yours and has been ended.'
}

export function endedNotice (reason) {
  return typeof reason === 'string' && Object.hasOwn(ENDED_NOTICES, reason) ? ENDED_NOTICES[reason] : null
}

function plural (count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`
}

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
      <a href="/verify">Confirm it is you</a> to clear this message. If you do not recognise a device,
      <a href="/devices">report it</a> and change your password.
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

function minutes (ms) {
  const count = Math.round(ms / 60_000)
  return count >= 120 && count % 60 === 0 ? plural(count / 60, 'hour') : plural(count, 'minute')
}

export function verifyPage ({ user, securityCheck, error = null }) {
  return layout({
    title: 'Confirm it is you',
    user,
    securityCheck,
    body: html`
    ${error === null ? '' : html`<p class="error" role="alert">${error}</p>`}
    <form class="card" method="post" action="/verify">
      <p>Enter your password again. This confirms this device and clears the warning.</p>
      <label for="password">Password</label>
      <input id="password" name="password" type="password" autocomplete="current-password" required>
      <p><button class="primary" type="submit">Confirm</button></p>
    </form>`
  })
}

export function profilePage ({ user, session, securityCheck, verified = false, idleTimeoutMs, absoluteTimeoutMs, touchIntervalMs }) {
  const idleDeadline = new Date(session.lastActivity.getTime() + idleTimeoutMs)
  const absoluteDeadline = new Date(session.createdAt.getTime() + absoluteTimeoutMs)
  return layout({
    title: `Hello, ${user.name}`,
    user,
    securityCheck,
    body: html`
    ${verified ? html`<p class="notice" role="status">Thank you: this device is confirmed.</p>` : ''}
    <div class="card">
      <dl>
        <dt>User id</dt><dd><code>${session.userId}</code></dd>
        <dt>Session id</dt><dd><code>${session.id}</code> (public: it is not the token)</dd>
        <dt>Signed in</dt><dd>${timestamp(session.createdAt)}</dd>
        <dt>Last confirmed</dt><dd>${timestamp(session.authenticatedAt)}</dd>
        <dt>If you stay idle</dt><dd>signed out at ${timestamp(idleDeadline)}, after ${minutes(idleTimeoutMs)} without activity (activity is recorded at most every ${minutes(Math.max(touchIntervalMs, 60_000))})</dd>
        <dt>In any case</dt><dd>signed out at ${timestamp(absoluteDeadline)}, ${minutes(absoluteTimeoutMs)} after signing in</dd>
        <dt>Device</dt><dd>${session.name === null ? '' : html`${session.name} · `}${parseUserAgent(session.userAgent).label} · ${session.ipAddress}</dd>
      </dl>
    </div>
    <p>See <a href="/devices">where you are signed in</a> and <a href="/activity">your recent activity</a>.</p>`
  })
}

export function devicesPage ({ user, sessions, currentSessionId, signedOut, securityCheck, now, newDeviceIds = new Set(), isNewDevice = false, reported = false, renamed = false }) {
  const others = sessions.filter((session) => session.id !== currentSessionId).length
  let message = null
  if (signedOut !== null) message = signedOut === 0 ? 'That device was already signed out.' : `Signed out ${plural(signedOut, 'device')}.`
  else if (reported) message = 'Thank you. That device is signed out. Please change your password.'
  else if (renamed) message = 'Device name saved.'
  else if (isNewDevice) message = 'You signed in from a new device. We would e-mail you about it in a real app.'
  const notice = message === null ? '' : html`<p class="notice" role="status">${message}</p>`
  const newOthers = sessions.filter((session) => session.id !== currentSessionId && newDeviceIds.has(session.id))
  const newNotice = newOthers.length === 0
    ? ''
    : html`<p class="banner" role="alert">New sign-in from ${newOthers.map((session) => parseUserAgent(session.userAgent).label).join(', ')}, a device your account had not used before. If it was not you, press "This wasn't me".</p>`
  const cards = sessions.map((session) => {
    const device = parseUserAgent(session.userAgent)
    const isCurrent = session.id === currentSessionId
    return html`
    <div class="card device" data-session-id="${session.id}">
      <div>
        <h2>${session.name ?? device.label}${isCurrent ? html`<span class="badge">This device</span>` : ''}${newDeviceIds.has(session.id) ? html`<span class="badge new">New device</span>` : ''}</h2>
        ${session.name === null ? '' : html`<p>${device.label}</p>`}
        <p>IP address ${session.ipAddress || 'unknown'}</p>
        <p>Signed in ${timestamp(session.createdAt)} · last active ${ago(session.lastActivity, now)}</p>
        <p class="ua">${session.userAgent === '' ? 'No user agent' : session.userAgent}</p>
        <form class="rename" method="post" action="/devices/${session.id}/rename">
          <input name="name" maxlength="64" aria-label="Name of this device" placeholder="Name this device" value="${session.name ?? ''}">
          <button type="submit">Save name</button>
        </form>
      </div>
      <div class="actions">
        <form method="post" action="/devices/${session.id}/sign-out">
          <button class="danger" type="submit">${isCurrent ? 'Sign out' : 'Sign out this device'}</button>
        </form>
        ${isCurrent
          ? ''
          : html`<form method="post" action="/devices/${session.id}/not-me"><button class="danger" type="submit">This wasn't me</button></form>`}
      </div>
    </div>`
  })
  return layout({
    title: 'Your devices',
    user,
    securityCheck,
    body: html`
    ${notice}${newNotice}
    <p>You are signed in on ${plural(sessions.length, 'device')}.</p>
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
  updated: 'Device details changed',
  activity: 'Activity',
  corrupt: 'Damaged session removed',
  security: 'Security alert',
  confirmed: 'Confirmed it was you',
  unrecognized: 'Reported as not you and signed out'
}

/** Why a session was ended, in words (the `reason` an `invalidated` event carries). */
const SIGN_OUT_REASONS = {
  logout: 'you signed out',
  new_login: 'you signed in again on the same browser',
  revoked: 'signed out from another device',
  revoke_others: 'signed out from another device',
  signed_out_from_devices_page: 'signed out from the devices page',
  signed_out_other_devices: 'signed out from the devices page ("all other devices")',
  login_timed_out: 'the sign-in did not complete',
  invalidate_all: 'all devices were signed out',
  timeout: 'no activity for too long',
  limit: 'the account signed in on too many devices'
}

/** Security events, in words (their `rule`). */
const SECURITY_RULES = {
  suspicious_session: 'Unusual activity on a device',
  session_limit_eviction: 'A device was signed out to make room for a new sign-in',
  force_reauthentication: 'All devices were signed out for your security',
  new_device: 'Sign-in from a new device'
}

const FIELD_NAMES = { metadata: 'saved data', ipAddress: 'network address', userAgent: 'browser', deviceFingerprint: 'device details', name: 'name' }

const SECURITY_REASONS_SHORT = {
  distinct_ips: 'many different networks',
  distinct_user_agents: 'many different browsers',
  rapid_creation: 'several sign-ins within a few minutes',
  ip_changed: 'a new network',
  fingerprint_mismatch: 'a different-looking browser'
}

function from (data) {
  const parts = []
  if (typeof data.userAgent === 'string' && data.userAgent !== '') parts.push(parseUserAgent(data.userAgent).label)
  if (typeof data.ip === 'string' && data.ip !== '') parts.push(`address ${data.ip}`)
  return parts.length === 0 ? '' : `From ${parts.join(', ')}.`
}

/** One sentence (or two) about an audit event: no raw codes. */
function eventDetails (event) {
  const data = event.data
  const reason = typeof data.reason === 'string' ? data.reason : ''
  switch (event.type) {
    case 'created': return from(data)
    case 'invalidated':
    case 'expired':
    case 'evicted':
    case 'all_user_sessions_invalidated': {
      const head = reason.split(':')[0]
      if (head === 'force_reauthentication') return 'All devices were signed out for your security.'
      const words = Object.hasOwn(SIGN_OUT_REASONS, head) ? SIGN_OUT_REASONS[head] : null
      return words === null ? '' : `Why: ${words}.`
    }
    case 'updated': {
      const fields = Array.isArray(data.fields) ? data.fields.filter((field) => Object.hasOwn(FIELD_NAMES, field)).map((field) => FIELD_NAMES[field]) : []
      return fields.length === 0 ? '' : `Changed: ${fields.join(', ')}.`
    }
    case 'confirmed': return `With your ${data.method === 'password' ? 'password' : 'second factor'}${typeof data.ip === 'string' && data.ip !== '' ? `, from address ${data.ip}` : ''}.`
    case 'security': {
      const rule = typeof data.rule === 'string' && Object.hasOwn(SECURITY_RULES, data.rule) ? SECURITY_RULES[data.rule] : 'Security alert'
      const reasons = Array.isArray(data.reasons) ? data.reasons.filter((r) => Object.hasOwn(SECURITY_REASONS_SHORT, r)).map((r) => SECURITY_REASONS_SHORT[r]) : []
      return `${rule}${reasons.length === 0 ? '.' : `: ${reasons.join(', ')}.`} ${from(data)}`.trim()
    }
    case 'activity': return from(data)
    default: return ''
  }
}

function eventLabel (event) {
  if (event.type === 'security' && event.data.rule === 'new_device') return 'New device'
  return EVENT_LABELS[event.type] ?? 'Account event'
}

export function activityPage ({ user, events, currentSessionId, securityCheck }) {
  const rows = events.map((event) => html`
    <div class="card event">
      <strong>${eventLabel(event)}</strong>
      ${event.sessionId === currentSessionId ? html`<span class="badge">This device</span>` : ''}
      <p>${timestamp(event.timestamp)}${event.sessionId === '' ? '' : html` · session <code>${event.sessionId.slice(0, 8)}</code>`}</p>
      <p>${eventDetails(event)}</p>
    </div>`)
  return layout({
    title: 'Recent activity',
    user,
    securityCheck,
    body: html`
    <p>${events.length === 0 ? 'Nothing has happened on your account yet.' : events.length === 1 ? 'The latest event of your account, from the session audit log.' : `The latest ${events.length} events of your account, newest first, from the session audit log.`}</p>
    ${rows}`
  })
}

export function errorPage ({ statusCode, message }) {
  return layout({
    title: statusCode >= 500 ? 'Something went wrong' : statusCode === 404 ? 'Page not found' : 'Request refused',
    body: html`<p class="error">${message}</p><p><a href="/">Back to the start page</a></p>`
  })
}
