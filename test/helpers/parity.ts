import type { Cluster, Redis } from 'ioredis'
import { script } from '../../lib/store/redis/scripts'

/**
 * Runs one rule of the Lua prelude (store/redis/scripts.ts) over a batch of inputs in one EVAL, so the parity
 * tests compare the very Lua the store runs with its TypeScript twin. `mode`: 'deadline' (cases: records with
 * l, a and maybe d) -> the deadline; 'size' (cases: metadata key -> JSON text) -> 'size/count'; 'flags' (cases:
 * lists of sessions { i, g, c }) -> the flags of each, joined by ','; 'record' (cases: raw record texts) ->
 * 'valid' | 'corrupt' | 'none', as readRec reads them from a key.
 */
const PROBE = script(`
local mode, out = ARGV[7], {}
for n, case in ipairs(cjson.decode(ARGV[8])) do
  if mode == 'deadline' then
    out[n] = string.format('%d', deadline(case))
  elseif mode == 'size' then
    local size, count = metaSize(case)
    out[n] = size .. '/' .. count
  elseif mode == 'flags' then
    local live = {}
    for j, s in ipairs(case) do live[j] = { sid = 'probe' .. j, rec = { i = s.i, g = s.g, c = s.c, s = -1, m = {} } } end
    applyFlags(live)
    local flags = {}
    for j, entry in ipairs(live) do
      flags[j] = entry.rec.s
      redis.call('DEL', skey(entry.sid))
    end
    out[n] = table.concat(flags, ',')
  else
    redis.call('SET', skey('probe'), case)
    local rec = readRec('probe')
    redis.call('DEL', skey('probe'))
    if rec == nil then out[n] = 'none' elseif rec == false then out[n] = 'corrupt' else out[n] = 'valid' end
  end
end
return out
`)

export interface ProbeRules { idleMs?: number, maxIps?: number, maxUas?: number, rapidMs?: number }

export async function probeLua (client: Redis | Cluster, mode: 'deadline' | 'size' | 'flags' | 'record', cases: unknown[], rules: ProbeRules = {}): Promise<string[]> {
  return await client.eval(PROBE, 1, 'parity{PP}:x', String(Date.now()), String(rules.idleMs ?? 1_800_000), '0',
    String(rules.maxIps ?? 2), String(rules.maxUas ?? 3), String(rules.rapidMs ?? 300_000), mode, JSON.stringify(cases)) as string[]
}

/** A seeded generator (LCG): the same seed replays the same cases. PARITY_SEED=<n> replays a failure. */
export function seededRandom (): { seed: number, random: () => number, pick: <T>(items: readonly T[]) => T, int: (max: number) => number } {
  const seed = process.env.PARITY_SEED !== undefined ? Number(process.env.PARITY_SEED) : Math.floor(Math.random() * 2_147_483_647)
  let state = seed
  const random = (): number => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648
    return state / 2_147_483_648
  }
  const int = (max: number): number => Math.floor(random() * max)
  return { seed, random, int, pick: (items) => items[int(items.length)] as never }
}
