// docs/benchmarks.md and docs/bench-reqs.svg from bench/results/latest.json (and bench/results/profile-*.json when
// bench/profile.mjs has been run). `node bench/report.mjs` regenerates both without measuring again.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const docs = path.join(here, '..', 'docs')

const GOAL_FLOOR_RATIO = 0.9
const GOAL_FASTIFY_SESSION_RATIO = 2

// The goals of issue 15 (the lean request path), checked at 50 connections against the paired repeats (pairedRatio), or
// against the medians of per-round ratios in a run without them.
const GOAL_MEMORY_STORE_TO_BARE = 0.8
const GOAL_NEAR_CACHE_TO_BARE = 0.75
const GOAL_NEAR_CACHE_TO_SECURE_SESSION = 1.15
const GOAL_P99_TO_FLOOR = 1.2
const GOAL_BYTES_PER_ONE_SESSION_USER = 700
/** The throughput goals of issue 15 as [variant, reference]: npm run bench measures each in pairs (measurePairs). */
export const GOAL_PAIRS = [['oursMemory', 'bare'], ['oursNearCache', 'bare'], ['oursNearCache', 'secureSession'], ['ours', 'floor']]

function fixed (value, digits = 2) {
  return value === null || value === undefined ? 'n/a' : value.toFixed(digits)
}

function int (value) {
  return value === null || value === undefined ? 'n/a' : Math.round(value).toLocaleString('en-US')
}

