// Types of the part of bench/report.mjs that test/bench-report.test.ts checks.
export interface PairSlice { variant: string, reqPerSec: number, p99Ms: number | null }
export interface Pair { variant: string, reference: string, repeats: Array<{ slices: PairSlice[] }> }
/** The paired ratio over every measured repeat, none dropped. */
export interface EveryRepeat { median: number | null, middle: [number, number] | null, count: number }
export interface PairedRatio { median: number | null, spread: [number, number] | null, kept: number, dropped: number, bothOrders: boolean, every: EveryRepeat }
export function pairedRatio (pairs: Pair[] | undefined, key: string, reference: string, field?: 'reqPerSec' | 'p99Ms'): PairedRatio | null
export function middleHalf (values: number[]): [number, number] | null
export interface RoundRun { round: number, variant: string, connections: number, reqPerSec: number }
export function disturbedRounds (runs: RoundRun[]): Array<{ round: number, bare: number, faster: Array<[string, number]> }>
