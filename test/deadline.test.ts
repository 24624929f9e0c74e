import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'tap'
import { DeadlineQueue } from '../lib/plugin/deadline'

test('a call that settles in time settles as it would, and leaves no timer behind', async (t) => {
  const queue = new DeadlineQueue(200)
  t.equal(await queue.bound(Promise.resolve(42), () => new Error('timeout'), (e) => e), 42)
  await t.rejects(queue.bound(Promise.reject(new Error('boom')), () => new Error('timeout'), () => new Error('mapped')), { message: 'mapped' })
  await sleep(60)
  t.equal(queue.size, 0, 'the queue empties and its timer stops')
})

test('a call that never settles is rejected after the timeout, within one tick', async (t) => {
  const queue = new DeadlineQueue(100)
  const started = Date.now()
  await t.rejects(queue.bound(new Promise(() => {}), () => new Error('timeout'), (e) => e), { message: 'timeout' })
  const elapsed = Date.now() - started
  t.ok(elapsed >= 95 && elapsed < 400, `rejected after ${elapsed} ms`)
})

test('a late result after a timeout is ignored, and many calls keep their order', async (t) => {
  const queue = new DeadlineQueue(50)
  let release: (value: string) => void = () => {}
  const slow = new Promise<string>((resolve) => { release = resolve })
  const bounded = queue.bound(slow, () => new Error('timeout'), (e) => e)
  await t.rejects(bounded, { message: 'timeout' })
  release('late')
  const fast = await Promise.all(Array.from({ length: 5000 }, (_, n) => queue.bound(Promise.resolve(n), () => new Error('timeout'), (e) => e)))
  t.equal(fast[4999], 4999)
  await sleep(100)
  t.equal(queue.size, 0)
})