export function median (values) {
  const sorted = values.filter((v) => v !== null && v !== undefined && Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return null
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/**
 * A variant's `field` over another variant's, within each round where both ran, at one connection count:
 * { median, spread: [min, max] } of those per-round ratios, both null when no round has both.
 */
export function ratioOverRounds (runs, key, other, connections, field = 'reqPerSec') {
  const ratios = []
  for (const run of runs) {
    if (run.variant !== key || run.connections !== connections) continue
    const peer = runs.find((r) => r.variant === other && r.connections === connections && r.round === run.round)
    const ratio = peer === undefined || !(peer[field] > 0) ? null : run[field] / peer[field]
    if (ratio !== null && Number.isFinite(ratio)) ratios.push(ratio)
  }
  return { median: median(ratios), spread: ratios.length === 0 ? null : [Math.min(...ratios), Math.max(...ratios)] }
}

/**
 * A ratio with 2 decimals, or 3 when 2 would print the `target` it misses or only just meets (0.897 is not "0.90",
 * next to a target of 0.9 marked not met).
 */
function ratioText (value, target) {
  const short = value.toFixed(2)
  return target !== undefined && value !== target && short === target.toFixed(2) ? value.toFixed(3) : short
}

/** A median ratio with the min-max of its per-round ratios ('-' when not measured in this run). */
function ratioWithSpread ({ median: value, spread }, unit = '', target = undefined) {
  if (value === null || value === undefined) return '-'
  const range = spread === null || spread === undefined ? '' : `${spread[0].toFixed(2)}-${spread[1].toFixed(2)}`
  return `${ratioText(value, target)}${unit}` + (range === '' || spread[0].toFixed(2) === spread[1].toFixed(2) ? '' : ` (${range})`)
}

function percent (value) {
  return value === null || value === undefined ? 'n/a' : `${(value * 100).toFixed(1)}%`
}

function table (header, rows) {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map((h, n) => n === 0 ? '---' : '---:').join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`)
  ].join('\n')
}

function escapeXml (text) {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

const OUR_VARIANTS = new Set(['ours', 'oursMemory', 'oursOptOut', 'oursNearCache'])
const ANCHOR_VARIANTS = new Set(['secureSession', 'jwt'])
/** Variants whose cost over bare Fastify is within the noise of one round (see disturbedRounds). */
const NEAR_BARE = new Set(['oursOptOut'])
/** How far oursOptOut may lead bare Fastify within a round before the round counts as disturbed (disturbedRounds). */
const ROUND_NOISE = 0.1

/**
 * Horizontal bars: median req/s relative to bare Fastify at 50 connections, with the goals that are ratios to
 * another variant (0.9x the floor, 1.15x @fastify/secure-session) marked where that variant was measured.
 */
export function barChart (rows) {
  const labelWidth = 280
  const barWidth = 420
  const rowHeight = 26
  const top = 40
  const height = top + rows.length * rowHeight + 56
  const width = labelWidth + barWidth + 70
  const max = Math.max(1, ...rows.map((r) => r.ratioToBare ?? 0))
  const x = (ratio) => labelWidth + (ratio / max) * barWidth
  const ratioOf = (key) => rows.find((r) => r.variant === key)?.ratioToBare ?? null
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${labelWidth}" y="20" font-weight="bold">median req/s relative to bare Fastify (50 connections)</text>`
  ]
  rows.forEach((row, n) => {
    const y = top + n * rowHeight
    const ratio = row.ratioToBare ?? 0
    const color = OUR_VARIANTS.has(row.variant)
      ? '#2b6cb0'
      : row.variant === 'floor' ? '#718096' : ANCHOR_VARIANTS.has(row.variant) ? '#38a169' : '#a0aec0'
    parts.push(`<text x="${labelWidth - 8}" y="${y + 16}" text-anchor="end">${escapeXml(row.label)}</text>`)
    parts.push(`<rect x="${labelWidth}" y="${y + 3}" width="${Math.max(1, x(ratio) - labelWidth).toFixed(1)}" height="${rowHeight - 8}" fill="${color}"/>`)
    parts.push(`<text x="${(x(ratio) + 6).toFixed(1)}" y="${y + 16}">${row.ratioToBare === null || row.ratioToBare === undefined ? '-' : ratio.toFixed(2)}</text>`)
  })
  const bottom = top + rows.length * rowHeight
  const goals = [
    [ratioOf('floor'), GOAL_FLOOR_RATIO, 'floor', '#c53030'],
    [ratioOf('secureSession'), GOAL_NEAR_CACHE_TO_SECURE_SESSION, 'secure-session', '#276749']
  ]
  goals.forEach(([anchor, factor, name, color], n) => {
    if (anchor === null) return
    const goal = x(anchor * factor)
    parts.push(`<line x1="${goal.toFixed(1)}" y1="${top - 4}" x2="${goal.toFixed(1)}" y2="${bottom + n * 16}" stroke="${color}" stroke-dasharray="4 3"/>`)
    parts.push(`<text x="${goal.toFixed(1)}" y="${bottom + 16 + n * 16}" text-anchor="middle" fill="${color}">goal: ${factor} x ${name}</text>`)
  })
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}

function summaryRow (summary, key, connections) {
  return summary.find((s) => s.variant === key && s.connections === connections)
}

function verdict (results) {
  const ours = summaryRow(results.summary, 'ours', 50)
  if (ours === undefined) return 'The Redis variant of this package was not measured in this run.'
  const lines = []
  const roundTrips = ours.roundTripsPerRequest
  lines.push(`- **One Redis round trip per authenticated request**: measured ${fixed(roundTrips, 3)} round trips per request ` +
    `(client side) and ${fixed(ours.redisCommandsPerRequest, 3)} commands executed by Redis per request. ` +
    (roundTrips !== null && roundTrips <= 1.01 ? 'Met: the touch script runs once a minute per session, not per request.' : 'Not met.'))
  // Ratios within rounds say nothing when the machine's speed changed within a round (disturbedNote).
  const isDisturbed = disturbedRounds(results.runs).length > 0
  const INCONCLUSIVE = 'Inconclusive: the machine\'s speed changed within the rounds of this run (see the goals above).'
  const floorRatio = ours.ratioToFloor
  // The same goal as issue 15's: from its paired repeats when the run has them.
  const pairedFloor = throughputGoals(results).find((goal) => goal.paired && goal.key === 'ours' && goal.reference === 'floor' && goal.field === undefined)
  if (pairedFloor !== undefined) {
    lines.push(`- **>= ${GOAL_FLOOR_RATIO}x the one-GET floor**: ${pairedFloor.text ?? 'n/a'} (the paired repeats of the goals above; ` +
      `${floorRatio === null ? 'n/a' : ratioText(floorRatio, GOAL_FLOOR_RATIO)}x over the rounds). ` +
      (pairedFloor.isInconclusive ? 'Inconclusive: too few paired repeats measured.' : pairedFloor.isMet ? 'Met.' : 'Not met.'))
  } else {
    lines.push(`- **>= ${GOAL_FLOOR_RATIO}x the one-GET floor**: ${floorRatio === null ? 'n/a' : ratioText(floorRatio, GOAL_FLOOR_RATIO)}x (median of per-round ratios). ` +
    (floorRatio === null
      ? 'Not measured in this run.'
      : isDisturbed
        ? INCONCLUSIVE
        : floorRatio >= GOAL_FLOOR_RATIO
          ? 'Met.'
          : `Not met: ${fixed((GOAL_FLOOR_RATIO - floorRatio) * 100, 1)} points short, ` +
        `which is ${fixed((GOAL_FLOOR_RATIO / floorRatio - 1) * 100, 1)}% more throughput to find on the Node side (see the profile below).`))
  }
  const fsRatio = ours.ratioToFastifySession
  lines.push(`- **> ${GOAL_FASTIFY_SESSION_RATIO}x @fastify/session defaults**: ${fixed(fsRatio)}x. ` +
    (fsRatio === null ? 'Not measured in this run.' : isDisturbed ? INCONCLUSIVE : fsRatio > GOAL_FASTIFY_SESSION_RATIO ? 'Met.' : 'Not met.'))
  const memory = summaryRow(results.summary, 'oursMemory', 50)
  if (memory !== undefined && memory.ratioToBare !== null && !isDisturbed) {
    lines.push(`- For scale: the same plugin on the memory store runs at ${fixed(memory.ratioToBare)}x bare Fastify, ` +
      `so the plugin layer alone (hook, token parsing, hashing, security check, route) costs ${fixed((1 - memory.ratioToBare) * 100, 0)}% of bare throughput ` +
      `before any Redis round trip; the floor pays ${fixed((1 - (summaryRow(results.summary, 'floor', 50)?.ratioToBare ?? 1)) * 100, 0)}% for its round trip.`)
    const optOut = summaryRow(results.summary, 'oursOptOut', 50)
    if (optOut !== undefined && optOut.ratioToBare !== null) {
      const spread = ratioOverRounds(results.runs, 'oursOptOut', 'bare', 50)
      const share = optOut.ratioToBare >= 1 || (spread.spread !== null && spread.spread[1] >= 1)
        ? 'costs less than this run can resolve'
        : `costs ${fixed((1 - optOut.ratioToBare) * 100, 0)}%`
      lines.push('- Of that, the plugin being registered at all (its onRequest hook stopping at a route with `config: { session: false }`, ' +
        `and the request decorations) ${share}: such a route runs at ` +
        `${ratioWithSpread(spread, 'x bare')} (median and min-max of the per-round ratios). ` +
        'The rest is reading the token, loading and checking the session, the security report, and the built-in route\'s own hook, ' +
        '`cache-control` header and longer answer.')
    }
  }
  return lines.join('\n')
}

function mainTable (results, connections) {
  const rows = results.summary.filter((s) => s.connections === connections)
  return table(
    ['variant', 'req/s (median)', 'x bare', 'x floor', 'x secure-session', 'p50 ms', 'p99 ms', 'round trips / req', 'Redis cmds / req', 'server CPU µs / req', 'Redis CPU µs / req', 'busy %'],
    rows.map((s) => [
      s.label, int(s.reqPerSec),
      ratioWithSpread(ratioOverRounds(results.runs, s.variant, 'bare', connections)),
      ratioWithSpread(ratioOverRounds(results.runs, s.variant, 'floor', connections)),
      ratioWithSpread(ratioOverRounds(results.runs, s.variant, 'secureSession', connections)),
      fixed(s.p50Ms, 3), fixed(s.p99Ms, 3),
      fixed(s.roundTripsPerRequest, 3), fixed(s.redisCommandsPerRequest, 3), fixed(s.serverCpuMicrosPerRequest, 0),
      fixed(s.redisCpuMicrosPerRequest, 1), fixed(s.busyPercent, 0)
    ])
  )
}

/**
 * Redis memory of a user with one session, without audit entries: the store measurements give one user per session,
 * so their bytes per session are bytes per one-session user (a `bytesPerUser` figure wins where present).
 */
function oneSessionUserBytes (store) {
  const last = (points) => points?.filter((p) => (p.bytesPerUser ?? p.bytesPerSession) !== undefined).at(-1)
  const without = last(store?.withoutAudit)
  if (without === undefined) return null
  const withAudit = last(store?.withAudit)
  return {
    bytes: without.bytesPerUser ?? without.bytesPerSession,
    sessions: without.sessions,
    withAuditBytes: withAudit === undefined ? null : withAudit.bytesPerUser ?? withAudit.bytesPerSession,
    // The keys of one user (record, index with its devices, share of the expiry queue), without the audit timeline.
    keysBytes: (() => {
      const breakdown = store?.withAudit?.find((p) => p.breakdown !== undefined)?.breakdown
      if (breakdown?.total === undefined) return null
      const audit = Object.entries(breakdown.keys).filter(([kind]) => /audit/.test(kind)).reduce((sum, [, bytes]) => sum + bytes, 0)
      return breakdown.total - audit
    })()
  }
}

/** One row of the goals table: goal, target, measured, and met / not met / not measured / inconclusive. */
function goalRow (goal, target, measured, isMet, isInconclusive = false, isTargetInside = false) {
  const status = isMet === null ? 'not measured' : isInconclusive ? '**inconclusive**' : isMet ? '**met**' : '**not met**'
  return [goal, target, measured ?? 'not measured', status + (isMet !== null && !isInconclusive && isTargetInside ? ' (target inside the 95% interval)' : '')]
}

/**
 * The rounds (50 connections) in which a variant outran bare Fastify, which does strictly less work than any of them:
 * the machine's speed changed within the round, and its ratios say more about the machine than about the code.
 * oursOptOut does little more than bare (its hook stops at the route's config), so it can come out ahead by the
 * measurement's own spread: it counts only when it leads bare by more than ROUND_NOISE.
 */
export function disturbedRounds (runs) {
  const disturbed = []
  for (const bare of runs.filter((r) => r.variant === 'bare' && r.connections === 50)) {
    const faster = runs.filter((r) => r.round === bare.round && r.connections === 50 && r.variant !== 'bare' &&
      r.reqPerSec > bare.reqPerSec * (NEAR_BARE.has(r.variant) ? 1 + ROUND_NOISE : 1))
    if (faster.length > 0) disturbed.push({ round: bare.round, bare: bare.reqPerSec, faster: faster.map((r) => [r.variant, r.reqPerSec]) })
  }
  return disturbed
}

/** A paragraph and the blank line after it, or nothing for ''. */
function paragraph (text) {
  return text === '' ? [] : [text, '']
}

/** Why the throughput goals of this run are marked inconclusive, or '' when they are not. */
function disturbedNote (results) {
  const disturbed = disturbedRounds(results.runs)
  if (disturbed.length === 0) return ''
  const rounds = disturbed.map((d) => `round ${d.round + 1}: bare ${int(d.bare)} req/s, ` +
    d.faster.map(([variant, reqPerSec]) => `${variant} ${int(reqPerSec)}`).join(', ')).join('; ')
  const what = results.pairs !== undefined && results.pairs.length > 0
    ? 'The ratios within rounds (the main table below) are disturbed in this run'
    : 'The throughput goals are **inconclusive** in this run'
  return `${what}: in ${disturbed.length} of its rounds a variant outran bare ` +
    `Fastify, which does strictly less work (${rounds}). The machine's speed changed within those rounds.`
}

/**
 * The drop rule that decided the paired goals before the run of 2026-12-06 23:00 UTC, shown beside the verdicts for
 * comparison only: the share by which the two runs of one variant within a paired repeat may differ before the repeat
 * is left out, and the fewest repeats a goal needed kept (of both orders) to be met or not met.
 */
const PAIR_DRIFT = 0.1
const EARLIER_MIN_KEPT = 3
/** The confidence of the interval given with each paired goal's median. */
const INTERVAL_LEVEL = 0.95
/**
 * References that do strictly less work than the variants measured against them. Not the floor: it sends each
 * request's GET in a write of its own, and this package sends the GETs of one event-loop turn in one write, so under
 * load it makes fewer system calls than the floor and can rightly outrun it.
 */
const LESS_WORK = new Set(['bare'])

/**
 * The distribution-free interval of the median of `values`: the nearest ranks k and n + 1 - k of the sorted values, k
 * the largest whose coverage, 1 - 2 P(Binomial(n, 1/2) < k), is at least `level` (16 values: ranks 4 and 13, 97.9%).
 * { low, high, coverage }, or null when even the smallest and largest value cover less (5 values or fewer at 95%).
 */
export function medianInterval (values, level = INTERVAL_LEVEL) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  const n = sorted.length
  let interval = null
  let below = 0 // P(B < k), B ~ Binomial(n, 1/2)
  // log P(B = k - 1), in logs: 0.5 ** n underflows to 0 from n = 1075 on.
  let logExactly = -n * Math.LN2
  for (let k = 1; k <= Math.floor(n / 2); k++) {
    below += Math.exp(logExactly)
    const coverage = 1 - 2 * below
    if (coverage < level) break
    interval = { low: sorted[k - 1], high: sorted[n - k], coverage }
    logExactly += Math.log((n - k + 1) / k)
  }
  return interval
}

