import { test } from 'tap'
import { Redis } from 'ioredis'
import { SessionManager } from '../lib/core/manager'
import { userOnTag } from './helpers/tags'
import { formatToken, hashSecret, newSecret, randomId, SESSION_ID_LENGTH, shardTag } from '../lib/core/token'
import { RedisStore } from '../lib/store/redis/store'
import { startRedis } from './helpers/redis'
import { storeContract } from './helpers/contract'
import { commandsProcessed, dumpRedis } from './helpers/redis-inspect'

test('store contract: Redis', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  let n = 0
  storeContract(t, {
    make: async () => new RedisStore({ client, prefix: `c${n++}:` }),
    dump: () => dumpRedis(client),
    commandCount: () => commandsProcessed(client)
  })
})

test('the fleet-wide lock: held by one owner until its TTL runs out, released only by that owner', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const a = new RedisStore({ client, prefix: 'lock:' })
  const b = new RedisStore({ client, prefix: 'lock:' })
  t.equal(await a.tryLock('cleanup', 'owner-a', 60_000), true, 'a free lock is taken')
  t.equal(await b.tryLock('cleanup', 'owner-b', 60_000), false, 'another owner is kept out')
  t.equal(await a.tryLock('cleanup', 'owner-a', 60_000), true, 'its owner still holds it')
  t.equal(await b.release('cleanup', 'owner-b'), false, 'another owner cannot release it')
  t.equal(await client.get('lock:lock:cleanup'), 'owner-a')
  t.equal(await a.release('cleanup', 'owner-a'), true)
  t.equal(await client.exists('lock:lock:cleanup'), 0, 'released by compare-and-delete')
  t.equal(await b.tryLock('cleanup', 'owner-b', 50), true, 'then free for the next owner')
  const ttl = await client.pttl('lock:lock:cleanup')
  t.ok(ttl > 0 && ttl <= 50, 'with the TTL it was taken for')
})

test('cleanup counts every session it expires, also those of a user sharing the shard that a small batch reaches through the user index', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  let clock = Date.UTC(2026, 0, 1)
  const manager = new SessionManager({ store: new RedisStore({ client, prefix: 'sh:' }), idleTimeout: '10m', now: () => clock })
  // Two users on one shard tag: a batch of 3 due entries holds sessions of both, and each user's other sessions
  // (beyond the batch) are expired through the user index in the same script.
  const [ann, bob] = [userOnTag('Sh', 'ann'), userOnTag('Sh', 'bob')]
  const created = []
  for (let n = 0; n < 4; n++) {
    created.push(await manager.create(ann))
    created.push(await manager.create(bob))
  }
  t.same(new Set(created.map((c) => c.session.id.slice(0, 2))), new Set(['Sh']), 'both users on one shard')
  clock += 11 * 60_000
  const expired: string[] = []
  manager.on('audit', (event) => { if (event.type === 'expired') expired.push(event.sessionId) })
  const result = await manager.cleanup(3)
  t.equal(result.expired, 8, 'every expired session counted')
  t.same(new Set(expired), new Set(created.map((c) => c.session.id)), 'and audited once each')
  t.equal(expired.length, 8)
})

/**
 * Plants a session exactly as 0.1.0 wrote it for `userId` on the random shard tag `tag`: the record, the user's index,
 * the shard's expiry-queue entry (CREATE) and the user's tag key `P t:<uid>` (RESOLVE_TAG). Returns its token.
 */
async function plantV010Session (client: Redis, prefix: string, userId: string, tag: string, now: number): Promise<{ token: string, sessionId: string }> {
  const secret = newSecret()
  const sessionId = tag + randomId(SESSION_ID_LENGTH - tag.length)
  const idle = 30 * 60_000
  const absolute = 86_400_000
  const record = { a: now + absolute, c: now, u: userId, g: 'UA/0.1.0', f: '', i: '192.0.2.1', h: hashSecret(secret), l: now, s: 0 }
  await client.set(`${prefix}{${tag}}:s:${sessionId}`, JSON.stringify(record), 'PX', idle + 86_400_000)
  await client.zadd(`${prefix}{${tag}}:u:${userId}`, now, sessionId)
  await client.pexpire(`${prefix}{${tag}}:u:${userId}`, absolute)
  await client.zadd(`${prefix}{${tag}}:x`, now + idle, sessionId + userId)
  await client.set(`${prefix}t:${userId}`, tag, 'PX', 2 * absolute + 60_000)
  return { token: formatToken(sessionId, secret), sessionId }
}

