// Types of the part of bench/report.mjs that test/bench-report.test.ts checks.
export interface PairSlice { variant: string, reqPerSec: number, p99Ms: number | null }
export interface Pair { variant: string, reference: string, repeats: Array<{ slices: PairSlice[] }> }
/** The 95% interval of a median: the nearest ranks that cover at least that share, and their coverage. */
export interface MedianInterval { low: number, high: number, coverage: number }
/** A paired goal: the median of every measured repeat with its interval, and the drop rule of earlier runs beside it. */
export interface PairedRatio {
  median: number | null
  interval: MedianInterval | null
  spread: [number, number] | null
  count: number
  steady: { median: number | null, kept: number, dropped: number, isDecided: boolean }
}
export function pairedRatio (pairs: Pair[] | undefined, key: string, reference: string, field?: 'reqPerSec' | 'p99Ms'): PairedRatio | null
export function medianInterval (values: number[], level?: number): MedianInterval | null
export interface RoundRun { round: number, variant: string, connections: number, reqPerSec: number }
export function throughputGoals (results: { runs: RoundRun[], pairs?: Pair[], settings: object }): Array<{ key: string, reference: string, field?: string, label: string, target: string, paired: boolean, ratio: { median: number | null }, text: string | null, isMet: boolean | null, isInconclusive: boolean, isTargetInside: boolean }>
export function disturbedRounds (runs: RoundRun[]): Array<{ round: number, bare: number, faster: Array<[string, number]> }>
export function renderMarkdown (results: unknown, profiles: unknown, decode?: unknown, audit?: unknown, instructions?: unknown): string
export function readProfiles (): unknown
export function readJson (name: string): unknown