/**
 * A goal pair's `field` (the variant's over the reference's), one ratio per repeat from each side's two runs (A B B A,
 * or B A A B: steady drift weighs on both sides alike, and the two orders take turns, so a change of speed tied to the
 * middle runs biases half the repeats one way and half the other). The verdict is the median of every measured repeat
 * (each of its four runs has req/s and p99), given with its 95% interval (medianInterval): { median, interval, spread,
 * count, steady }, or null when the run has no such pair (bench/run.mjs, measurePairs). No repeat is dropped: on this
 * shared machine a rule that dropped a repeat whose two runs of one variant differed by more than PAIR_DRIFT kept 1 to 8
 * of 16 repeats per goal in the six runs of 2026-12-06 from 08:47 to 21:11 UTC, and its companion, which dropped a repeat where a variant outran
 * bare Fastify, only ever dropped repeats in which this package came out ahead. `steady` is that old rule's view, kept
 * beside the verdict for comparison: { median, kept, dropped, isDecided } (isDecided: at least EARLIER_MIN_KEPT kept, of
 * both orders; otherwise that rule called the goal inconclusive).
 */
export function pairedRatio (pairs, key, reference, field = 'reqPerSec') {
  const pair = pairs?.find((p) => p.variant === key && p.reference === reference)
  if (pair === undefined) return null
  const ratios = []
  const steady = []
  const steadyOrders = new Set()
  for (const { slices } of pair.repeats) {
    const side = (variant, name) => slices.filter((slice) => slice.variant === variant).map((slice) => slice[name])
    // The same repeats for every field: each of the four runs must have both req/s and p99.
    const isMeasured = slices.length === 4 && slices.every((slice) => [slice.reqPerSec, slice.p99Ms].every((value) => Number.isFinite(value) && value > 0))
    if (!isMeasured) continue
    const values = [...side(key, field), ...side(reference, field)]
    const value = (values[0] + values[1]) / (values[2] + values[3])
    ratios.push(value)
    const isSteady = (runs) => 1 - Math.min(...runs) / Math.max(...runs) <= PAIR_DRIFT
    const [a1, a2] = side(key, 'reqPerSec')
    const [b1, b2] = side(reference, 'reqPerSec')
    const outran = LESS_WORK.has(reference) && a1 + a2 > b1 + b2
    if (isSteady([a1, a2]) && isSteady([b1, b2]) && !outran) {
      steady.push(value)
      steadyOrders.add(slices[0].variant === key ? 'ABBA' : 'BAAB')
    }
  }
  return {
    median: median(ratios),
    interval: medianInterval(ratios),
    spread: ratios.length === 0 ? null : [Math.min(...ratios), Math.max(...ratios)],
    count: ratios.length,
    steady: { median: median(steady), kept: steady.length, dropped: pair.repeats.length - steady.length, isDecided: steady.length >= EARLIER_MIN_KEPT && steadyOrders.size === 2 }
  }
}

/** How the throughput goals were measured in this run, and which of them a run on this machine can read either way. */
function pairsNote (results) {
  if (results.pairs === undefined || results.pairs.length === 0) return ''
  const { pairRepeats, pairSeconds } = results.settings
  const close = throughputGoals(results).filter((goal) => goal.paired && goal.isTargetInside).map((goal) => `${goal.label} (${goal.target})`)
  const coverages = [...new Set(results.pairs.map((pair) => pairedRatio(results.pairs, pair.variant, pair.reference))
    .filter((ratio) => ratio.interval !== null).map((ratio) => `${(ratio.interval.coverage * 100).toFixed(1)}% at ${ratio.count} repeats`))]
  return `The throughput goals come from paired runs after the rounds: each goal's two variants back to back, ${pairRepeats} ` +
    `repeats of A B B A (B A A B every other time) of ${pairSeconds} s at 50 connections, repeat n of every goal before repeat n + 1 of any, one ratio per repeat from each ` +
    'side\'s two runs, so a machine that speeds up or slows down steadily weighs on both alike. A goal is the median of ' +
    'those ratios over every repeat (none is dropped), met or not met by that median, and given with the confidence ' +
    'interval of the median and the min-max of the repeats. The interval is two of the sorted ratios, at ranks k and n + 1 - k, the innermost such pair ' +
    `that holds the true median with at least 95% probability whatever the distribution of independent repeats (${coverages.length === 0 ? 'none in this run' : coverages.join(', ')}; ` +
    'no interval below 6 measured repeats, and then the goal is inconclusive). ' +
    (close.length === 0
      ? 'No target lies inside its goal\'s interval in this run. '
      : `The target lies inside the interval for ${close.join('; ')}: on this machine another run can read that goal either way. `) +
    'The last column is the drop rule that decided these goals before the run of 2026-12-06 23:00 UTC, for comparison: a repeat ' +
    `whose two runs of one variant differ by more than ${PAIR_DRIFT * 100}%, or where a variant outran bare Fastify, left out, and a goal ` +
    `with fewer than ${EARLIER_MIN_KEPT} repeats kept, or kept repeats of one order only, inconclusive. In the six runs of 2026-12-06 from 08:47 to 21:11 UTC ` +
    '(16 repeats each) that rule, as it stood last, kept 1 to 8 of 16 repeats per goal and left 9 of their 30 paired verdicts inconclusive, and its ' +
    'second half only ever left out repeats in which this package came out ahead. The main table below keeps the ratios within rounds.'
}

/** Where the goal ratios of this run come from: paired repeats, per-round ratios, or some of each. */
function goalsMeasuredBy (results) {
  const paired = GOAL_PAIRS.filter(([key, reference]) => results.pairs?.some((p) => p.variant === key && p.reference === reference)).length
  if (paired === GOAL_PAIRS.length) return 'of the paired repeats described below the table, with the 95% interval of the median in parentheses'
  return paired === 0
    ? 'of per-round ratios, with their min-max in parentheses'
    : 'of the paired repeats described below the table (95% interval of the median in parentheses) for the goals that have them, of per-round ratios (min-max) for the others'
}

/** Whether `value` meets a throughput goal: at least its target, or at most for a ceiling (p99). */
function meets (goal, value) {
  return goal.isAtMost === true ? value <= goal.goal : value >= goal.goal
}

/**
 * The throughput goals of issue 15 checked against this run: from the paired repeats when the run has them (median
 * and its interval), from per-round ratios otherwise (median and min-max; inconclusive when a round was disturbed).
 */
export function throughputGoals (results) {
  const isDisturbed = disturbedRounds(results.runs).length > 0
  const goals = [
    { label: 'this package, memory store', key: 'oursMemory', reference: 'bare', goal: GOAL_MEMORY_STORE_TO_BARE, unit: 'x bare', target: `>= ${GOAL_MEMORY_STORE_TO_BARE}x bare` },
    { label: 'this package, Redis + near cache', key: 'oursNearCache', reference: 'bare', goal: GOAL_NEAR_CACHE_TO_BARE, unit: 'x bare', target: `>= ${GOAL_NEAR_CACHE_TO_BARE}x bare` },
    { label: 'this package, Redis + near cache', key: 'oursNearCache', reference: 'secureSession', goal: GOAL_NEAR_CACHE_TO_SECURE_SESSION, unit: 'x secure-session', target: `>= ${GOAL_NEAR_CACHE_TO_SECURE_SESSION}x @fastify/secure-session` },
    { label: 'this package, Redis, defaults', key: 'ours', reference: 'floor', goal: GOAL_FLOOR_RATIO, unit: 'x floor', target: `>= ${GOAL_FLOOR_RATIO}x the floor` },
    { label: 'this package, Redis, defaults: p99', key: 'ours', reference: 'floor', field: 'p99Ms', goal: GOAL_P99_TO_FLOOR, unit: 'x', target: `<= ${GOAL_P99_TO_FLOOR}x the floor's p99`, isAtMost: true }
  ]
  return goals.map((goal) => {
    const paired = pairedRatio(results.pairs, goal.key, goal.reference, goal.field)
    const measured = paired ?? ratioOverRounds(results.runs, goal.key, goal.reference, 50, goal.field)
    const value = measured.median
    // A paired goal without one measured repeat was run: inconclusive (no interval), not 'not measured'.
    const isMet = value === null ? (paired !== null ? false : null) : meets(goal, value)
    const isInconclusive = paired !== null ? paired.interval === null : isDisturbed
    const isTargetInside = paired?.interval != null && paired.interval.low <= goal.goal && goal.goal <= paired.interval.high
    let text = null
    if (paired !== null) {
      text = value === null
        ? 'no repeat measured'
        : `${ratioText(value, goal.goal)}${goal.unit}` + (paired.interval === null ? '' : ` (95% interval ${paired.interval.low.toFixed(2)}-${paired.interval.high.toFixed(2)})`) +
          `, ${paired.count} repeats ${paired.spread[0].toFixed(2)}-${paired.spread[1].toFixed(2)}`
    } else if (value !== null) {
      text = ratioWithSpread(measured, goal.unit, goal.goal)
    }
    return { ...goal, paired: paired !== null, ratio: measured, text, isMet, isInconclusive, isTargetInside }
  })
}