test("upgrade from 0.1.0: a session under the user's old random tag keeps working by its token and expires, but is not listed or counted", async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  let clock = Date.UTC(2026, 0, 1)
  const prefix = 'up:'
  const manager = new SessionManager({ store: new RedisStore({ client, prefix }), idleTimeout: '30m', absoluteTimeout: '24h', maxSessionsPerUser: 1, now: () => clock })
  const userId = 'olga'
  const oldTag = shardTag(userId) === 'Ol' ? 'Om' : 'Ol'
  const first = await plantV010Session(client, prefix, userId, oldTag, clock)
  const second = await plantV010Session(client, prefix, userId, oldTag, clock)

  t.equal((await manager.get(first.token))?.userId, userId, 'it authenticates: the tag is in its session id')
  clock += 10 * 60_000
  t.ok(await manager.get(first.token), 'and is touched on its old shard')
  t.same(await manager.list(userId), [], "it is not in the user's list: the index it is filed in is under the old tag")
  const fresh = await manager.create(userId)
  t.same(fresh.evicted, [], 'nor counted by the session limit (1): a new login evicts nothing')
  t.ok(await manager.get(first.token), 'and the old session still works')
  t.same((await manager.list(userId)).map((session) => session.id), [fresh.session.id], 'only the new session is listed')
  t.equal(await manager.invalidateAll(userId), 1, '"sign out everywhere" reaches only the sessions under the hashed tag')
  t.ok(await manager.get(first.token), 'the 0.1.0 session outlives it')
  t.equal(await manager.invalidate(first.sessionId), true, 'ending it by its session id works (the tag is in the id)')
  t.equal(await manager.get(first.token), null)

  clock += 31 * 60_000
  const cleaned = await manager.cleanup()
  t.equal(cleaned.expired, 1, "the other one expires by its idle timeout, through its old shard's expiry queue")
  t.equal(await manager.get(second.token), null)
  t.equal(await client.zcard(`${prefix}{${oldTag}}:u:${userId}`), 0, 'and leaves the old index')
  t.equal(await client.get(`${prefix}t:${userId}`), oldTag, 'the 0.1.0 tag key is left alone: nothing reads it, it expires by its TTL')
})

test('every operation addressed by user id is one script call, from an instance that has never seen the user', async (t) => {
  const server = await startRedis(t)
  const warm = new Redis(server.url)
  const client = new Redis(server.url)
  t.teardown(() => { warm.disconnect(); client.disconnect() })
  // Loads every script into Redis' script cache, so the counted calls are EVALSHAs that need no EVAL fallback.
  const warmManager = new SessionManager({ store: new RedisStore({ client: warm, prefix: 'rt:' }) })
  const warmed = await warmManager.create('someone-else')
  await warmManager.list('someone-else')
  await warmManager.recordSecurityEvent('someone-else', warmed.session.id, { rule: 'warm' })
  await warmManager.auditLog('someone-else')
  await warmManager.invalidateAll('someone-else')
  await client.ping()
  const sent: string[] = []
  const send = client.sendCommand.bind(client)
  client.sendCommand = ((command: { name: string }) => { sent.push(command.name); return send(command as never) }) as typeof client.sendCommand
  const manager = new SessionManager({ store: new RedisStore({ client, prefix: 'rt:' }) })
  const count = async (operation: () => Promise<unknown>): Promise<string[]> => {
    sent.length = 0
    await operation()
    return [...sent]
  }
  const user = 'fresh-user'
  t.same(await count(() => manager.create(user)), ['evalsha'], 'create')
  t.same(await count(() => manager.list(user)), ['evalsha'], 'list')
  t.same(await count(() => manager.recordSecurityEvent(user, '', { rule: 'x' })), ['evalsha'], 'a security event')
  t.same(await count(() => manager.auditLog(user)), ['evalsha'], 'the audit log')
  t.same(await count(() => manager.invalidateAll(user)), ['evalsha'], 'invalidateAll')
  t.same(await count(() => manager.list('never-seen')), ['evalsha'], 'list of a user who has no session')
  t.same(await client.keys('rt:t:*'), [], 'no tag key is written')
})
