import type * as PromClient from 'prom-client'
import type { CleanupRunResult } from '../core/cleanup'
import { errors } from '../core/errors'
import type { AuditEvent, SessionManager } from '../core/manager'

/** Distinct values kept per label (`reason`, `rule`); later ones are counted as 'other', so free-text reasons cannot flood Prometheus. */
const MAX_REASONS = 50
const MAX_REASON_LENGTH = 64
const CLEANUP_BUCKETS_SECONDS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]

function loadPromClient (): typeof PromClient {
  try {
    return require('prom-client') as typeof PromClient
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') {
      throw new errors.INVALID_OPTION('"metrics" needs prom-client, which is not installed: npm install prom-client', { cause: error })
    }
    throw error
  }
}

/**
 * Registers the session metrics on a prom-client Registry and keeps them up to date from the manager's events.
 * Metrics already on the registry under the same names (another manager's) are shared, not registered twice.
 */
export function registerMetrics (registry: unknown, manager: SessionManager): void {
  const prom = loadPromClient()
  const target = registry as PromClient.Registry
  const counter = (name: string, help: string, labelNames: string[] = []): PromClient.Counter => {
    const existing = target.getSingleMetric(name)
    return existing === undefined
      ? new prom.Counter({ name, help, labelNames, registers: [target] })
      : existing as PromClient.Counter
  }

  const created = counter('fastify_session_created_total', 'Sessions created')
  const invalidated = counter('fastify_session_invalidated_total', 'Sessions ended by an invalidation, by reason', ['reason'])
  const evicted = counter('fastify_session_evicted_total', 'Sessions evicted by the per-user session limit')
  const expired = counter('fastify_session_expired_total', 'Sessions removed because they timed out')
  const suspicious = counter('fastify_session_suspicious_total', 'Security events by rule (suspicious_session, invalid_tokens, force_reauthentication, session_limit_eviction)', ['rule'])
  const storeErrors = counter('fastify_session_store_errors_total', 'Store calls of the request path that failed or timed out')
  const cleanupRuns = counter('fastify_session_cleanup_runs_total', 'Cleanup runs, by result (ok, skipped: another instance ran, error)', ['result'])
  const cleanupDuration = (target.getSingleMetric('fastify_session_cleanup_duration_seconds') as PromClient.Histogram | undefined) ??
    new prom.Histogram({
      name: 'fastify_session_cleanup_duration_seconds',
      help: 'Duration of the cleanup runs that were not skipped',
      buckets: CLEANUP_BUCKETS_SECONDS,
      registers: [target]
    })

  const boundedLabel = (): ((value: unknown) => string) => {
    const seen = new Set<string>()
    return (value) => {
      // 'force_reauthentication: <free text>' counts as 'force_reauthentication'.
      const label = (typeof value === 'string' ? value.split(':', 1)[0] as string : '').trim().slice(0, MAX_REASON_LENGTH) || 'unknown'
      if (seen.has(label)) return label
      if (seen.size >= MAX_REASONS) return 'other'
      seen.add(label)
      return label
    }
  }
  const reasonLabel = boundedLabel()
  const ruleLabel = boundedLabel()

  manager.on('audit', (event: AuditEvent) => {
    // invalidateAll writes one 'invalidated' event per session plus one 'all_user_sessions_invalidated' summary:
    // only the former is counted, so each session is counted once.
    if (event.type === 'created') created.inc()
    else if (event.type === 'invalidated') invalidated.inc({ reason: reasonLabel(event.data.reason) })
    else if (event.type === 'evicted') evicted.inc()
    else if (event.type === 'expired') expired.inc()
  })
  manager.on('security', (event: AuditEvent) => { suspicious.inc({ rule: ruleLabel(event.data.rule) }) })
  manager.on('storeError', () => { storeErrors.inc() })
  manager.on('cleanup', (result: CleanupRunResult) => {
    cleanupRuns.inc({ result: result.skipped ? 'skipped' : 'ok' })
    if (!result.skipped) cleanupDuration.observe(result.durationMs / 1000)
  })
  manager.on('cleanupError', () => { cleanupRuns.inc({ result: 'error' }) })
  if (manager.cacheStats() !== null) registerCacheMetrics(prom, target, manager)
}

/**
 * The near cache's reads, read from the store when Prometheus scrapes (nothing is counted twice on the request path):
 * hits and misses as counters, and the hit ratio since the start as a gauge.
 */
function registerCacheMetrics (prom: typeof PromClient, target: PromClient.Registry, manager: SessionManager): void {
  const names = ['fastify_session_near_cache_hits_total', 'fastify_session_near_cache_misses_total', 'fastify_session_near_cache_hit_ratio']
  // Another manager's metrics on the same registry already report a near cache: the first one keeps them.
  if (names.some((name) => target.getSingleMetric(name) !== undefined)) return
  const counted = { hits: 0, misses: 0 }
  const readStats = (field: 'hits' | 'misses', counter: PromClient.Counter): void => {
    const stats = manager.cacheStats()
    if (stats === null) return
    // A counter only grows: the difference since the last scrape.
    if (stats[field] > counted[field]) counter.inc(stats[field] - counted[field])
    counted[field] = stats[field]
  }
  const [hitsName, missesName, ratioName] = names as [string, string, string]
  const hits: PromClient.Counter = new prom.Counter({
    name: hitsName,
    help: 'Session reads answered by the near cache without a round trip',
    registers: [target],
    collect () { readStats('hits', hits) }
  })
  const misses: PromClient.Counter = new prom.Counter({
    name: missesName,
    help: 'Session reads the near cache sent to Redis',
    registers: [target],
    collect () { readStats('misses', misses) }
  })
  const ratio: PromClient.Gauge = new prom.Gauge({
    name: ratioName,
    help: 'Share of session reads answered by the near cache since the process started',
    registers: [target],
    collect () { ratio.set(manager.cacheStats()?.hitRatio ?? 0) }
  })
}