/** The goals of issue 15, each checked against this run (50 connections; paired runs when the run has them). */
function goalsTable (results) {
  const p99 = (key) => fixed(summaryRow(results.summary, key, 50)?.p99Ms, 3)
  const memoryBytes = oneSessionUserBytes(results.store)
  const hasPairs = results.pairs !== undefined && results.pairs.length > 0
  const goals = throughputGoals(results)
  const rows = goals.map((goal) => goalRow(goal.label, goal.target,
    goal.field === 'p99Ms' && goal.ratio.median !== null ? `${goal.text}; median p99 ${p99('ours')} ms, the floor's ${p99('floor')} ms` : goal.text,
    goal.isMet, goal.isInconclusive, goal.isTargetInside))
  rows.push(goalRow('Redis memory, a user with one session (no audit entries)', `<= ${GOAL_BYTES_PER_ONE_SESSION_USER} B`,
    memoryBytes === null
      ? null
      : `${int(memoryBytes.bytes)} B at ${int(memoryBytes.sessions)} users (used_memory)` +
        (memoryBytes.keysBytes === null ? '' : `; MEMORY USAGE of its keys ${int(memoryBytes.keysBytes)} B`) +
        (memoryBytes.withAuditBytes === null ? '' : `; ${int(memoryBytes.withAuditBytes)} B with audit`),
    memoryBytes === null ? null : memoryBytes.bytes <= GOAL_BYTES_PER_ONE_SESSION_USER))
  const header = ['goal (issue 15)', 'target', hasPairs ? 'measured (median of every paired repeat, its 95% interval, min-max of the repeats)' : 'measured (median, min-max over rounds)', 'status']
  if (!hasPairs) return table(header, rows)
  // The drop rule of earlier runs beside each paired goal, for comparison.
  const steady = goals.map((goal) => goal.paired ? steadyText(goal) : '-')
  return table([...header, `earlier drop rule: repeats within ${PAIR_DRIFT * 100}% (median, kept, its verdict)`], rows.map((row, index) => [...row, steady[index] ?? '-']))
}

/** A paired goal under the drop rule of earlier runs: `0.77x (3 of 16 kept): not met`. */
function steadyText (goal) {
  const { median: value, kept, dropped, isDecided } = goal.ratio.steady
  const isMet = value !== null && meets(goal, value)
  return `${value === null ? '-' : `${ratioText(value, goal.goal)}x`} (${kept} of ${kept + dropped} kept): ${!isDecided ? 'inconclusive' : isMet ? 'met' : 'not met'}`
}

/**
 * bench/results/instructions.json (`npm run bench:instructions`): user-space instructions per request of each variant's
 * server, a figure the machine's load does not move; '' when it has not been measured.
 */
function instructionsNote (instructions) {
  if (instructions === null || instructions.variants.length === 0) return ''
  const bare = instructions.variants.find((v) => v.variant === 'bare')
  const counts = instructions.variants.map((v) => `${v.label} ${int(v.instructionsPerRequest)}` +
    (bare === undefined || v === bare ? '' : ` (${(v.instructionsPerRequest / bare.instructionsPerRequest).toFixed(2)}x bare's)`))
  return 'A second view, which the machine\'s load does not move: the instructions each server executes in user space per ' +
    `request, counted by valgrind's callgrind over ${int(instructions.requests)} requests after ${int(instructions.warmup)} of warm-up at ` +
    `${instructions.connections} connections (\`npm run bench:instructions\`, ${instructions.measuredAt}, Node ${instructions.node}): ${counts.join('; ')}. ` +
    'It leaves out the kernel side of the socket writes (`writev`, a quarter to a third of the sampled time in the profiles ' +
    'below), so it is no throughput ratio: the Redis variants make fewer, larger writes than the floor and run faster than ' +
    'their instruction counts say (and under valgrind each event-loop turn holds more requests, so this package batches more ' +
    'than in the throughput runs).'
}

/** The near cache's hit ratio over the measured runs, from app.sessions.cacheStats() where the plugin has it. */
function hitRatioNote (results) {
  const near = summaryRow(results.summary, 'oursNearCache', 50)
  if (near === undefined) return ''
  const runs = results.runs.filter((r) => r.variant === 'oursNearCache' && r.cacheHits !== undefined)
  if (runs.length === 0) return 'Near-cache hit ratio: not reported (this version of the plugin has no `app.sessions.cacheStats()`).'
  const hits = runs.reduce((sum, r) => sum + r.cacheHits, 0)
  const misses = runs.reduce((sum, r) => sum + r.cacheMisses, 0)
  return `Near-cache hit ratio over the measured runs of "${near.label}" (\`app.sessions.cacheStats()\`, counted between the start ` +
    `and the end of each run): ${percent(hits + misses === 0 ? null : hits / (hits + misses))} (${int(hits)} hits, ${int(misses)} misses).`
}

/** req/s of each round and, in parentheses, the ratio to the floor in that round. */
function perRoundTable (results, connections) {
  const runs = results.runs.filter((r) => r.connections === connections)
  const rounds = [...new Set(runs.map((r) => r.round))].sort((a, b) => a - b)
  const rows = results.summary.filter((s) => s.connections === connections).map((s) => [s.label, ...rounds.map((round) => {
    const run = runs.find((r) => r.variant === s.variant && r.round === round)
    const floor = runs.find((r) => r.variant === 'floor' && r.round === round)
    if (run === undefined) return 'n/a'
    return floor === undefined ? int(run.reqPerSec) : `${int(run.reqPerSec)} (${fixed(run.reqPerSec / floor.reqPerSec)}x)`
  })])
  return table(['variant', ...rounds.map((round) => `round ${round + 1}: req/s (x floor)`)], rows)
}

/** The per-round ratios of a variant to the floor, e.g. "0.94, 0.45, 0.49". */
function roundRatios (results, key, connections) {
  const runs = results.runs.filter((r) => r.connections === connections)
  return [...new Set(runs.map((r) => r.round))].sort((a, b) => a - b).map((round) => {
    const run = runs.find((r) => r.variant === key && r.round === round)
    const floor = runs.find((r) => r.variant === 'floor' && r.round === round)
    return run === undefined || floor === undefined ? 'n/a' : fixed(run.reqPerSec / floor.reqPerSec)
  }).join(', ')
}

function byCommand (map) {
  if (map === undefined || map === null) return 'n/a'
  return Object.entries(map).map(([name, count]) => `${name} ${count.toFixed(3)}`).join(', ') || 'none'
}

function createSection (create) {
  if (create === undefined) return 'Not measured in this run.'
  return [
    `POST /login (\`reply.startSession\`) on this package with Redis, 50 connections, ${create.users} users picked at random, ` +
    `maxSessionsPerUser ${create.maxSessionsPerUser} (evict-oldest): every user was at the limit before the measured run, so logins evict.`,
    '',
    table(['logins/s', 'p50 ms', 'p99 ms', 'evicted during the run', 'round trips / login', 'Redis cmds / login', 'server CPU µs / login', 'Redis CPU µs / login', 'busy %'], [[
      int(create.reqPerSec), fixed(create.p50Ms, 3), fixed(create.p99Ms, 3),
      // Runs before the tombstone-aware count took the day-long tombstones of evicted sessions for live ones.
      create.evicted < 0 ? 'not counted' : int(create.evicted),
      fixed(create.roundTripsPerRequest, 3), fixed(create.redisCommandsPerRequest, 1), fixed(create.serverCpuMicrosPerRequest, 0),
      fixed(create.redisCpuMicrosPerRequest, 1), fixed(create.busyPercent, 0)
    ]]),
    '',
    `Commands Redis ran per login: ${byCommand(create.redisCommandsByName)}.`,
    '',
    `Round trips sent per login: ${byCommand(create.roundTripsByCommand)} (the user's shard tag is a hash of the user id, and an eviction is ` +
    'audited by the create script itself).'
  ].join('\n')
}

