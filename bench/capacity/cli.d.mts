// Types of the capacity CLI (bench/capacity/cli.mjs) for test/capacity.test.ts.
interface Output { write (text: string): unknown }
export const DEFAULT_UNITS: string
export class UsageError extends Error {}
export function main (argv: string[], streams?: { stdout?: Output, stderr?: Output }): number
