import { test, type Test } from 'tap'
import { Redis } from 'ioredis'
import { shardTag } from '../lib/core/token'
import { SessionManager, type AuditEvent } from '../lib/core/manager'
import { RedisStore } from '../lib/store/redis/store'
import { EXPIRY_QUEUE_ENTRIES, shardKey } from '../lib/store/redis/keys'
import { startRedis } from './helpers/redis'
import { usersOnTag } from './helpers/tags'

const PREFIX = 'q:'
const MINUTE = 60_000
const SESSIONS = 2 * EXPIRY_QUEUE_ENTRIES + 44

/** `count` user ids on one shard tag (tags are a hash of the user id): one shard's expiry queue holds them all. */
function usersOnOneShard (count: number): { tag: string, users: string[] } {
  const tag = shardTag('q-0')
  return { tag, users: usersOnTag(tag, 'q', count) }
}

interface Shard {
  client: Redis
  manager: SessionManager
  clock: { now: number }
  tag: string
  users: string[]
  /** The user's session id and token, by user. */
  sessions: Map<string, { id: string, token: string }>
  audited: AuditEvent[]
  /** Sub-queue k's key. */
  queue: (k: number) => string
  /** Every sub-queue's members (session id + user id), by sub-queue. */
  members: () => Promise<string[][]>
}

async function shardWithSessions (t: Test, count = SESSIONS): Promise<Shard> {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const clock = { now: Date.now() }
  const manager = new SessionManager({ store: new RedisStore({ client, prefix: PREFIX }), now: () => clock.now, idleTimeout: 30 * MINUTE })
  const audited: AuditEvent[] = []
  manager.on('audit', (event) => audited.push(event))
  const { tag, users } = usersOnOneShard(count)
  const sessions = new Map<string, { id: string, token: string }>()
  for (const user of users) {
    const { token, session } = await manager.create(user)
    sessions.set(user, { id: session.id, token })
  }
  const queue = (k: number): string => shardKey(PREFIX, tag) + (k === 0 ? '' : String(k))
  const members = async (): Promise<string[][]> => {
    const found: string[][] = []
    for (let k = 0; k < 8; k++) found.push(await client.zrange(queue(k), '0', '-1'))
    return found
  }
  return { client, manager, clock, tag, users, sessions, audited, queue, members }
}

/** Where member `sid + uid` is: the sub-queue index, or -1. */
function subQueueOf (members: string[][], member: string): number {
  return members.findIndex((list) => list.includes(member))
}

test('one shard\'s expiry queue is split into sub-queues of at most 128 sessions, each kept by Redis as a listpack', async (t) => {
  const shard = await shardWithSessions(t)
  const { client, queue } = shard
  const members = await shard.members()
  t.same(members.map((list) => list.length), [128, 128, 44, 0, 0, 0, 0, 0], 'filled in order, 128 each')
  for (let k = 0; k < 3; k++) t.equal(await client.object('ENCODING', queue(k)), 'listpack', `sub-queue ${k} is a listpack`)
  t.equal(await client.get(`${queue(0)}n`), '3', 'the shard counts its sub-queues')
  const all = members.flat()
  t.equal(new Set(all).size, SESSIONS, 'each session is in one sub-queue, once')
  t.same([...all].sort(), [...shard.sessions].map(([user, s]) => s.id + user).sort(), 'and every session is there')
})

