import { Cluster, Redis } from 'ioredis'
import { test } from 'tap'
import { SessionManager } from '../lib/core/manager'
import { browserFamily, deviceKey, ipNetwork, MAX_KNOWN_DEVICES } from '../lib/security/stepup'
import { RedisStore } from '../lib/store/redis/store'
import { shardTag } from '../lib/core/token'
import { startRedis, startRedisCluster } from './helpers/redis'

const DAY = 86_400_000
const CHROME = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36'

test('a device is its browser family and IP network: browser updates and a new address in the same network are the same device', async (t) => {
  t.equal(browserFamily(CHROME), 'chrome/linux')
  t.equal(browserFamily('Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1'), 'safari/ios')
  t.equal(browserFamily('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36 Edg/130.0'), 'edge/windows')
  t.equal(browserFamily('Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:120.0) Gecko/20100101 Firefox/120.0'), 'firefox/macos')
  t.equal(browserFamily(''), 'other/other')
  t.equal(ipNetwork('203.0.113.7'), '203.0.113.0/24')
  t.equal(ipNetwork('::ffff:203.0.113.7'), '203.0.113.0/24')
  t.equal(ipNetwork('2001:db8:1:2::5'), '2001:db8:1::/48')
  t.equal(ipNetwork('2001:db8::1'), '2001:db8:0::/48')
  t.equal(ipNetwork(''), '')
  t.equal(deviceKey(CHROME, '203.0.113.7'), deviceKey(CHROME.replace('130.0', '131.0'), '203.0.113.99'))
  t.not(deviceKey(CHROME, '203.0.113.7'), deviceKey(CHROME, '203.0.114.7'))
  t.match(deviceKey(CHROME, '203.0.113.7'), /^[A-Za-z0-9_-]{16}$/, 'a hash: no address or header is stored')
})

test('known devices on Redis: members of the user\'s index (no key of their own), capped, the index kept for the window; a damaged index is replaced', async (t) => {
  const server = await startRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.quit())
  const clock = { now: Date.now() }
  const m = new SessionManager({ store: new RedisStore({ client, prefix: 'k:' }), now: () => clock.now, maxSessionsPerUser: 100, security: { knownDevices: '90d', rapidCreationWindow: 0 } })
  for (let n = 0; n < 30; n++) await m.create('ann', { ipAddress: `10.${n}.0.1`, userAgent: CHROME })
  const key = `k:{${shardTag('ann')}}:u:ann`
  t.same((await client.keys('k:*:ann')).sort(), [key, `k:{${shardTag('ann')}}:a2:u:ann`].sort(), 'no devices key: the index (and the audit timeline)')
  const members = await client.zrange(key, '0', '-1')
  const devices = members.filter((member) => member.startsWith('~'))
  t.equal(devices.length, MAX_KNOWN_DEVICES, 'at most MAX_KNOWN_DEVICES devices')
  t.equal(members.length - devices.length, 30, 'next to the 30 sessions')
  t.ok(devices.includes(`~${deviceKey(CHROME, '10.29.0.1')}`) && !devices.includes(`~${deviceKey(CHROME, '10.0.0.1')}`), 'the least recently seen went first')
  t.equal((await m.list('ann')).length, 30, 'a device is never listed as a session')
  const pttl = await client.pttl(key)
  t.ok(pttl > 89 * DAY && pttl <= 90 * DAY, `the index lives for the window after the last login: PTTL ${pttl}`)
  const bytes = Number(await client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'))
  t.comment(`MEMORY USAGE of a user's index with 30 sessions and ${MAX_KNOWN_DEVICES} devices: ${bytes} B`)
  t.ok(bytes < 4096, `${bytes} bytes`)
  t.notMatch(JSON.stringify(devices), /10\./, 'no address is stored')
  t.equal((await m.create('ann', { ipAddress: '10.29.0.2', userAgent: CHROME })).newDevice, false, 'a known device')
  t.equal((await m.create('ann', { ipAddress: '10.0.0.1', userAgent: CHROME })).newDevice, true, 'one dropped by the cap is new again')

  await client.set(key, 'damaged')
  t.equal((await m.create('ann', { ipAddress: '10.200.0.1', userAgent: CHROME })).newDevice, false, 'a damaged index is replaced: the device is the first again')
  t.equal(await client.type(key), 'zset')
  clock.now += 91 * DAY
  t.equal((await m.create('ann', { ipAddress: '10.201.0.1', userAgent: CHROME })).newDevice, false, 'after the window no device is known: none is new')
  t.same((await client.zrange(key, '0', '-1')).filter((member) => member.startsWith('~')), [`~${deviceKey(CHROME, '10.201.0.1')}`], 'the expired ones are gone')
})

test('known devices and ended sessions on Redis Cluster: every new key lives in the user\'s slot', async (t) => {
  const cluster = await startRedisCluster(t)
  const client = new Cluster(cluster.startupNodes)
  t.teardown(() => client.quit())
  await client.ping()
  const m = new SessionManager({ store: new RedisStore({ client, prefix: 'cl:' }), security: { rapidCreationWindow: 0 } })
  const users = Array.from({ length: 8 }, (_, n) => `user${n}`)
  for (const user of users) {
    const first = await m.create(user, { ipAddress: '203.0.113.7', userAgent: CHROME })
    const second = await m.create(user, { ipAddress: '198.51.100.23', userAgent: 'Firefox/120' })
    t.equal(second.newDevice, true, `${user}: a new device on the cluster`)
    await m.invalidate(first.session.id)
    t.match(await m.resolve(first.token), { ended: { reason: 'signed_out' } })
    t.equal(await m.reportUnrecognized(second.session.id, { userId: user }), 1)
    t.match(await m.resolve(second.token), { ended: { reason: 'unrecognized' } })
  }
})
