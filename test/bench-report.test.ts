import { test } from 'tap'

const loadReport = () => import('../bench/report.mjs')

// One paired repeat: the four runs of A B B A (or B A A B) as bench/run.mjs records them.
const repeat = (a: [number, number], b: [number, number], p99 = { a: 2, b: 1 }) => ({
  slices: [
    { variant: 'oursMemory', reqPerSec: a[0], p99Ms: p99.a },
    { variant: 'bare', reqPerSec: b[0], p99Ms: p99.b },
    { variant: 'bare', reqPerSec: b[1], p99Ms: p99.b },
    { variant: 'oursMemory', reqPerSec: a[1], p99Ms: p99.a }
  ]
})

test('bench report: a paired goal is the median of per-repeat ratios of both runs, and a repeat that drifted is dropped', async (t) => {
  const { pairedRatio } = await loadReport()
  const pairs = [{
    variant: 'oursMemory',
    reference: 'bare',
    repeats: [
      repeat([800, 820], [1000, 1020]), // 1620 / 2020
      repeat([780, 790], [1000, 990]), // 1570 / 1990
      repeat([900, 600], [1000, 1000]), // oursMemory's runs differ by a third: dropped
      repeat([800, 800], [1000, 700]), // bare's runs differ by 30%: dropped
      repeat([700, 710], [900, 910]), // 1410 / 1810
      repeat([1000, 1010], [990, 1000]) // steady, but faster than bare Fastify: dropped
    ]
  }]
  const ratio = pairedRatio(pairs, 'oursMemory', 'bare')
  if (ratio === null) throw new Error('the pair is in the run')
  t.equal(ratio.kept, 3)
  t.equal(ratio.dropped, 3)
  t.equal(ratio.median, 1570 / 1990)
  t.same(ratio.spread, [1410 / 1810, 1620 / 2020])
  const p99 = pairedRatio(pairs, 'oursMemory', 'bare', 'p99Ms')
  if (p99 === null) throw new Error('the pair is in the run')
  t.equal(p99.kept, 3, 'p99 keeps the repeats that req/s keeps')
  t.equal(p99.median, 2)
  t.equal(pairedRatio(pairs, 'oursNearCache', 'bare'), null, 'no such pair in the run')
  t.equal(pairedRatio(undefined, 'oursMemory', 'bare'), null, 'a run from before paired measurements')
})
