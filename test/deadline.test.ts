import { mock } from 'node:test'
import { test } from 'tap'
import { DeadlineQueue } from '../lib/plugin/deadline'

/** Node's mock timers for the queue's sweep interval, so a test moves time instead of sleeping. */
function mockInterval (t: { teardown (fn: () => void): void }): void {
  mock.timers.enable({ apis: ['setInterval'] })
  t.teardown(() => mock.timers.reset())
}

test('a call that settles in time settles as it would, and leaves no timer behind', async (t) => {
  mockInterval(t)
  const queue = new DeadlineQueue(200)
  t.equal(await queue.bound(Promise.resolve(42), () => new Error('timeout'), (e) => e), 42)
  await t.rejects(queue.bound(Promise.reject(new Error('boom')), () => new Error('timeout'), () => new Error('mapped')), { message: 'mapped' })
  t.equal(queue.size, 0, 'a settled call leaves the queue at once (nothing of it waits for its deadline)')
  t.ok(queue.isTicking, 'the timer waits for its next tick')
  // One sweep: the tick of a 200 ms queue is 200 / 8 = 25 ms.
  mock.timers.tick(25)
  t.notOk(queue.isTicking, 'the sweep finds nothing pending and stops the timer')
})

test('calls settling out of order leave the queue in any order; the pending ones still time out', async (t) => {
  mockInterval(t)
  const queue = new DeadlineQueue(100)
  const releases: Array<(value: number) => void> = []
  const bounded = Array.from({ length: 5 }, () => queue.bound(new Promise<number>((resolve) => { releases.push(resolve) }), () => new Error('timeout'), (e) => e))
  // The middle, the head and the tail settle; the second and the fourth stay pending.
  for (const n of [2, 0, 4]) releases[n]?.(n)
  t.same(await Promise.all([bounded[2], bounded[0], bounded[4]]), [2, 0, 4])
  t.equal(queue.size, 2)
  releases[3]?.(3)
  t.equal(await bounded[3], 3)
  t.equal(queue.size, 1)
  t.ok(queue.isTicking, 'one call is still pending')
})

test('a call that never settles is rejected after the timeout, within one tick', async (t) => {
  const queue = new DeadlineQueue(100)
  const started = Date.now()
  // "Within one tick" against a plain timer set for the timeout plus one tick (floor(100 / 8) = 12 ms) and a margin:
  // on a loaded machine both fire late, but the sweep due before it runs first, so the bound holds without a wall-clock
  // limit that load can break.
  let isReferenceFired = false
  const reference = setTimeout(() => { isReferenceFired = true }, 100 + 12 + 3)
  t.teardown(() => clearTimeout(reference))
  await t.rejects(queue.bound(new Promise(() => {}), () => new Error('timeout'), (e) => e), { message: 'timeout' })
  const elapsed = Date.now() - started
  t.ok(elapsed >= 95, `not before the timeout: rejected after ${elapsed} ms`)
  t.notOk(isReferenceFired, 'rejected before a timer set for the timeout plus one tick')
})

test('a late result after a timeout is ignored, and many calls keep their order', async (t) => {
  const queue = new DeadlineQueue(50)
  let release: (value: string) => void = () => {}
  const slow = new Promise<string>((resolve) => { release = resolve })
  const bounded = queue.bound(slow, () => new Error('timeout'), (e) => e)
  // The deadline itself is real time (performance.now, which mock timers do not move): 50 ms.
  await t.rejects(bounded, { message: 'timeout' })
  release('late')
  mockInterval(t)
  const fast = await Promise.all(Array.from({ length: 5000 }, (_, n) => queue.bound(Promise.resolve(n), () => new Error('timeout'), (e) => e)))
  t.equal(fast[4999], 4999)
  // One sweep: the tick of a 50 ms queue is floor(50 / 8) = 6 ms.
  mock.timers.tick(6)
  t.equal(queue.size, 0)
})

test('watch (callback style) calls exactly one of its callbacks, once: the value, the mapped error, or the timeout', async (t) => {
  const queue = new DeadlineQueue(50)
  const calls: string[] = []
  const record = (name: string) => (value: unknown) => { calls.push(`${name}:${value instanceof Error ? value.message : String(value)}`) }
  queue.watch(Promise.resolve('value'), () => new Error('timeout'), (e) => e, record('resolve'), record('reject'))
  queue.watch(Promise.reject(new Error('boom')), () => new Error('timeout'), () => new Error('mapped'), record('resolve'), record('reject'))
  // An error mapping that throws: the thrown error is the reason (it must not escape into an unhandled rejection).
  queue.watch(Promise.reject(new Error('boom')), () => new Error('timeout'), () => { throw new Error('mapping threw') }, record('resolve'), record('reject'))
  let release: (value: string) => void = () => {}
  queue.watch(new Promise<string>((resolve) => { release = resolve }), () => new Error('timeout'), (e) => e, record('resolve'), record('reject'))
  await new Promise((resolve) => setTimeout(resolve, 120))
  release('late')
  await new Promise((resolve) => setImmediate(resolve))
  t.same(calls, ['resolve:value', 'reject:mapped', 'reject:mapping threw', 'reject:timeout'], 'the late value after the timeout is ignored')
  t.equal(queue.size, 0)
})

test('a timeout callback that throws does not hold back the other due calls, and the throw is not swallowed', async (t) => {
  mockInterval(t)
  const queue = new DeadlineQueue(40)
  const rejected: string[] = []
  const never = new Promise<never>(() => {})
  queue.watch(never, () => new Error('timeout'), (e) => e, () => {}, () => { throw new Error('reply failed') })
  queue.watch(never, () => new Error('timeout'), (e) => e, () => {}, (reason) => { rejected.push((reason as Error).message) })
  // The deadline is real time (performance.now, which mock timers do not move); the sweep runs on the mocked interval.
  const started = performance.now()
  while (performance.now() - started < 45) await new Promise((resolve) => setImmediate(resolve))
  t.throws(() => { mock.timers.tick(5) }, { message: 'reply failed' }, 'thrown again from the sweep, once every due call is rejected')
  t.same(rejected, ['timeout'], 'the call behind the throwing one was rejected in the same sweep')
  t.equal(queue.size, 0)
})