function memorySection (store) {
  if (store === undefined) return 'Not measured in this run.'
  const rows = []
  for (const [label, points] of [['with audit entries (default retention 7d)', store.withAudit], ['without audit entries (retention 0)', store.withoutAudit]]) {
    for (const p of points.filter((point) => point.bytesPerSession !== undefined)) {
      rows.push([label, int(p.sessions), fixed(p.usedMemoryDeltaBytes / 2 ** 20, 1), int(p.bytesPerSession), int(p.keys)])
    }
  }
  const sample = store.withAudit.find((p) => p.breakdown !== undefined)?.breakdown
  const shape = store.sessionShape
  const largest = store.withAudit.filter((p) => p.bytesPerSession !== undefined).at(-1)
  return [
    'One user per session (each session pays for its user\'s index, which also holds its known devices, and audit log), session attributes as the plugin stores them: ' +
    `IP, a ${shape.userAgent.length}-character user agent, a device fingerprint, metadata \`${shape.metadata}\`. ` +
    'Bytes per session = INFO memory `used_memory` delta / sessions, so it includes the user index, the expiry-queue entry, the audit log and Redis\' own overhead per key (its hash tables).',
    '',
    table(['run', 'sessions', 'used_memory delta MiB', 'bytes / session', 'keys'], rows),
    '',
    sample === undefined
      ? ''
      : `MEMORY USAGE of one session's keys (bytes): session record ${sample.sessionRecord} (encoding \`${sample.sessionRecordEncoding}\`), ` +
        `user index with its known device ${sample.userIndex}, ` +
        (sample.auditTimeline === undefined
          ? `per entry of the shard's audit stream ${sample.auditStreamPerEntry} (${sample.auditStreamEntries} entries in that stream; the 0.1.0 audit layout), `
          : `the user's audit timeline ${sample.auditTimeline} (${sample.auditTimelineEntries} event), `) +
        `share of the expiry queue ${sample.expiryQueueShare}.`,
    '',
    largest === undefined || largest.sessions >= 1_000_000
      ? 'Bytes per session do not grow with the keyspace (compare the sizes).'
      : `The largest keyspace measured is ${int(largest.sessions)} sessions; \`BENCH_MEMORY_SESSIONS=10000,1000000\` ` +
        `measures 1,000,000 (about ${fixed(largest.bytesPerSession * 1e6 / 2 ** 30, 1)} GiB of Redis memory and, at ` +
        `${int(largest.createPerSec)} creates/s, ${fixed(1e6 / largest.createPerSec / 60, 1)} minutes of creation per audit setting). ` +
        'Bytes per session do not grow with the keyspace (compare the sizes).'
  ].join('\n')
}

function latencySection (store) {
  if (store === undefined) return 'Not measured in this run.'
  const rows = store.withAudit.filter((p) => p.get !== undefined).map((p) => [
    int(p.sessions), fixed(p.get.p50Ms, 3), fixed(p.get.p99Ms, 3), fixed(p.list.p50Ms, 3), fixed(p.list.p99Ms, 3), int(p.createPerSec)
  ])
  return [
    '`manager.get(token)` of a random session of the keyspace and `manager.list(userId)` of a user with 5 sessions, ' +
    `one call at a time (${store.withAudit.find((p) => p.get !== undefined)?.get.samples ?? 0} calls each), in the bench process ` +
    '(client-side time: ioredis, hashing, parsing). Creates/s is `manager.create` with 64 in flight while growing to that size.',
    '',
    table(['sessions in Redis', 'get p50 ms', 'get p99 ms', 'list p50 ms', 'list p99 ms', 'creates/s while growing'], rows),
    '',
    'Both are one command on keys whose size does not depend on the keyspace (GET of one record; one script reading one user\'s ' +
    'index and sessions), so they should stay flat: compare the p50 column across sizes (p99 moves with the neighbours\' load).'
  ].join('\n')
}

function cleanupSection (cleanup) {
  if (cleanup === undefined) return 'Not measured in this run.'
  return [
    `${int(cleanup.sessions)} sessions created with an injected clock, the clock moved 25 h ahead, then one \`manager.cleanup()\` ` +
    '(batch size 500, 32 shards in flight):',
    '',
    table(['expired', 'seconds', 'sessions / s', 'round trips', 'Redis CPU s', 'keys before', 'keys after'], [[
      int(cleanup.expired), fixed(cleanup.seconds, 2), int(cleanup.sessionsPerSecond), int(cleanup.roundTrips),
      fixed(cleanup.redisCpuSeconds, 2), int(cleanup.keysBefore), int(cleanup.keysAfter)
    ]]),
    '',
    'Keys left after the cleanup are the users\' audit timelines (the expiry is audited; they expire after the retention) and indexes that still hold known devices.'
  ].join('\n')
}

/** µs per request of the functions of a profile that match `test`, from its kept top functions. */
function microsWhere (profile, test) {
  return profile === undefined ? 0 : profile.top.filter(test).reduce((sum, f) => sum + f.microsPerRequest, 0)
}

const COST_CENTRES = [
  ['ioredis: sending the command and decoding the reply', (f) => f.where.startsWith('ioredis/')],
  ['SHA-256 of the token secret', (f) => f.where.startsWith('node:internal/crypto/hash')],
  ['device fingerprint (derive from headers, validate, compare)', (f) => f.where.startsWith('dist/security/fingerprint.js') || f.name.startsWith('RegExp: ^v1')],
  // Both read a JSON record: this package in parseRecord, the floor in its route handler (bench/apps.mjs), whose own
  // time holds its inlined JSON.parse and also its key and reply building (the call into ioredis is counted above).
  ['reading the record (this package: parseRecord; the floor: its whole route handler, JSON.parse inlined)', (f) => f.name === 'parseRecord' || f.where.includes('bench/apps.mjs:')],
  ['other JS of this package (hook, manager, security report)', (f) => f.where.startsWith('dist/') && !f.where.startsWith('dist/security/fingerprint.js') && f.name !== 'parseRecord'],
  ['timers and promise plumbing (microtasks)', (f) => f.where.startsWith('node:internal/timers') || f.where.startsWith('node:timers') || f.name === 'runMicrotasks' || f.name === 'processTicksAndRejections' || f.name === 'getLibuvNow'],
  ['garbage collector', (f) => f.name === '(garbage collector)'],
  ['socket writes: HTTP answers and Redis commands (incl. kernel time)', (f) => f.name === 'writev' || f.name === 'writeUtf8String' || f.name === 'writeBuffer']
]

