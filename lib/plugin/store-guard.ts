import type { SessionManager } from '../core/manager'
import { errors } from '../core/errors'
import { DeadlineQueue } from './deadline'

/** The store-failure policy of the request path: every store call bounded by `storeTimeout`, failures as 503. */
export class StoreGuard {
  private readonly deadlines: DeadlineQueue

  constructor (private readonly manager: SessionManager, private readonly storeTimeoutMs: number) {
    this.deadlines = new DeadlineQueue(storeTimeoutMs)
  }

  /** Bounds a store call by `storeTimeout` and turns store failures into FST_SESSION_STORE_UNAVAILABLE. */
  guard<T> (promise: Promise<T>): Promise<T> {
    return this.deadlines.bound(promise, this.onTimeout, this.onStoreError)
  }

  /** `guard` in callback style (the request path): `resolve` or `reject` is called once, and no promise is made. */
  watch<T> (promise: Promise<T>, resolve: (value: T) => void, reject: (reason: unknown) => void): void {
    this.deadlines.watch(promise, this.onTimeout, this.onStoreError, resolve, reject)
  }

  private readonly onTimeout = (): Error => {
    const cause = new Error(`store call timed out after ${this.storeTimeoutMs} ms`)
    this.manager.emit('storeError', cause)
    return new errors.STORE_UNAVAILABLE({ cause })
  }

  private readonly onStoreError = (error: unknown): unknown => {
    if (isOwnError(error)) return error
    this.manager.emit('storeError', error)
    // The cause reaches the 503 log line (pino prints its message and stack), never the client.
    return new errors.STORE_UNAVAILABLE({ cause: error })
  }
}

function isOwnError (error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('FST_SESSION_')
}
