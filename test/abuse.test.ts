import { test } from 'tap'
import { DEFAULT_ABUSE_OPTIONS, InvalidTokenTracker, type AbuseOptions } from '../lib/security/abuse'

function clock (start = 1_000_000): { now: () => number, advance: (ms: number) => void } {
  let time = start
  return { now: () => time, advance: (ms) => { time += ms } }
}

function recordTimes (tracker: InvalidTokenTracker, ip: string, times: number): number {
  let crossings = 0
  for (let i = 0; i < times; i++) {
    if (tracker.record(ip).crossed) crossings++
  }
  return crossings
}

test('the defaults are 20 tokens per minute, reporting only, 10 000 clients', async (t) => {
  const tracker = new InvalidTokenTracker({})
  t.same(
    { threshold: tracker.threshold, windowMs: tracker.windowMs, blockMs: tracker.blockMs, maxTrackedClients: tracker.maxTrackedClients },
    DEFAULT_ABUSE_OPTIONS
  )
  t.same(DEFAULT_ABUSE_OPTIONS, { threshold: 20, windowMs: 60_000, blockMs: 0, maxTrackedClients: 10_000 })
  t.ok(Object.isFrozen(DEFAULT_ABUSE_OPTIONS))
  t.equal(new InvalidTokenTracker().threshold, 20, 'the options may be left out')
})

test('OWASP brute force detection: up to the threshold nothing fires', async (t) => {
  const time = clock()
  const tracker = new InvalidTokenTracker({ threshold: 5 }, time.now)
  for (let i = 1; i <= 5; i++) {
    t.same(tracker.record('203.0.113.7'), { count: i, crossed: false })
    time.advance(1000)
  }
  t.notOk(tracker.isBlocked('203.0.113.7'))
})

test('OWASP brute force detection: going past the threshold fires exactly once per window', async (t) => {
  const time = clock()
  const tracker = new InvalidTokenTracker({ threshold: 5 }, time.now)
  t.equal(recordTimes(tracker, '203.0.113.7', 5), 0)
  t.same(tracker.record('203.0.113.7'), { count: 6, crossed: true }, 'the sixth token crosses a threshold of 5')
  t.same(tracker.record('203.0.113.7'), { count: 7, crossed: false })
  t.equal(recordTimes(tracker, '203.0.113.7', 10_000), 0, 'a flood after the crossing reports nothing more')
  t.equal(tracker.record('203.0.113.7').count, 10_008, 'the count goes on')
})

test('clients are counted separately', async (t) => {
  const tracker = new InvalidTokenTracker({ threshold: 3 }, clock().now)
  t.equal(recordTimes(tracker, '203.0.113.7', 3), 0)
  t.equal(recordTimes(tracker, '2001:db8::1', 3), 0)
  t.same(tracker.record('203.0.113.7'), { count: 4, crossed: true })
  t.same(tracker.record('2001:db8::1'), { count: 4, crossed: true })
  t.equal(tracker.size, 2)
})

test('the window is fixed and starts at the first invalid token of the client', async (t) => {
  const time = clock()
  const tracker = new InvalidTokenTracker({ threshold: 3, windowMs: 10_000 }, time.now)
  tracker.record('203.0.113.7')
  time.advance(9_999)
  t.same(tracker.record('203.0.113.7'), { count: 2, crossed: false }, 'still the first window')
  time.advance(1)
  t.same(tracker.record('203.0.113.7'), { count: 1, crossed: false }, 'windowMs after the first token a new window starts')
  t.equal(recordTimes(tracker, '203.0.113.7', 2), 0)
  t.same(tracker.record('203.0.113.7'), { count: 4, crossed: true }, 'and can fire again')
})

test('a new window resets the count and fires again', async (t) => {
  const time = clock()
  const tracker = new InvalidTokenTracker({ threshold: 2, windowMs: 1_000 }, time.now)
  t.equal(recordTimes(tracker, '203.0.113.7', 50), 1)
  time.advance(1_000)
  t.equal(recordTimes(tracker, '203.0.113.7', 50), 1)
  time.advance(5_000)
  t.same(tracker.record('203.0.113.7'), { count: 1, crossed: false })
})