function commentary (results, profiles, decode) {
  const ours = summaryRow(results.summary, 'ours', 50)
  const floor = summaryRow(results.summary, 'floor', 50)
  const ours1 = summaryRow(results.summary, 'ours', 1)
  if (ours === undefined || floor === undefined) return 'Not enough variants in this run for a commentary.'
  const parts = [
    `At 50 connections every run kept the machine ${fixed(Math.min(ours.busyPercent, floor.busyPercent), 0)}-${fixed(Math.max(ours.busyPercent, floor.busyPercent), 0)}% busy, ` +
    'so throughput follows CPU time per request. Both send one command per request; the floor writes each to its socket ' +
    'alone, this package sends the commands of one event-loop turn in one write (item 9 below). Per request, Redis spent ' +
    `${fixed(ours.redisCpuMicrosPerRequest, 1)} µs of CPU for this package against ${fixed(floor.redisCpuMicrosPerRequest, 1)} µs for the floor's GET, ` +
    `and the server process ${fixed(ours.serverCpuMicrosPerRequest, 0)} µs against ${fixed(floor.serverCpuMicrosPerRequest, 0)} µs. ` +
    (ours1 === undefined
      ? ''
      : `With one connection (a turn holds one request, so nothing is batched) this package runs at ${fixed(ours1.ratioToFloor)}x the floor (rounds: ${roundRatios(results, 'ours', 1)}), ` +
        `at 50 connections ${fixed(ours.ratioToFloor)}x (rounds: ${roundRatios(results, 'ours', 50)}).`)
  ]
  if (profiles.ours !== undefined && profiles.floor !== undefined) {
    parts.push('', `Where the server CPU differs (from the profiles below, ${profiles.ours.measuredAt ?? 'measured separately'}${profiles.ours.node === undefined ? '' : `, Node ${profiles.ours.node}`}; this package minus the floor, µs per request of sampled time):`, '')
    parts.push(table(['cost centre', 'this package', 'floor', 'difference'], COST_CENTRES.map(([label, test]) => {
      const mine = microsWhere(profiles.ours, test)
      const theirs = microsWhere(profiles.floor, test)
      return [label, fixed(mine, 2), fixed(theirs, 2), fixed(mine - theirs, 2)]
    })))
    parts.push('', 'The HTTP layer costs the same in both; the socket writes row holds the HTTP answers (one write per request in both) ' +
      'and the Redis commands (one write per request for the floor, one per event-loop turn for this package).')
  }
  parts.push('', '### What was changed after the first run, and what is left', '',
    'The first run of this benchmark measured 0.68x the floor and 1.75x @fastify/session. Its profile led to these changes in lib/, ' +
    'each measured with the same benchmark:',
    '',
    '1. **One value per session.** A session is one JSON string read with one `GET` instead of a 10-field hash read with `HGETALL`: ' +
    'ioredis decodes one bulk string for about half the client CPU (table below), and a record with a browser user agent is no longer ' +
    'a hash table in Redis.',
    '2. **One-shot SHA-256.** `crypto.hash(\'sha256\', secret, \'base64url\')`, compared with the stored digest without allocating Buffers.',
    '3. **Fingerprint cache.** The request\'s fingerprint is cached per user agent; a hit costs four string comparisons, and an equal ' +
    'fingerprint is not parsed at all.',
    '4. **One timer for all deadlines** (`lib/plugin/deadline.ts`) instead of a `setTimeout` per request; the token is parsed once; ' +
    '`requireSession` is a callback hook; a request that raises no flag allocates no report.',
    '',
    'Issue 15 (the lean request path) then changed, measured against the build before it in one run ' +
    '(`BENCH_BASELINE=<that build>/dist/index.js BENCH_VARIANTS=bare,floor,ours,baseline,oursMemory,baselineMemory,oursNearCache,' +
    'baselineNearCache,secureSession BENCH_SECONDS=5 BENCH_ROUNDS=2 BENCH_EXTRAS=0 npm run bench`; the closing note of the issue quotes ' +
    'the figures):',
    '',
    '5. **No promise when the answer is known.** The session hook is callback style; a store that can answer without I/O ' +
    '(`Store.loadNow`: the memory store, a near-cache hit) is answered in the same tick, no promise, no deadline entry.',
    '6. **A near-cache hit is a lookup.** The cached entry keeps its parsed record and hands that same object to every hit (the ' +
    'manager copies only its metadata into each request\'s session; the memory store likewise parses metadata once until it ' +
    'changes), and the secret last verified per session is compared in constant time instead of hashed again.',
    '7. **Less garbage.** A settled store call drops its closure at once, so the deadline queue no longer keeps answered sessions ' +
    'alive until its next sweep (they reached the old generation); the built-in routes run one hook fewer.',
    '8. **No promise around a store read.** The deadline queue takes callbacks on the request path, and the hook calls `done` ' +
    'itself: a Redis-backed request makes three promises fewer. `node bench/alloc.mjs <build before> dist` counts young-generation ' +
    'scavenges per 100,000 session loads (1 MiB semi-space, so the count follows the bytes allocated): 678 before, 623 after on the ' +
    'Redis path, about 570 bytes less per request; every record, of either store, is one object literal of one shape (memory store ' +
    '229 before, 223 after).',
    '',
    '9. **One write per turn.** The store corks the socket of the connection a command goes through and uncorks it in the check ' +
    'phase of the same event-loop turn (`lib/store/redis/write-batch.ts`; on a Cluster, the master of the key\'s slot): the GETs of ' +
    'the requests Node read in one turn leave in one `writev`, and Redis reads and answers them together. Each request still makes ' +
    'one round trip. The closing note of issue 15 quotes the run that measured it against the build before it.',
    '',
    'What is left on the Redis path is the store\'s own promise around the round trip, parsing and checking the record, the session ' +
    'object and its `Date`s, and the hooks the floor does not run (the session hook, requireSession).')
  const near = summaryRow(results.summary, 'oursNearCache', 50)
  if (near !== undefined) {
    parts.push('', '### Past the floor: the near cache (opt-in)', '',
      'With `nearCache: true` the plugin keeps session records in process and Redis invalidates them (CLIENT TRACKING, ' +
      'RESP2 redirect to a listener connection) when they change on any instance. Repeat requests within the touch interval cost ' +
      `no round trip: ${fixed(near.roundTripsPerRequest, 3)} round trips per request, ${fixed(near.ratioToFloor)}x the floor ` +
      `(rounds: ${roundRatios(results, 'oursNearCache', 50)}) and ${fixed(near.ratioToBare)}x bare Fastify` +
      ((near.ratioToSecureSession ?? null) === null
        ? ''
        : `, ${fixed(near.ratioToSecureSession)}x @fastify/secure-session (the stateless cookie that cannot be revoked)`) +
      ((near.cacheHitRatio ?? null) === null ? '. ' : ` (hit ratio ${percent(near.cacheHitRatio)}, median over rounds). `) +
      'A revocation reaches the other instances\' caches within a few milliseconds on loopback (`test/near-cache.test.ts` ' +
      'prints the measured delays, and `test/near-cache-cluster.test.ts` on a Redis Cluster, where each node broadcasts ' +
      'the changes under the key prefix). It is off by default: it costs two extra connections per instance (per node on ' +
      'a Cluster) and Redis memory for the tracking table (on a Cluster, a message per write and instance instead: ' +
      '[capacity.md](capacity.md#limits-of-the-design)), and a silently broken listener connection could serve a revoked ' +
      'session until `nearCache.maxAge` (5 s).')
  }
  if (decode !== null) {
    parts.push('', `Client CPU to read one session by reply shape (\`node bench/client-decode.mjs\`, ${decode.measuredAt ?? 'measured separately'}: ${decode.inFlight} calls in flight, ` +
      `median of ${decode.repeats} runs of ${int(decode.calls)} calls, µs of client CPU per call):`, '')
    const shapes = [...new Set(decode.rows.map((r) => r.shape))]
    const clients = [...new Set(decode.rows.map((r) => r.client))]
    parts.push(table(['client', ...shapes], clients.map((client) => [client,
      ...shapes.map((shape) => fixed(decode.rows.find((r) => r.client === client && r.shape === shape)?.cpuMicrosPerCall, 2))])))
  }
  const sample = results.store?.withAudit.find((p) => p.breakdown !== undefined)
  if (sample !== undefined) {
    const b = sample.breakdown
    const withAudit = results.store.withAudit.at(-1)
    const withoutAudit = results.store.withoutAudit.at(-1)
    parts.push('', '### Memory', '',
      `- At default settings a single-session user costs ${int(withAudit.bytesPerSession)} bytes of Redis memory, ${int(withoutAudit?.bytesPerSession)} without audit. ` +
      `The session record is ${int(b.sessionRecord)} bytes (\`${b.sessionRecordEncoding}\` string), the user's index with its known device ${int(b.userIndex)}. ` +
      `The audit log adds ${int(withAudit.bytesPerSession - (withoutAudit?.bytesPerSession ?? 0))} bytes per session at ` +
      `${int(withAudit.sessions)} sessions (one \`created\` event each` +
      (b.auditTimeline === undefined
        ? ', measured with the 0.1.0 layout of 4096 shard streams; the per-user timelines are measured by `npm run bench:audit`, below). '
        : `, in the user's audit timeline of ${int(b.auditTimeline)} bytes). `) +
      'The user index is per user and costs its key overhead; users with several sessions share it (see docs/design.md).')
  }
  return parts.join('\n')
}

const PROFILE_ORDER = ['ours', 'floor', 'oursMemory', 'bare']