test('a logout removes a session from its own sub-queue; a touch moves its deadline there; a login fills the first sub-queue with room', async (t) => {
  const shard = await shardWithSessions(t)
  const { client, manager, clock } = shard
  const before = await shard.members()
  const inLast = shard.users.find((user) => subQueueOf(before, (shard.sessions.get(user)?.id ?? '') + user) === 2) as string
  const inFirst = shard.users.find((user) => subQueueOf(before, (shard.sessions.get(user)?.id ?? '') + user) === 0) as string
  const last = shard.sessions.get(inLast) as { id: string, token: string }
  const first = shard.sessions.get(inFirst) as { id: string, token: string }

  t.ok(await manager.invalidate(first.id), 'a logout')
  const afterLogout = await shard.members()
  t.equal(subQueueOf(afterLogout, first.id + inFirst), -1, 'its entry is gone')
  t.same(afterLogout.map((list) => list.length), [127, 128, 44, 0, 0, 0, 0, 0])

  // Sub-queue 0 has room now: the touch must still update the entry where it is, not add one there.
  clock.now += 2 * MINUTE
  t.ok(await manager.get(last.token), 'the touch is due and runs')
  t.equal(Number(await client.zscore(shard.queue(2), last.id + inLast)), clock.now + 30 * MINUTE, 'the deadline moved in sub-queue 2')
  t.same((await shard.members()).map((list) => list.length), [127, 128, 44, 0, 0, 0, 0, 0], 'no entry was added elsewhere')

  const newcomer = usersOnOneShard(SESSIONS + 1).users[SESSIONS] as string
  const created = await manager.create(newcomer)
  t.equal(subQueueOf(await shard.members(), created.session.id + newcomer), 0, 'the next login takes the room in sub-queue 0')
})

test('cleanup drains every sub-queue: each session is expired and audited once, and the shard is left with no queue key', async (t) => {
  const shard = await shardWithSessions(t)
  const { client, manager, clock } = shard
  clock.now += 31 * MINUTE
  const result = await manager.cleanup(50)
  t.same(result, { expired: SESSIONS, orphaned: 0 })
  const expired = shard.audited.filter((event) => event.type === 'expired')
  t.equal(expired.length, SESSIONS, 'one expired record per session')
  t.equal(new Set(expired.map((event) => event.sessionId)).size, SESSIONS, 'never twice for one session')
  t.same((await shard.members()).map((list) => list.length), [0, 0, 0, 0, 0, 0, 0, 0])
  t.equal(await client.exists(`${shard.queue(0)}n`), 0, 'the count key goes with the last sub-queue')
  t.same(await manager.cleanup(50), { expired: 0, orphaned: 0 }, 'a second run finds nothing')
})

test('sessions in a later sub-queue still expire when the earlier ones are empty, and the count shrinks to what is left', async (t) => {
  const shard = await shardWithSessions(t)
  const { client, manager, clock } = shard
  const members = await shard.members()
  // End every session of sub-queues 1 and 2 by logout: Redis deletes both emptied sorted sets.
  for (const [user, session] of shard.sessions) {
    if (subQueueOf(members, session.id + user) > 0) await manager.invalidate(session.id)
  }
  t.equal(await client.exists(shard.queue(1), shard.queue(2)), 0, 'the emptied sub-queues are gone')
  clock.now += 31 * MINUTE
  t.same(await manager.cleanup(), { expired: 128, orphaned: 0 })
  t.equal(await client.exists(`${shard.queue(0)}n`), 0)
})

test('a damaged sub-queue count is rebuilt from the sub-queues that exist, with a corrupt event, and nothing is lost', async (t) => {
  // 'deleted' and '2' (too small): the sub-queues beyond the count would never be drained, and a touch of a session in
  // one of them would file it a second time.
  for (const damage of ['garbage', '0', '99999', '-1', 'hash', 'deleted', '2']) {
    await t.test(damage, async (t) => {
      const shard = await shardWithSessions(t)
      const { client, manager, clock } = shard
      const countKey = `${shard.queue(0)}n`
      await client.del(countKey)
      if (damage === 'hash') await client.hset(countKey, 'f', 'v')
      else if (damage !== 'deleted') await client.set(countKey, damage)
      const newcomer = usersOnOneShard(SESSIONS + 1).users[SESSIONS] as string
      t.ok(await manager.create(newcomer), 'a login on the shard works')
      t.ok(shard.audited.some((event) => event.type === 'corrupt' && event.data.reason === 'queue'), 'the repair is reported')
      t.equal(await client.get(countKey), '3', 'the count is rebuilt')
      t.equal((await shard.members()).flat().length, SESSIONS + 1, 'every session is still queued')
      clock.now += 31 * MINUTE
      t.same(await manager.cleanup(), { expired: SESSIONS + 1, orphaned: 0 }, 'and every one expires')
    })
  }
})

