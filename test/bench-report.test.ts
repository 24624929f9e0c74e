import fs from 'node:fs'
import path from 'node:path'
import { test } from 'tap'

const loadReport = () => import('../bench/report.mjs')
type Pair = NonNullable<Parameters<Awaited<ReturnType<typeof loadReport>>['pairedRatio']>[0]>[number]

// One paired repeat as bench/run.mjs records it: A B B A, or B A A B with `flipped`.
const repeat = (a: [number, number], b: [number, number], { flipped = false, p99 = { a: 2, b: 1 } as { a: number | null, b: number }, variant = 'oursMemory', reference = 'bare' } = {}) => {
  const A = (reqPerSec: number) => ({ variant, reqPerSec, p99Ms: p99.a })
  const B = (reqPerSec: number) => ({ variant: reference, reqPerSec, p99Ms: p99.b })
  return { slices: flipped ? [B(b[0]), A(a[0]), A(a[1]), B(b[1])] : [A(a[0]), B(b[0]), B(b[1]), A(a[1])] }
}

test('bench report: a paired goal is the median of per-repeat ratios of both runs over every measured repeat; the earlier drop rule is shown beside it', async (t) => {
  const { pairedRatio } = await loadReport()
  const pairs = [{
    variant: 'oursMemory',
    reference: 'bare',
    repeats: [
      repeat([800, 820], [1000, 1020]), // 1620 / 2020
      repeat([780, 790], [1000, 990], { flipped: true }), // 1570 / 1990
      repeat([900, 600], [1000, 1000]), // 1500 / 2000: oursMemory's runs differ by a third (the earlier rule left it out)
      repeat([800, 800], [1000, 700], { flipped: true }), // 1600 / 1700: bare's runs differ by 30% (left out before)
      repeat([700, 710], [900, 910]), // 1410 / 1810
      repeat([1000, 1010], [990, 1000], { flipped: true }), // 2010 / 1990: faster than bare Fastify (left out before)
      repeat([700, 700], [900, 900], { p99: { a: null, b: 1 } }) // no p99 on one side: not measured, for every field
    ]
  }]
  const ratio = pairedRatio(pairs, 'oursMemory', 'bare')
  if (ratio === null) throw new Error('the pair is in the run')
  const every = [1410 / 1810, 1500 / 2000, 1570 / 1990, 1620 / 2020, 1600 / 1700, 2010 / 1990]
  t.equal(ratio.count, 6, 'every repeat with req/s and p99 in its four runs')
  t.equal(ratio.median, (1570 / 1990 + 1620 / 2020) / 2)
  t.same(ratio.spread, [Math.min(...every), Math.max(...every)])
  t.same(ratio.interval, { low: 1500 / 2000, high: 2010 / 1990, coverage: 1 - 2 / 64 }, 'six repeats: the smallest and largest, 96.9%')
  t.same(ratio.steady, { median: 1570 / 1990, kept: 3, dropped: 4, isDecided: true }, 'the earlier drop rule, for comparison: 3 kept, of both orders')
  const p99 = pairedRatio(pairs, 'oursMemory', 'bare', 'p99Ms')
  if (p99 === null) throw new Error('the pair is in the run')
  t.equal(p99.count, 6, 'p99 counts the repeats that req/s counts')
  t.equal(p99.median, 2)
  t.equal(pairedRatio(pairs, 'oursNearCache', 'bare'), null, 'no such pair in the run')
  t.equal(pairedRatio(undefined, 'oursMemory', 'bare'), null, 'a run from before paired measurements')
})