test('OWASP brute force detection: a client past the threshold is blocked for blockMs, then unblocked', async (t) => {
  const time = clock()
  const tracker = new InvalidTokenTracker({ threshold: 3, windowMs: 10_000, blockMs: 30_000 }, time.now)
  recordTimes(tracker, '203.0.113.7', 3)
  t.notOk(tracker.isBlocked('203.0.113.7'), 'not before the crossing')
  time.advance(500)
  t.ok(tracker.record('203.0.113.7').crossed)
  t.ok(tracker.isBlocked('203.0.113.7'))
  t.notOk(tracker.isBlocked('198.51.100.1'), 'other clients are not blocked')
  time.advance(29_999)
  t.ok(tracker.isBlocked('203.0.113.7'), 'the block runs from the crossing, past the end of the window')
  time.advance(1)
  t.notOk(tracker.isBlocked('203.0.113.7'), 'blockMs after the crossing the block is over')
  t.equal(tracker.size, 0, 'an expired block whose window is over is dropped')
  t.same(tracker.record('203.0.113.7'), { count: 1, crossed: false }, 'and the client starts from scratch')
})

test('a block survives a new window and an expired block within a window keeps the count', async (t) => {
  const time = clock()
  const tracker = new InvalidTokenTracker({ threshold: 1, windowMs: 10_000, blockMs: 15_000 }, time.now)
  recordTimes(tracker, '203.0.113.7', 2)
  time.advance(12_000)
  t.same(tracker.record('203.0.113.7'), { count: 1, crossed: false }, 'a new window')
  t.ok(tracker.isBlocked('203.0.113.7'), 'the running block is kept')

  const short = new InvalidTokenTracker({ threshold: 1, windowMs: 10_000, blockMs: 1_000 }, time.now)
  recordTimes(short, '203.0.113.7', 2)
  time.advance(1_000)
  t.notOk(short.isBlocked('203.0.113.7'))
  t.equal(short.size, 1, 'the window is not over: the entry stays')
  t.same(short.record('203.0.113.7'), { count: 3, crossed: false }, 'no second event in the same window')
  t.notOk(short.isBlocked('203.0.113.7'))
})

test('blockMs 0 reports but never blocks', async (t) => {
  const time = clock()
  const tracker = new InvalidTokenTracker({ threshold: 1, blockMs: 0 }, time.now)
  t.equal(recordTimes(tracker, '203.0.113.7', 1000), 1)
  t.notOk(tracker.isBlocked('203.0.113.7'))
  t.notOk(tracker.isBlocked('198.51.100.1'))
})

test('OWASP brute force detection: 100 000 distinct addresses keep memory bounded by maxTrackedClients', async (t) => {
  const time = clock()
  const tracker = new InvalidTokenTracker({ threshold: 3, maxTrackedClients: 1_000 }, time.now)
  let largest = 0
  for (let i = 0; i < 100_000; i++) {
    tracker.record(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)
    if (tracker.size > largest) largest = tracker.size
  }
  t.equal(largest, 1_000)
  t.equal(tracker.size, 1_000)
  t.equal(tracker.record('10.1.134.159').count, 2, 'the newest addresses are still counted (i = 99 999)')
  t.equal(tracker.record('10.0.0.0').count, 1, 'the oldest ones were evicted')
})

test('eviction takes the entry whose window is oldest', async (t) => {
  const time = clock()
  const tracker = new InvalidTokenTracker({ threshold: 10, windowMs: 1_000, maxTrackedClients: 2 }, time.now)
  tracker.record('a')
  time.advance(10)
  tracker.record('b')
  time.advance(1_000)
  tracker.record('a')
  tracker.record('a')
  t.equal(tracker.size, 2)
  tracker.record('c')
  t.equal(tracker.size, 2)
  t.equal(tracker.record('a').count, 3, 'a opened a new window after b: b went first')
  t.equal(tracker.record('b').count, 1)
})

test('invalid options throw FST_SESSION_INVALID_OPTION naming the option', async (t) => {
  const invalid: Array<[keyof AbuseOptions, unknown]> = [
    ['threshold', 0],
    ['threshold', -1],
    ['threshold', 1.5],
    ['threshold', Number.NaN],
    ['threshold', '20'],
    ['windowMs', 0],
    ['windowMs', Number.POSITIVE_INFINITY],
    ['blockMs', -1],
    ['blockMs', 0.5],
    ['maxTrackedClients', 0],
    ['maxTrackedClients', 2 ** 53]
  ]
  for (const [name, value] of invalid) {
    t.throws(
      () => new InvalidTokenTracker({ [name]: value }),
      { code: 'FST_SESSION_INVALID_OPTION', message: new RegExp(`^fastify-distributed-session: option "${name}" must be`) },
      `${name} = ${String(value)}`
    )
  }
  t.throws(() => new InvalidTokenTracker({ threshold: '20' as unknown as number }), { message: 'got "20"' })
  t.doesNotThrow(() => new InvalidTokenTracker({ threshold: 1, windowMs: 1, blockMs: 0, maxTrackedClients: 1 }))
})
