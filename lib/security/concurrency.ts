import type { ConcurrencyRules } from '../store/types'

/**
 * The concurrent-session rules (OWASP Session Management Cheat Sheet, "simultaneous session logons").
 * A session is flagged when, among the user's OTHER live sessions:
 *  - there are more than `maxDistinctIps` distinct IP addresses,
 *  - there are more than `maxDistinctUserAgents` distinct user agents,
 *  - at least two exist and all were created within `rapidCreationWindowMs` of each other.
 * The Redis store evaluates the same rules in Lua (store/redis/scripts.ts, applyFlags) and keeps the result on each
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

/**
 * The flags of every session of a user at once, in O(n) (the same result as concurrencyFlags for each): distinct
 * IPs and user agents are counted once and each session's "others" are the totals minus itself; the others'
 * creation range comes from the two smallest and two largest creation times. The Lua applyFlags does the same.
 */
export function allConcurrencyFlags (sessions: readonly ConcurrencyInput[], rules: ConcurrencyRules): number[] {
  const ipCount = new Map<string, number>()
  const agentCount = new Map<string, number>()
  let low1 = Infinity
  let low2 = Infinity
  let high1 = -Infinity
  let high2 = -Infinity
  for (const session of sessions) {
    if (session.ipAddress !== '') ipCount.set(session.ipAddress, (ipCount.get(session.ipAddress) ?? 0) + 1)
    if (session.userAgent !== '') agentCount.set(session.userAgent, (agentCount.get(session.userAgent) ?? 0) + 1)
    const c = session.createdAt
    if (c < low1) { low2 = low1; low1 = c } else if (c < low2) low2 = c
    if (c > high1) { high2 = high1; high1 = c } else if (c > high2) high2 = c
  }
  const others = sessions.length - 1
  return sessions.map((session) => {
    const otherIps = ipCount.size - (session.ipAddress !== '' && ipCount.get(session.ipAddress) === 1 ? 1 : 0)
    const otherAgents = agentCount.size - (session.userAgent !== '' && agentCount.get(session.userAgent) === 1 ? 1 : 0)
    const minCreated = session.createdAt === low1 ? low2 : low1
    const maxCreated = session.createdAt === high1 ? high2 : high1
    let flags = 0
    if (otherIps > rules.maxDistinctIps) flags |= FLAG_DISTINCT_IPS
    if (otherAgents > rules.maxDistinctUserAgents) flags |= FLAG_DISTINCT_USER_AGENTS
    if (rules.rapidCreationWindowMs > 0 && others >= 2 && maxCreated - minCreated <= rules.rapidCreationWindowMs) {
      flags |= FLAG_RAPID_CREATION
    }
    return flags
  })
}