test('bench report: the interval of a median is distribution-free: the nearest ranks that cover at least 95%', async (t) => {
  const { medianInterval } = await loadReport()
  const ranks = (n: number) => Array.from({ length: n }, (_, i) => n - i) // n..1, unsorted on purpose
  const sixteen = medianInterval(ranks(16))
  t.equal(sixteen?.low, 4)
  t.equal(sixteen?.high, 13)
  // 1 - 2 P(B <= 3), B ~ Binomial(16, 1/2): (1 + 16 + 120 + 560) / 65536 below each end.
  t.ok(Math.abs((sixteen?.coverage ?? 0) - (1 - 2 * 697 / 65536)) < 1e-12, `coverage ${sixteen?.coverage}`)
  const twentyFour = medianInterval(ranks(24))
  t.same([twentyFour?.low, twentyFour?.high], [7, 18], '24 repeats (the default): ranks 7 and 18')
  t.ok((twentyFour?.coverage ?? 0) >= 0.95 && (twentyFour?.coverage ?? 1) < 0.99)
  t.same(medianInterval(ranks(6)), { low: 1, high: 6, coverage: 1 - 2 / 64 })
  t.equal(medianInterval(ranks(5)), null, 'five values cannot cover 95%: 1 - 2/32 = 93.75%')
  t.equal(medianInterval([]), null)
  t.same(medianInterval([NaN, Infinity, -Infinity, ...ranks(6)]), { low: 1, high: 6, coverage: 1 - 2 / 64 }, 'values that are not finite are left out')
  // 1,100 values: 0.5 ** 1100 underflows to 0; in logs the ranks are the normal approximation's, about n/2 -+ 1.96 sqrt(n)/2 - 1.
  const large = medianInterval(ranks(1100))
  t.ok(large !== null && large.low >= 515 && large.low <= 519 && large.high === 1101 - large.low, `1,100 values: ranks ${large?.low} and ${large?.high}`)
  t.ok((large?.coverage ?? 1) >= 0.95 && (large?.coverage ?? 1) < 0.96)
  const half = medianInterval(ranks(16), 0.5)
  t.same([half?.low, half?.high], [7, 10], 'a lower level narrows it: ranks 7 and 10')
  t.ok(Math.abs((half?.coverage ?? 0) - (1 - 2 * (1 + 16 + 120 + 560 + 1820 + 4368 + 8008) / 65536)) < 1e-12, 'P(B <= 6) below each end')
})