test('a sub-queue of another type is deleted with a corrupt event; its sessions still end by their TTLs and their users\' scripts', async (t) => {
  const shard = await shardWithSessions(t)
  const { client, manager, clock } = shard
  const members = await shard.members()
  const lost = [...shard.sessions].filter(([user, session]) => subQueueOf(members, session.id + user) === 1)
  await client.del(shard.queue(1))
  await client.set(shard.queue(1), 'garbage')
  clock.now += 31 * MINUTE
  const result = await manager.cleanup()
  t.equal(result.expired, SESSIONS - lost.length, 'the other sub-queues are drained')
  t.ok(shard.audited.some((event) => event.type === 'corrupt' && event.data.reason === 'queue'), 'the repair is reported')
  t.equal(await client.exists(shard.queue(1)), 0, 'the damaged key is gone')
  const [user, session] = lost[0] as [string, { id: string, token: string }]
  t.equal(await manager.get(session.token), null, 'a session it listed is past its deadline all the same')
  t.same(await manager.list(user), [], 'and its user\'s index no longer lists it')
})

test('a login replayed after a lost reply (ioredis resends it on reconnect) files its session once', async (t) => {
  // 127 sessions: the first run of the create fills sub-queue 0, so a replay that did not look would open sub-queue 1.
  const shard = await shardWithSessions(t, EXPIRY_QUEUE_ENTRIES - 1)
  const { client, manager, clock } = shard
  const commands = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
  const create = commands.fdsess_create as (...args: unknown[]) => Promise<unknown>
  commands.fdsess_create = async function (this: unknown, ...args: unknown[]) {
    await create.apply(this, args)
    return await create.apply(this, args)
  }
  const newcomer = usersOnOneShard(EXPIRY_QUEUE_ENTRIES).users[EXPIRY_QUEUE_ENTRIES - 1] as string
  const created = await manager.create(newcomer)
  commands.fdsess_create = create
  const members = await shard.members()
  t.equal(members.flat().filter((member) => member === created.session.id + newcomer).length, 1, 'one entry')
  t.same(members.map((list) => list.length), [128, 0, 0, 0, 0, 0, 0, 0])
  clock.now += 31 * MINUTE
  t.same(await manager.cleanup(), { expired: EXPIRY_QUEUE_ENTRIES, orphaned: 0 })
  const expired = shard.audited.filter((event) => event.type === 'expired')
  t.equal(new Set(expired.map((event) => event.sessionId)).size, expired.length, 'no session is audited expired twice')
})

test('a second entry of an ended session (filed by an instance that predates the sub-queues) is dropped without a second audit', async (t) => {
  const shard = await shardWithSessions(t)
  const { client, manager, clock } = shard
  const members = await shard.members()
  const [user, session] = [...shard.sessions].find(([u, s]) => subQueueOf(members, s.id + u) === 1) as [string, { id: string, token: string }]
  // An instance of the build before the split touches the session: it knows only P{T}:x.
  await client.zadd(shard.queue(0), clock.now + 30 * MINUTE, session.id + user)
  clock.now += 31 * MINUTE
  const result = await manager.cleanup()
  t.same(result, { expired: SESSIONS, orphaned: 1 }, 'the leftover is counted as orphaned')
  t.equal(shard.audited.filter((event) => event.type === 'expired' && event.sessionId === session.id).length, 1, 'audited expired once')
  t.same((await shard.members()).flat(), [])
})

test('cleanup refuses a batch size that could never finish', async (t) => {
  const shard = await shardWithSessions(t, 1)
  for (const batchSize of [0, -1, 1.5, Number.NaN]) {
    await t.rejects(shard.manager.cleanup(batchSize), { code: 'FST_SESSION_INVALID_ARGUMENT' }, String(batchSize))
  }
})
