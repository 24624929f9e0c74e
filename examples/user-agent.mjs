// A deliberately small user-agent parser: enough to label a device as "Firefox 128 on Windows" on the devices page.
// It only ever produces labels from the fixed names below plus digits, whatever the header says, so its output is
// safe to log; the raw header is still escaped wherever it is shown.

// Order matters: Edge, Opera and Samsung Internet also say "Chrome", Chrome also says "Safari".
const BROWSERS = [
  ['Edge', /\bEdg(?:e|A|iOS)?\/(\d+)/],
  ['Opera', /\bOPR\/(\d+)/],
  ['Samsung Internet', /\bSamsungBrowser\/(\d+)/],
  ['Firefox', /\b(?:Firefox|FxiOS)\/(\d+)/],
  ['Chromium', /\bChromium\/(\d+)/],
  ['Headless Chrome', /\bHeadlessChrome\/(\d+)/],
  ['Chrome', /\b(?:Chrome|CriOS)\/(\d+)/],
  ['curl', /^curl\/(\d+)/]
]

function browserOf (userAgent) {
  for (const [name, pattern] of BROWSERS) {
    const match = pattern.exec(userAgent)
    if (match !== null) return `${name} ${match[1]}`
  }
  if (/\bSafari\//.test(userAgent)) {
    const version = /\bVersion\/(\d+)/.exec(userAgent)
    return version === null ? 'Safari' : `Safari ${version[1]}`
  }
  return 'Unknown browser'
}

function osOf (userAgent) {
  if (/\b(?:iPhone|iPod)\b/.test(userAgent)) return 'iPhone'
  if (/\biPad\b/.test(userAgent)) return 'iPad'
  const android = /\bAndroid (\d+)/.exec(userAgent)
  if (android !== null) return `Android ${android[1]}`
  if (/\bCrOS\b/.test(userAgent)) return 'ChromeOS'
  if (/\bWindows NT 10\.0\b/.test(userAgent)) return 'Windows' // 10 and 11 send the same token
  if (/\bWindows\b/.test(userAgent)) return 'Windows (old version)'
  if (/\bMac OS X\b|\bMacintosh\b/.test(userAgent)) return 'macOS'
  if (/\bLinux\b/.test(userAgent)) return 'Linux'
  return 'Unknown system'
}

/** `{ browser, os, label }` of a User-Agent header, e.g. `{ browser: 'Chrome 130', os: 'Linux', label: 'Chrome 130 on Linux' }`. */
export function parseUserAgent (userAgent) {
  if (typeof userAgent !== 'string' || userAgent.trim() === '') {
    return { browser: 'Unknown browser', os: 'Unknown system', label: 'Unknown device' }
  }
  const browser = browserOf(userAgent)
  const os = osOf(userAgent)
  return { browser, os, label: `${browser} on ${os}` }
}
