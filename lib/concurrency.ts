import type { ConcurrencyRules } from './store/types'

/**
 * The concurrent-session rules (OWASP Session Management Cheat Sheet, "simultaneous session logons").
 * A session is flagged when, among the user's OTHER live sessions:
 *  - there are more than `maxDistinctIps` distinct IP addresses,
 *  - there are more than `maxDistinctUserAgents` distinct user agents,
 *  - at least two exist and all were created within `rapidCreationWindowMs` of each other.
 * The Redis store evaluates the same rules in Lua (store/scripts.ts, applyFlags) and keeps the result on each
 * session, so the request path reads it for free.
 */
export const FLAG_DISTINCT_IPS = 1
export const FLAG_DISTINCT_USER_AGENTS = 2
export const FLAG_RAPID_CREATION = 4

export type ConcurrencyReason = 'distinct_ips' | 'distinct_user_agents' | 'rapid_creation'

export function flagReasons (flags: number): ConcurrencyReason[] {
  const reasons: ConcurrencyReason[] = []
  if ((flags & FLAG_DISTINCT_IPS) !== 0) reasons.push('distinct_ips')
  if ((flags & FLAG_DISTINCT_USER_AGENTS) !== 0) reasons.push('distinct_user_agents')
  if ((flags & FLAG_RAPID_CREATION) !== 0) reasons.push('rapid_creation')
  return reasons
}

export interface ConcurrencyInput {
  id: string
  ipAddress: string
  userAgent: string
  createdAt: number
}

/** The flags of `current` given all of the user's live sessions (which may include `current`). */
export function concurrencyFlags (currentId: string, sessions: readonly ConcurrencyInput[], rules: ConcurrencyRules): number {
  const ips = new Set<string>()
  const agents = new Set<string>()
  let others = 0
  let minCreated = Infinity
  let maxCreated = -Infinity
  for (const other of sessions) {
    if (other.id === currentId) continue
    others++
    if (other.ipAddress !== '') ips.add(other.ipAddress)
    if (other.userAgent !== '') agents.add(other.userAgent)
    if (other.createdAt < minCreated) minCreated = other.createdAt
    if (other.createdAt > maxCreated) maxCreated = other.createdAt
  }
  let flags = 0
  if (ips.size > rules.maxDistinctIps) flags |= FLAG_DISTINCT_IPS
  if (agents.size > rules.maxDistinctUserAgents) flags |= FLAG_DISTINCT_USER_AGENTS
  if (rules.rapidCreationWindowMs > 0 && others >= 2 && maxCreated - minCreated <= rules.rapidCreationWindowMs) {
    flags |= FLAG_RAPID_CREATION
  }
  return flags
}