function profileSection (profiles) {
  const ours = profiles.ours
  if (ours === undefined) return 'No profile in bench/results/: run `node bench/profile.mjs` (after `npm run build`).'
  const present = PROFILE_ORDER.filter((key) => profiles[key] !== undefined).map((key) => profiles[key])
  const groupNames = [...new Set(present.flatMap((p) => p.groups.filter((g) => g.microsPerRequest >= 0.05).map((g) => g.name)))]
  const groupOf = (p, name) => p.groups.find((g) => g.name === name)?.microsPerRequest
  const functionIn = (p, f) => p?.top.find((g) => g.name === f.name && g.where === f.where)?.microsPerRequest
  return [
    `Measured ${ours.measuredAt ?? 'separately'}${ours.node === undefined ? '' : ` (Node ${ours.node}, ${ours.cpuModel})`} by \`node bench/profile.mjs\`, not by \`npm run bench\`. ` +
    `\`node --cpu-prof\` (${ours.samplingMicros} µs sampling) of each server process under ${ours.connections} connections for ${ours.seconds} s after a warm-up, ` +
    'counting only the samples of the measured run, divided by its requests. ' +
    'Sampled time is the main thread\'s: it includes the kernel time of its socket system calls (and time it was descheduled in ' +
    'them on this busy machine), while `process.cpuUsage()` also counts the process\'s other threads (V8\'s garbage-collector and ' +
    'compiler threads among them) and reads higher in every column; compare rows across columns.',
    '',
    table(['µs per request', ...present.map((p) => p.label)], [
      ['req/s under the profiler', ...present.map((p) => int(p.reqPerSec))],
      ['server CPU (process.cpuUsage)', ...present.map((p) => fixed(p.serverCpuMicrosPerRequest, 1))],
      ['sampled, all', ...present.map((p) => fixed(p.profiledMicrosPerRequest, 1))],
      ['with a frame of dist/ on the stack', ...present.map((p) => fixed(p.packageInclusive.microsPerRequest, 1))],
      ...groupNames.map((name) => [name, ...present.map((p) => fixed(groupOf(p, name) ?? 0, 2))])
    ]),
    '',
    'Top functions of "this package, Redis" by self time, next to the same function in the floor:',
    '',
    table(['function', 'where', 'µs / req', 'floor µs / req'],
      ours.top.slice(0, 25).map((f) => [`\`${f.name}\``, f.where, fixed(f.microsPerRequest, 2), fixed(functionIn(profiles.floor, f) ?? 0, 2)])),
    '',
    'Inclusive time of the request-path functions of this package (callees included: `load` of the Redis store includes ioredis ' +
    'writing the command to the socket, a system call whose kernel time is sampled here too):',
    '',
    table(['function', 'this package, Redis µs / req', 'memory store µs / req'],
      [...new Set([...ours.inclusive, ...(profiles.oursMemory?.inclusive ?? [])].map((f) => f.name))].map((name) => [
        `\`${name}\``,
        fixed(ours.inclusive.find((f) => f.name === name)?.microsPerRequest ?? 0, 2),
        fixed(profiles.oursMemory?.inclusive.find((f) => f.name === name)?.microsPerRequest ?? 0, 2)
      ]))
  ].join('\n')
}

export function renderMarkdown (results, profiles, decode = null, audit = readJson('audit.json'), instructions = readJson('instructions.json')) {
  const m = results.machine
  const s = results.settings
  const ours = summaryRow(results.summary, 'ours', 50)
  const sections = [
    '# Benchmarks',
    '',
    `<!-- Generated by \`npm run bench\` (bench/run.mjs, bench/report.mjs) on ${results.startedAt}. Do not edit by hand: change bench/report.mjs. -->`,
    '',
    'How much an authenticated request costs with this package, next to the floor of one Redis round trip and to the',
    'session plugins people use today. Everything below comes from one run of `npm run bench`; the raw numbers are in',
    '`bench/results/latest.json`.',
    '',
    '## The goals of issue 15: the lean request path',
    '',
    'Every default feature on (timeouts, touch, security flag, fingerprint check), no weaker guarantee. Ratios are',
    `medians at 50 connections, ${goalsMeasuredBy(results)};`,
    'the variants are in the main table below. @fastify/secure-session is the',
    '0-round-trip anchor: an encrypted cookie decrypted on every request, which cannot be revoked.',
    '',
    goalsTable(results),
    '',
    ...paragraph(pairsNote(results)),
    ...paragraph(disturbedNote(results)),
    hitRatioNote(results),
    '',
    ...paragraph(instructionsNote(instructions)),
    '## The first goals (0.1.0), and where we are',
    '',
    'Goal: an authenticated request costs **one Redis round trip**, runs at **>= 0.9x the one-GET floor** and at',
    '**more than 2x @fastify/session with its defaults**, with every feature on (idle and absolute timeouts, touch,',
    'security flag, fingerprint check).',
    '',
    verdict(results),
    '',
    commentary(results, profiles, decode),
    '',
    '## How to run',
    '',
    '- `npm run bench`: builds, then runs everything below except the profile and the client measurements, and writes',
    `  \`bench/results/latest.json\`, this page and \`bench-reqs.svg\`${results.totalSeconds === undefined ? '' : ` (this run took ${Math.round(results.totalSeconds / 60)} minutes)`}.`,
    '  `BENCH_SECONDS` (10), `BENCH_WARMUP_SECONDS` (2), `BENCH_ROUNDS` (3), `BENCH_VARIANTS` (comma-separated keys: bare, floor,',
    '  ours, oursMemory, oursOptOut, oursNearCache, secureSession, jwt, fastifySession, fastifySessionNoRolling, expressSession, naive), `BENCH_EXTRAS=0`',
    '  (skip memory, latency and cleanup), `BENCH_MEMORY_SESSIONS` (10000,1000000), `BENCH_LATENCY_SIZES` (1000,10000,100000,1000000),',
    '  `BENCH_CLEANUP_SESSIONS` (100000), `BENCH_PAIR_REPEATS` (24: the paired repeats of each goal; 0 skips them), `BENCH_PAIR_SECONDS` (2). A run restricted to some variants still writes this page; ratios to a variant it left out are `-`.',
    '- secureSession and jwt come from `bench/anchors/`, a package of their own with its own lockfile (sodium-native, which',
    '  @fastify/secure-session needs, is a native addon and stays out of the root `node_modules`): `npm run bench` runs',
    '  `npm ci --prefix bench/anchors` the first time one of them is wanted.',
    '- `node bench/profile.mjs [variant...]` (default: ours floor oursMemory bare): CPU profiles, `bench/results/profile-<variant>.json`.',
    '- `npm run bench:instructions`: user-space instructions per request of each server under valgrind\'s callgrind (about 40 s a variant; `BENCH_INSTRUCTION_VARIANTS`, `BENCH_INSTRUCTION_WARMUP` (30000), `BENCH_INSTRUCTION_REQUESTS` (20000)), `bench/results/instructions.json`; repeated runs of one build differed by up to 7% here (the memory-store variant read 91,934, 93,649 and 98,187 in three runs of one build on Node.js 20 on 2026-12-07), so a change to the request path larger than that shows there when throughput runs on a shared machine cannot resolve it.',
    '- `node bench/client-decode.mjs`: client CPU per session read by reply shape, `bench/results/client-decode.json`.',
    '- `node bench/report.mjs`: regenerates this page and the chart from the JSON files without measuring.',
    '',
    '## Method',
    '',
    '- `npm run bench` builds the package, starts its own `redis-server` (free port, `--save \'\' --appendonly no`) and',
    '  forks every variant as its own server process on its own port. Each authenticated variant gets a valid',
    '  credential first (a real `POST /login`), and `GET /profile` is checked to answer 200 with it.',
    '- Variants: (a) bare Fastify returning a constant; (b) the floor: Fastify + ioredis, one `GET` of a JSON value and',
    '  `JSON.parse`; (c) this package on Redis, default options (touch interval 60 s, security flag, fingerprint check,',
    '  token in `X-Session-ID`), its own `GET /profile` route; (d) the same on the memory store; (e) @fastify/session +',
    '  @fastify/cookie + connect-redis 7 on ioredis, defaults but `cookie.secure: false` (otherwise it never saves over',
    '  HTTP); (f) the same with `rolling: false`; (g) express-session + connect-redis 7 on express 5; (h) the naive design',
    '  this package replaces: seven sequential commands per request (GET session, GET user, SMEMBERS user sessions,',
    '  HGET ip, HGET fingerprint, EXPIRE, LPUSH audit); (i) @fastify/secure-session 8 (libsodium secretbox cookie, fixed',
    '  32-byte key, `secure: false`, on the same @fastify/cookie), no store; (j) @fastify/jwt 10, HS256 bearer token verified',
    '  (signature and expiry) on every request, no store. (i) and (j) log in by issuing the credential and answer',
    '  `{ userId, sessionId }` from it with the same response schema as the others. Every request carries the same browser headers.',
    `- Load: autocannon (programmatic API) in the bench process, ${s.warmupSeconds} s warm-up at 50 connections, then`,
    `  ${s.seconds} s at 50 connections and ${s.seconds} s at 1 connection, per variant and round; ${s.rounds} rounds, the variant order`,
    '  rotated each round. Ratios (to bare, to the floor, to @fastify/secure-session, to @fastify/session) are computed',
    '  within a round, then the median over rounds is reported with the min-max over rounds; req/s and latencies are medians over rounds. Latency quantiles come from the',
    '  response times autocannon reports per request, in 5 µs buckets (autocannon\'s own histogram counts whole ms).',
    '- Round trips per request: the server processes wrap ioredis `sendCommand` and report the count over IPC (nothing',
    '  pipelines, so one command sent is one round trip). Redis commands per request: `INFO commandstats` deltas; these',
    '  count the commands a Lua script runs inside Redis as well as the script call, so they overstate round trips.',
    '- CPU per request: `process.cpuUsage()` in the server process; Redis CPU: `used_cpu_sys + used_cpu_user` deltas.',
    '  Both divided by the 2xx responses of the run. Busy %: all cores, from `os.cpus()` deltas over the run.',
    '',
    '## Machine',
    '',
    `${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB, ${m.platform}, Node ${m.node}, Redis ${m.redis}. The load generator,`,
    'Redis and the server under test share these cores, and other engineers\' test runs were using the same machine',
    `(load average ${m.loadAverageAtStart.map((v) => v.toFixed(2)).join(' / ')} at the start, ${(m.loadAverageAtEnd ?? []).map((v) => v.toFixed(2)).join(' / ')} at the end).`,
    'Compare ratios, not absolute req/s; the busy % column says how saturated the machine was during each run.',
    `Total bench time: ${results.totalSeconds} s.`,
    '',
    '## Authenticated GET /profile, 50 connections',
    '',
    'Ratios: median of the per-round ratios, min-max over rounds in parentheses; `-` where the other variant was not in this run.',
    '',
    mainTable(results, 50),
    '',
    '![median req/s relative to bare Fastify](bench-reqs.svg)',
    '',
    'req/s of each round (the spread shows the noise of the shared machine):',
    '',
    perRoundTable(results, 50),
    '',
    '## Authenticated GET /profile, 1 connection',
    '',
    'One request at a time: latency without queueing. On a machine this busy the single connection is at the mercy of the',
    'scheduler (see the p99 column and the spread of the rounds): read these ratios with the per-round values below.',
    '',
    mainTable(results, 1),
    '',
    perRoundTable(results, 1),
    '',
    '## What this package sends to Redis per request',
    '',
    ours === undefined
      ? 'Not measured.'
      : `Round trips sent by the server, per request: ${byCommand(ours.roundTripsByCommand)}. ` +
        `Commands Redis executed, per request: ${byCommand(ours.redisCommandsByName)}. ` +
        'The touch (an `evalsha` whose inner commands Redis also counts) is due once per session and touch interval (60 s); one session serves the whole run here.',
    '',
    '## Login throughput, limit enforced',
    '',
    createSection(results.create),
    '',
    '## Redis memory per session',
    '',
    memorySection(results.store),
    '',
    '## get and list latency as the keyspace grows',
    '',
    latencySection(results.store),
    '',
    '## Cleanup of expired sessions',
    '',
    cleanupSection(results.store?.cleanup),
    '',
    '## Audit log at scale (`npm run bench:audit`)',
    '',
    auditSection(audit),
    '',
    '## Profile of the request path',
    '',
    profileSection(profiles),
    ''
  ]
  return sections.join('\n')
}