test('bench report: a paired goal is met or not met by its median, inconclusive without an interval, and flagged when its target lies inside the interval', async (t) => {
  const { throughputGoals } = await loadReport()
  // n repeats of oursMemory / bare whose ratios are `ratios` (bare at 1000 req/s in both runs).
  const pair = (ratios: number[], variant = 'oursMemory', reference = 'bare') => ({
    variant,
    reference,
    repeats: ratios.map((r, i) => repeat([1000 * r, 1000 * r], [1000, 1000], { flipped: i % 2 === 1, variant, reference }))
  })
  // The goal `name` (variant/reference, '/p99' for the p99 goal) checked against a run with these pairs.
  const goals = (pairs: Pair[]) => ({
    get: (name: string) => {
      const goal = throughputGoals({ runs: [], pairs, settings: {} }).find((g) => `${g.key}/${g.reference}${g.field === 'p99Ms' ? '/p99' : ''}` === name)
      if (goal === undefined) throw new Error(`no goal ${name}`)
      return goal
    }
  })
  const wide = goals([pair([0.70, 0.72, 0.74, 0.76, 0.78, 0.81, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.94, 0.96, 0.98, 0.99])]).get('oursMemory/bare')
  t.equal(wide.isMet, true, 'median 0.85 >= 0.80')
  t.equal(wide.isInconclusive, false)
  t.equal(wide.isTargetInside, true, '0.80 lies between ranks 4 and 13 (0.76-0.94)')
  t.equal(wide.text, '0.85x bare (95% interval 0.76-0.94), 16 repeats 0.70-0.99')
  const below = goals([pair(Array.from({ length: 16 }, (_, i) => 0.70 + i * 0.004))]).get('oursMemory/bare')
  t.equal(below.isMet, false, 'median 0.73: not met')
  t.equal(below.isTargetInside, false, 'the whole interval is below 0.80')
  const few = goals([pair([0.9, 0.9, 0.9, 0.9, 0.9])]).get('oursMemory/bare')
  t.equal(few.isInconclusive, true, 'five repeats give no 95% interval')
  const none = goals([{ variant: 'oursMemory', reference: 'bare', repeats: [] }]).get('oursMemory/bare')
  t.equal(none.isMet, false)
  t.equal(none.isInconclusive, true, 'run but without a measured repeat: inconclusive, not "not measured"')
  t.equal(goals([]).get('oursMemory/bare').isMet, null, 'not in the run: not measured')
  // p99 is a ceiling: ours at 1.1x the floor's p99 is met.
  const floor = { variant: 'ours', reference: 'floor', repeats: Array.from({ length: 8 }, (_, i) => repeat([1000, 1000], [1000, 1000], { flipped: i % 2 === 1, variant: 'ours', reference: 'floor', p99: { a: 1.1, b: 1 } })) }
  const p99 = goals([floor]).get('ours/floor/p99')
  t.equal(p99.isMet, true)
  t.ok(Math.abs((p99.ratio.median ?? 0) - 1.1) < 1e-9)
  t.equal(goals([floor]).get('ours/floor').isMet, true, 'throughput 1.00x the floor >= 0.9')
  const slowTail = { ...floor, repeats: floor.repeats.map((r, i) => repeat([1000, 1000], [1000, 1000], { flipped: i % 2 === 1, variant: 'ours', reference: 'floor', p99: { a: 1.3, b: 1 } })) }
  t.equal(goals([slowTail]).get('ours/floor/p99').isMet, false, 'p99 at 1.3x the floor\'s: a ceiling of 1.2 not met')
  // On the target: met (>= and <=), and a target on an interval's end is inside it.
  const onTarget = goals([pair(Array.from({ length: 8 }, () => 0.8))]).get('oursMemory/bare')
  t.equal(onTarget.isMet, true, 'exactly 0.80: met')
  t.equal(onTarget.isTargetInside, true, 'an interval 0.80-0.80 holds 0.80')
  const atCeiling = goals([{ ...floor, repeats: floor.repeats.map((r, i) => repeat([1000, 1000], [1000, 1000], { flipped: i % 2 === 1, variant: 'ours', reference: 'floor', p99: { a: 1.2, b: 1 } })) }]).get('ours/floor/p99')
  t.equal(atCeiling.isMet, true, 'p99 exactly 1.2x: met')
})

test('bench report: a round is disturbed when a variant outruns bare Fastify; the opt-out route only when it leads by more than noise', async (t) => {
  const { disturbedRounds } = await loadReport()
  const run = (round: number, variant: string, reqPerSec: number, connections = 50) => ({ round, variant, connections, reqPerSec })
  const runs = [
    run(0, 'bare', 1000), run(0, 'oursOptOut', 1010), run(0, 'oursMemory', 800),
    run(1, 'bare', 1000), run(1, 'oursOptOut', 1020), run(1, 'oursNearCache', 1050),
    run(2, 'bare', 1000), run(2, 'oursMemory', 1100, 1),
    run(3, 'bare', 1000), run(3, 'oursOptOut', 1290)
  ]
  t.same(disturbedRounds(runs), [
    { round: 1, bare: 1000, faster: [['oursNearCache', 1050]] },
    { round: 3, bare: 1000, faster: [['oursOptOut', 1290]] }
  ], 'round 0: the opt-out route ahead within the rounds\' 10% noise; round 2: only at 1 connection, which the check ' +
    'does not read; round 3: the opt-out route 29% ahead, more than noise')
})

test('bench report: docs/benchmarks.md is what bench/report.mjs renders from bench/results/latest.json', async (t) => {
  const { renderMarkdown, readProfiles, readJson } = await loadReport()
  const results = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'bench', 'results', 'latest.json'), 'utf8')) as unknown
  const page = fs.readFileSync(path.join(__dirname, '..', 'docs', 'benchmarks.md'), 'utf8')
  t.equal(renderMarkdown(results, readProfiles(), readJson('client-decode.json')), page, 'run `node bench/report.mjs` after changing the report or the results')
})
