// What reading a session record costs Node with its user agent plain, packed as the store writes it (a tab and a
// letter per phrase, store/redis/user-agent.ts), and packed into non-ASCII characters (the rejected first design).
// Each parse decodes the reply from a Buffer, as ioredis does, then JSON.parse and, for the packed forms, unpacks.
//   node bench/user-agent-parse.mjs [dist directory, default ./dist]     (after `npm run build`)
// Rounds interleave the three forms; medians and minimums of ns per parse.
import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'

const dist = resolve(process.argv[2] ?? 'dist')
const { packUserAgent, unpackUserAgent, USER_AGENT_PHRASES } = await import(pathToFileURL(resolve(dist, 'store/redis/user-agent.js')).href)
const ROUNDS = 21
const PARSES = 500_000

const ua = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36'
const record = (g) => Buffer.from(JSON.stringify({
  a: 1796623122653,
  c: 1796536722653,
  u: 'user-0',
  g,
  f: 'v1.Ymj9PFYN._bybPu91.56RvB1Wx.....',
  i: '203.0.113.7',
  h: '0neiqyvLtTd6x1aFhmgOYR8U6YQf5QMGlI2xg4D4e4A',
  m: { plan: '"free"' },
  l: 1796536722653
}))
// The non-ASCII form: phrase n as U+0101 + n.
const wide = (text) => USER_AGENT_PHRASES.map((p, n) => [p, String.fromCharCode(0x101 + n)])
  .sort((a, b) => b[0].length - a[0].length).reduce((t, [p, c]) => t.replaceAll(p, c), text)
const widePhrases = new Map(USER_AGENT_PHRASES.map((p, n) => [String.fromCharCode(0x101 + n), p]))
const unwide = (text) => text.replace(/[\u0101-\u01ff]/g, (c) => widePhrases.get(c) ?? c)

const forms = {
  plain: { buffer: record(ua), read: (g) => g },
  'packed (tab + letter)': { buffer: record(packUserAgent(ua)), read: unpackUserAgent },
  'packed (U+0101..)': { buffer: record(wide(ua)), read: unwide }
}
const times = Object.fromEntries(Object.keys(forms).map((name) => [name, []]))
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, { buffer, read }] of Object.entries(forms)) {
    let length = 0
    const start = process.hrtime.bigint()
    for (let n = 0; n < PARSES; n++) length += read(JSON.parse(buffer.toString('utf8')).g).length
    times[name].push(Number(process.hrtime.bigint() - start) / PARSES)
    if (length !== PARSES * ua.length) throw new Error(`${name} did not read the user agent back`)
  }
}
const median = (values) => values.slice().sort((a, b) => a - b)[values.length >> 1]
console.log(`${ROUNDS} rounds of ${PARSES} parses; record bytes, ns per parse (median, min)`)
for (const [name, { buffer }] of Object.entries(forms)) {
  console.log(`  ${name.padEnd(22)} ${String(buffer.length).padStart(4)} B  ${median(times[name]).toFixed(0).padStart(5)} ns  ${Math.min(...times[name]).toFixed(0).padStart(5)} ns`)
}
