import { test } from 'tap'

const loadReport = () => import('../bench/report.mjs')

// One paired repeat as bench/run.mjs records it: A B B A, or B A A B with `flipped`.
const repeat = (a: [number, number], b: [number, number], { flipped = false, p99 = { a: 2, b: 1 } as { a: number | null, b: number }, variant = 'oursMemory', reference = 'bare' } = {}) => {
  const A = (reqPerSec: number) => ({ variant, reqPerSec, p99Ms: p99.a })
  const B = (reqPerSec: number) => ({ variant: reference, reqPerSec, p99Ms: p99.b })
  return { slices: flipped ? [B(b[0]), A(a[0]), A(a[1]), B(b[1])] : [A(a[0]), B(b[0]), B(b[1]), A(a[1])] }
}

test('bench report: a paired goal is the median of per-repeat ratios of both runs, and a repeat that drifted is dropped', async (t) => {
  const { pairedRatio } = await loadReport()
  const pairs = [{
    variant: 'oursMemory',
    reference: 'bare',
    repeats: [
      repeat([800, 820], [1000, 1020]), // 1620 / 2020
      repeat([780, 790], [1000, 990], { flipped: true }), // 1570 / 1990
      repeat([900, 600], [1000, 1000]), // oursMemory's runs differ by a third: dropped
      repeat([800, 800], [1000, 700], { flipped: true }), // bare's runs differ by 30%: dropped
      repeat([700, 710], [900, 910]), // 1410 / 1810
      repeat([1000, 1010], [990, 1000], { flipped: true }), // steady, but faster than bare Fastify: dropped
      repeat([700, 700], [900, 900], { p99: { a: null, b: 1 } }) // no p99 on one side: dropped (for every field)
    ]
  }]
  const ratio = pairedRatio(pairs, 'oursMemory', 'bare')
  if (ratio === null) throw new Error('the pair is in the run')
  t.equal(ratio.kept, 3)
  t.equal(ratio.dropped, 4)
  t.equal(ratio.bothOrders, true)
  t.equal(ratio.median, 1570 / 1990)
  t.same(ratio.spread, [1410 / 1810, 1620 / 2020])
  // Every measured repeat, none dropped: the six with p99 on both sides (the drifting and the outrunning ones too).
  t.equal(ratio.every.count, 6)
  t.equal(ratio.every.median, (1570 / 1990 + 1620 / 2020) / 2)
  t.same(ratio.every.middle, [1410 / 1810, 1600 / 1700], 'the nearest ranks of the lower and upper quartile')
  const p99 = pairedRatio(pairs, 'oursMemory', 'bare', 'p99Ms')
  if (p99 === null) throw new Error('the pair is in the run')
  t.equal(p99.kept, 3, 'p99 keeps the repeats that req/s keeps')
  t.equal(p99.median, 2)
  t.equal(pairedRatio(pairs, 'oursNearCache', 'bare'), null, 'no such pair in the run')
  t.equal(pairedRatio(undefined, 'oursMemory', 'bare'), null, 'a run from before paired measurements')
})

test('bench report: bare Fastify bounds every variant, the floor does not (batched writes can outrun it), and kept repeats of one order only are flagged', async (t) => {
  const { pairedRatio } = await loadReport()
  const floorPairs = [{
    variant: 'ours',
    reference: 'floor',
    repeats: [1, 2, 3].map(() => repeat([1290, 1290], [1000, 1000], { variant: 'ours', reference: 'floor' }))
  }]
  const ahead = pairedRatio(floorPairs, 'ours', 'floor')
  t.equal(ahead?.kept, 3, 'this package may outrun the floor: every repeat kept')
  t.equal(ahead?.median, 1.29)
  const bareAhead = pairedRatio([{ variant: 'oursMemory', reference: 'bare', repeats: [1, 2, 3].map(() => repeat([1290, 1290], [1000, 1000])) }], 'oursMemory', 'bare')
  t.equal(bareAhead?.kept, 0, 'nothing outruns bare Fastify: every such repeat dropped')
  t.equal(bareAhead?.median, null)
  const oneOrder = pairedRatio([{ variant: 'oursMemory', reference: 'bare', repeats: [1, 2, 3].map(() => repeat([700, 700], [720, 720])) }], 'oursMemory', 'bare')
  t.equal(oneOrder?.kept, 3)
  t.equal(oneOrder?.bothOrders, false, 'a slowdown tied to the middle runs biases one order: not enough to decide')
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
  ], 'round 0: the opt-out route ahead within the paired runs\' 10% spread; round 2: only at 1 connection, which the check ' +
    'does not read; round 3: the opt-out route 29% ahead, more than noise')
})