/** What the SLOWLOG caught during the query phases, and how loaded the machine was. */
function slowNote (audit) {
  const phases = [audit.uniform, audit.uniformCached, audit.heavyNeighbours, audit.heavyUser].filter((phase) => phase !== undefined)
  const slow = phases.flatMap((phase) => phase.slowCalls ?? [])
  const load = phases.map((phase) => phase.loadAverage).filter((value) => value !== undefined)
  const loadText = load.length === 0 ? '' : `Machine load average (1 min, 2 cores shared with other work) during the query phases: ${load.map((value) => fixed(value, 1)).join(', ')}. `
  const busy = audit.baselineScript
  const busyText = busy === undefined ? '' : `For comparison, the script that only counts for as long (${fixed(busy.redisUsecPerScriptCall, 1)} µs per call) had ${int(busy.slowlogOver2ms)} of ${int(busy.samples)} calls over 2 ms in the same conditions.`
  if (slow.length === 0) return loadText + 'No call held Redis for 2 ms or more.' + busyText
  return loadText + busyText + ` Calls over 2 ms (SLOWLOG also lists the commands a script runs): ${slow.map((call) => `${call.command} ${call.key} ${fixed(call.ms, 2)} ms`).join('; ')}.`
}

/** bench/results/audit.json, written by bench/audit.mjs (`npm run bench:audit`). */
function auditSection (audit) {
  if (audit === null) return 'Not measured yet: run `npm run bench:audit`.'
  const m = audit.memory
  const us = (value) => value === undefined || value === null ? 'n/a' : fixed(value, 1)
  const q = (r) => [r.label, int(r.samples), fixed(r.meanEventsReturned, 1), fixed(r.clientP50Ms, 3), fixed(r.clientP99Ms, 3),
    us(r.redisUsecPerScriptCall), us(r.redisP99Usec), us(r.redisP999Usec), int(r.slowlogOver2ms)]
  const phases = [audit.uniform, audit.uniformCached, audit.heavyNeighbours, audit.heavyUser, audit.baseline, audit.baselineScript].filter((phase) => phase !== undefined)
  return [
    `Run ${audit.startedAt === undefined ? '' : `on ${audit.startedAt} `}(Redis ${audit.redisVersion}): ${int(audit.users)} users with ${audit.eventsPerUser} events each ` +
    `(${int(audit.users * audit.eventsPerUser)} events; logins with a 97-character user agent alternating with logouts), loaded by the ` +
    'store\'s own `audit()` Lua function, 1000 events per script call; then one user of a shard given ' +
    `${int(audit.heavyEvents)} events (its cap raised to hold them) with \`audit.feed\` on, so the shard's feed holds as many.`,
    '',
    '`auditLog(user, { limit: 50 })` through `SessionManager`, one call at a time. Client time includes the tag lookup ' +
    '(a second round trip: the store caches 10,000 tags and the users are random among all); Redis time is the ' +
    '`evalsha` time of INFO commandstats and its percentiles from INFO latencystats over the same calls (tag lookups ' +
    'and queries); SLOWLOG counts the calls over 2 ms. The loader\'s garbage in Redis\' Lua heap is collected once after ' +
    'each load so that the timed phases do not pay for it.',
    '',
    table(['query', 'calls', 'events returned', 'client p50 ms', 'client p99 ms', 'Redis µs per script call (mean)', 'Redis p99 µs', 'Redis p99.9 µs', 'calls over 2 ms'],
      phases.map(q)),
    '',
    slowNote(audit),
    '',
    `Memory: ${fixed(m.bytesPerEvent, 1)} bytes per event (INFO \`used_memory\` delta over ${int(audit.users * audit.eventsPerUser)} events, ` +
    `timeline encoding \`${m.timelineEncoding}\`), ${int(m.bytesPerUser)} bytes per user with ${audit.eventsPerUser} events. ` +
    `MEMORY USAGE of one user's timeline: ${int(m['memoryUsage_one-logout'])} bytes with one short event, ` +
    `${int(m['memoryUsage_one-login'])} with one login event, ${int(m.memoryUsageOf20Events)} with ${audit.eventsPerUser} events. ` +
    `The ${int(audit.heavy.timelineLength)}-event timeline takes ${fixed(audit.heavy.timelineMemoryUsage / 2 ** 20, 1)} MiB` +
    (audit.heavy.feedMemoryUsage === undefined ? '; ' : `, the shard's feed of ${int(audit.heavy.feedLength)} entries ${fixed(audit.heavy.feedMemoryUsage / 2 ** 20, 1)} MiB; `) +
    `loading it and the feed took ${fixed(audit.heavy.loadSeconds, 1)} s.`
  ].join('\n')
}

export function writeReport (results, profiles = readProfiles(), decode = readJson('client-decode.json')) {
  fs.mkdirSync(docs, { recursive: true })
  fs.writeFileSync(path.join(docs, 'benchmarks.md'), renderMarkdown(results, profiles, decode))
  fs.writeFileSync(path.join(docs, 'bench-reqs.svg'), barChart(results.summary.filter((s) => s.connections === 50)))
}

export function readJson (name) {
  const file = path.join(here, 'results', name)
  return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : null
}

/** bench/results/profile-<variant>.json files written by bench/profile.mjs, by variant. */
export function readProfiles () {
  const profiles = {}
  for (const key of PROFILE_ORDER) {
    const profile = readJson(`profile-${key}.json`)
    if (profile !== null) profiles[key] = profile
  }
  return profiles
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeReport(JSON.parse(fs.readFileSync(path.join(here, 'results', 'latest.json'), 'utf8')))
}
