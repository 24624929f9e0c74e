/**
 * The user agent is the largest field of a session record, and most of its text is the same few phrases in every
 * browser's header ("Mozilla/5.0 (", ") AppleWebKit/537.36 (KHTML, like Gecko) Chrome/", " Safari/537.36", ...).
 * The Redis store writes each phrase of PHRASES as a tab and one letter (`\tA`: three bytes in the record's JSON)
 * and gives the text back unchanged when it reads the record: a desktop Chrome user agent of 97 to 117 bytes takes
 * 17 or 18, which keeps a typical record in jemalloc's 256-byte class instead of its 320-byte one (docs/design.md).
 *
 * Why a tab: the manager removes every control character from a user agent before it is stored (core/manager.ts,
 * clip), so no stored text, from this build or an older one, holds a tab of its own: a record written before packing
 * reads back unchanged, and nothing needs escaping. The record stays ASCII: a character outside it would make Node
 * decode the reply and parse the JSON on their slower two-byte paths on every request (`node bench/user-agent-parse.mjs`).
 *
 * Rules that keep stored records readable by every build:
 * - PHRASES is append-only. A record outlives a deploy (and a rollback), so a phrase's letter never changes
 *   meaning: a new phrase takes the next free letter of LETTERS, at the end (test/user-agent.test.ts pins the list).
 * - A letter no entry names (a phrase appended by a newer build) is given back as it is, tab included.
 * - The scripts compare user agents (the distinct-user-agent rule) on the unpacked text (`luaUnpackTable` below), so
 *   a plain record written by an older build counts as the same device as a packed one.
 */
const PHRASES: readonly string[] = [
  'Mozilla/5.0 (',
  ') AppleWebKit/537.36 (KHTML, like Gecko) Chrome/',
  ' Safari/537.36',
  ' Mobile Safari/537.36',
  'AppleWebKit/537.36 (KHTML, like Gecko)',
  ') AppleWebKit/605.1.15 (KHTML, like Gecko)',
  'Windows NT 10.0; Win64; x64',
  'Macintosh; Intel Mac OS X 10_15_7',
  'Macintosh; Intel Mac OS X 10.15',
  'X11; Linux x86_64',
  'X11; Ubuntu; Linux x86_64',
  'Linux; Android ',
  'iPhone; CPU iPhone OS ',
  'iPad; CPU OS ',
  ' like Mac OS X',
  '.0.0.0',
  ') Gecko/20100101 Firefox/',
  '; rv:',
  ' Version/',
  ' Mobile/15E148 Safari/604.1',
  ' Safari/605.1.15',
  ' Safari/604.1',
  ' Edg/',
  ' OPR/',
  ' SamsungBrowser/',
  ' CriOS/',
  ' FxiOS/',
  ' Mobile/15E148'
]

/** The letter of the n-th phrase; 62 in all. */
const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const MARK = '\t'
const PACKED = /\t([A-Za-z0-9])/g

/** Each phrase's code, by phrase. */
const CODES = new Map(PHRASES.map((phrase, index) => [phrase, MARK + LETTERS.charAt(index)]))
/**
 * Every phrase, longest first: at each position the first alternative that matches wins, so a phrase is never split
 * by a shorter one inside it. One pass, left to right: a code once written is never scanned again (a second pass
 * could read a code's letter as the start of a phrase, 'M' + 'ozilla/5.0 (' for example).
 */
const PHRASE_PATTERN = new RegExp(
  [...PHRASES].sort((a, b) => b.length - a.length).map((phrase) => phrase.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g')

/**
 * The text of a user agent as the Redis store writes it into a record. A tab cannot come from the manager (it removes
 * control characters); one that a direct caller of the store passes is dropped, as the manager would.
 */
export function packUserAgent (userAgent: string): string {
  const text = userAgent.includes(MARK) ? userAgent.replaceAll(MARK, '') : userAgent
  return text.replace(PHRASE_PATTERN, (phrase) => CODES.get(phrase) ?? phrase)
}

function expand (code: string, letter: string): string {
  return PHRASES[LETTERS.indexOf(letter)] ?? code
}

/**
 * The user agent a record's `g` holds. Records written before packing come back as they are. The last texts unpacked
 * are remembered: the request path parses the same few user agents over and over.
 */
export function unpackUserAgent (stored: string): string {
  if (!stored.includes(MARK)) return stored
  const known = unpacked.get(stored)
  if (known !== undefined) return known
  const text = stored.replace(PACKED, expand)
  if (unpacked.size >= UNPACKED_ENTRIES) unpacked.delete(unpacked.keys().next().value as string)
  unpacked.set(stored, text)
  return text
}

const UNPACKED_ENTRIES = 1024
const unpacked = new Map<string, string>()

/** The Lua side: a table from each phrase's letter to its text, for `string.gsub` in the scripts (scripts.ts, uaKey). */
export function luaUnpackTable (): string {
  const entries = PHRASES.map((phrase, index) => `['${LETTERS.charAt(index)}'] = ${luaString(phrase)}`)
  return `{ ${entries.join(', ')} }`
}

/** A Lua string literal of ASCII text (quote and backslash escaped). */
function luaString (text: string): string {
  return `'${text.replace(/[\\']/g, (c) => '\\' + c)}'`
}

/** The phrases, in letter order (for tests and docs). */
export const USER_AGENT_PHRASES = PHRASES
