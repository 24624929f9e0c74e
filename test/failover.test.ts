import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'tap'
import { Cluster } from 'ioredis'
import { sessionKey } from '../lib/store/redis/keys'
import { buildApp, BROWSER, login } from './helpers/app'
import { startRedisCluster } from './helpers/redis'

const STORE_TIMEOUT_MS = 1000
const REQUEST_EVERY_MS = 25
const RECOVERY_BOUND_MS = 15_000
const SETTLE_REQUESTS = 40

/** The port of the master serving `slot`, as a live node sees it. */
async function slotOwner (client: Cluster, slot: number): Promise<number | undefined> {
  const ranges = await client.cluster('SLOTS')
  return ranges.find(([first, last]) => slot >= first && slot <= last)?.[2]?.[1]
}

interface Sample { startedAt: number, endedAt: number, status: number }

test('a session survives the SIGKILL of its master: requests succeed again after the failover, no restart', async (t) => {
  const cluster = await startRedisCluster(t)
  // Default ioredis Cluster options: what a user gets without tuning.
  const client = new Cluster(cluster.startupNodes)
  client.on('error', () => {})
  // quit() would wait for the dead node; the test is over, drop every connection.
  t.teardown(() => client.disconnect())
  await client.ping()
  const app = await buildApp(t, { redis: client, storeTimeout: STORE_TIMEOUT_MS })
  const storeErrors: string[] = []
  app.sessions.on('storeError', (error: Error) => storeErrors.push(error.message))

  const { token, sessionId } = await login(app, 'alice')
  const slot = await client.cluster('KEYSLOT', sessionKey('sess:', sessionId)) as number
  const port = await slotOwner(client, slot)
  const master = cluster.nodes.find((node) => node.port === port)
  const connection = client.nodes('master').find((node) => node.options.port === port)
  if (master === undefined || connection === undefined) throw new Error(`no master found for slot ${slot}`)
  // WAIT on the connection that wrote the session: the write is on a replica before the master dies.
  t.equal(await connection.wait(1, 5000), 1, 'the session is acknowledged by the replica')

  const samples: Sample[] = []
  const stopFlow = new AbortController()
  const inFlight = new Set<Promise<void>>()
  const flow = (async () => {
    while (!stopFlow.signal.aborted) {
      const startedAt = Date.now()
      const request = app.inject({ url: '/orders', headers: { ...BROWSER, 'x-session-id': token } }).then((response) => {
        samples.push({ startedAt, endedAt: Date.now(), status: response.statusCode })
      })
      inFlight.add(request)
      request.finally(() => inFlight.delete(request)).catch(() => {})
      // Real traffic against a real Cluster while a master dies: requests are spread over real time.
      await sleep(REQUEST_EVERY_MS)
    }
    await Promise.all(inFlight)
  })()

  // Real traffic before the kill, so the failover hits requests in flight.
  await sleep(300)
  t.ok(samples.length > 0 && samples.every((s) => s.status === 200), `requests flow before the kill (${samples.length})`)
  const killedAt = Date.now()
  master.kill('SIGKILL')

  let promotedAt: number | null = null
  let recoveredAt: number | null = null
  while (Date.now() - killedAt < RECOVERY_BOUND_MS && (recoveredAt === null || promotedAt === null)) {
    if (promotedAt === null) {
      const owner = await slotOwner(client, slot).catch(() => port)
      if (owner !== undefined && owner !== port) promotedAt = Date.now()
    }
    const ok = samples.find((s) => s.startedAt > killedAt && s.status === 200)
    if (ok !== undefined) recoveredAt = ok.endedAt
    // The Cluster's failover runs on real time (cluster-node-timeout): poll for the first success.
    await sleep(50)
  }
  // A settled run after the recovery: every request started after the first success must succeed.
  const startedAfterRecovery = () => samples.filter((s) => recoveredAt !== null && s.startedAt >= recoveredAt).length
  while (startedAfterRecovery() < SETTLE_REQUESTS && Date.now() - killedAt < RECOVERY_BOUND_MS + 5000) await sleep(50) // real failover: wait for the settle requests
  stopFlow.abort()
  await flow

  t.not(promotedAt, null, 'the replica was promoted')
  t.not(recoveredAt, null, `requests succeed again within ${RECOVERY_BOUND_MS} ms`)
  const recoveryMs = (recoveredAt ?? Infinity) - killedAt
  const promotionMs = (promotedAt ?? Infinity) - killedAt
  const during = samples.filter((s) => s.startedAt > killedAt && s.endedAt <= (recoveredAt ?? Infinity))
  const after = samples.filter((s) => recoveredAt !== null && s.startedAt >= recoveredAt)
  t.ok(recoveryMs < RECOVERY_BOUND_MS, `recovered ${recoveryMs} ms after the kill (promotion seen after ${promotionMs} ms)`)
  t.ok(samples.every((s) => s.status === 200 || s.status === 503), 'every answer is 200 or 503, never a 500 or a 401')
  t.ok(during.every((s) => s.endedAt - s.startedAt <= STORE_TIMEOUT_MS + 1000), 'during the outage every request is answered within storeTimeout (+1 s)')
  t.ok(after.length >= SETTLE_REQUESTS && after.every((s) => s.status === 200),
    `all ${after.length} requests after the recovery succeed (${after.filter((s) => s.status !== 200).map((s) => `${s.status} at +${s.startedAt - killedAt} ms`).join(', ')})`)
  t.comment(`failover: promotion seen ${promotionMs} ms, first success ${recoveryMs} ms after SIGKILL; ` +
    `${during.filter((s) => s.status === 503).length} requests answered 503 meanwhile; ${storeErrors.length} storeError events`)

  const fresh = await login(app, 'bob')
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': fresh.token } })).json().userId, 'bob', 'a new login works')
  const listed = await app.inject({ url: '/sessions', headers: { 'x-session-id': token } })
  t.same(listed.json().sessions.map((s: { id: string }) => s.id), [sessionId], 'the survivor is listed')
  t.equal((await app.inject({ method: 'POST', url: '/logout', headers: { 'x-session-id': token } })).statusCode, 200)
  t.equal((await app.inject({ url: '/profile', headers: { 'x-session-id': token } })).statusCode, 401, 'and can log out')
})
