// Types of the capacity model (bench/capacity/model.mjs) for test/capacity.test.ts.
export interface OperationUnit { redisCpuUs: number, roundTrips: number, nodeCpuUs?: number }
export interface Units {
  generatedAt?: string
  command?: string
  machine?: Record<string, unknown>
  settings?: Record<string, unknown>
  ops: Record<string, OperationUnit>
  cleanup?: { perExpired: OperationUnit, idleRun: { redisCpuUs: number, roundTrips: number }, expiredPerSecond: number }
  memory: Record<string, number | unknown>
  node?: { cpuUsPerRequest: number, source?: string }
  /** The Cluster near cache: Redis CPU per write and listening app instance (broadcast tracking). */
  nearCacheBroadcast?: { redisCpuUsPerWritePerInstance: number, [field: string]: unknown }
}
export type PlanInput = { users: number } & Partial<Omit<typeof DEFAULTS, 'auditEventsPerUser' | 'nodeUsPerRequest'>> & {
  auditEventsPerUser?: number | null
  nodeUsPerRequest?: number | null
}
export interface OperationPlan { perSecond: number, redisCpuUsEach: number, roundTripsEach: number, redisCpuUsPerS: number, share: number }
export interface Plan {
  params: Record<string, number | null>
  rates: {
    request: number,
    requestTouch: number,
    nearCacheHit: number,
    login: number,
    loginEvict: number,
    logout: number,
    list: number,
    revokeAll: number,
    auditQuery: number,
    cleanup: number,
    logoutsPerS: number,
    expiredPerS: number,
    endedPerS: number
  }
  operations: Record<string, OperationPlan>
  redis: { cpuUsPerS: number, roundTripsPerS: number, cores: number, mastersForCpu: number, mastersForMemory: number, masters: number, isCluster: boolean, replicas: number, memoryPerMasterBytes: number, busiestMasterShare: number, busiestMasterBytes: number, busiestMasterUtilization: number }
  memory: { sessionsBytes: number, auditBytes: number, tombstoneBytes: number, trackingBytes: number, sessions: number, tombstones: number, auditEventsPerUser: number, dataBytes: number, overheadBytes: number, headroomBytes: number, totalBytes: number }
  node: { usPerRequest: number, usPerS: number, cores: number, appInstances: number }
  cleanupPerHour: { expired: number, redisCpuSeconds: number, roundTrips: number, lockSeconds: number | null }
  auditPerHour: { events: number, bytesWritten: number, eventsPerUserKept: number }
}
export const OPERATIONS: string[]
export const DEFAULTS: Readonly<{
  sessionsPerUser: number,
  rps: number,
  loginsPerS: number,
  logoutShare: number,
  evictionShare: number,
  touchShare: number,
  nearCacheHitRatio: number,
  listsPerLogin: number,
  revokeAllsPerLogin: number,
  auditQueriesPerLogin: number,
  auditEventsPerUser: number | null,
  auditRetentionDays: number,
  auditCapPerUser: number,
  auditEventsPerSession: number,
  tombstoneHours: number,
  cleanupIntervalS: number,
  nearCacheEntries: number,
  targetUtilization: number,
  redisOverhead: number,
  headroom: number,
  maxMemoryPerMasterGiB: number,
  replicasPerMaster: number,
  coreSpeed: number,
  nodeCoresPerInstance: number,
  nodeUsPerRequest: number | null
}>
export function validateInput (input: PlanInput): Record<string, number | null>
export function plan (input: PlanInput, units: Units): Plan
export function saturationThroughput (mix: Record<string, number>, units: Units): number
export function predictedMemory (users: number, units: Units): number
