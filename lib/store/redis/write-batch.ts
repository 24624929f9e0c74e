import { keySlot } from './keys'

/**
 * The event loop's own setImmediate, taken when this module loads: test tools that fake timers (Vitest, Sinon's
 * fake-timers) replace the global one, and a release that never runs would keep a connection's writes held for good.
 */
const nativeSetImmediate = globalThis.setImmediate

/** What a connection's socket offers to hold writes back (net.Socket, tls.TLSSocket). */
interface Corkable {
  cork: () => void
  uncork: () => void
}

/** The parts of an ioredis (or iovalkey) connection read here; any of them may be missing. */
interface Connection {
  status?: string
  stream?: Partial<Corkable>
  /** The commands sent and not answered yet (ioredis and iovalkey keep them in `commandQueue`). */
  commandQueue?: { length: number }
}

/** The parts of an ioredis (or iovalkey) Cluster read here: its slot map and its connections, by node key. */
interface ClusterInternals {
  slots?: unknown
  connectionPool?: { getInstanceByKey?: (nodeKey: string) => Connection | undefined }
}

/**
 * Sends the commands of one event-loop turn to a Redis node in one socket write.
 *
 * Under load, Node reads the requests of many connections in one turn of the event loop, and each sends its own
 * command to Redis: one write on the client, one read and one write in Redis, per request. Before a command is sent
 * on a connection that still awaits answers (so under load), `hold` corks its socket; the check phase of the same turn
 * (`setImmediate`) uncorks it, and what the turn wrote leaves in one `writev`. Redis then reads the commands together
 * and answers them together. A command on an idle connection goes out at once, as without batching: requests that come
 * one at a time pay nothing, not even a `setImmediate`.
 *
 * Commands keep their order: every write of the connection, the app's own included, goes through the same socket
 * buffer. Standalone and Sentinel clients hold the socket of `client.stream`. On a Cluster, the connection is the
 * master of the key's slot, found in the client's slot map (ioredis and iovalkey keep it in `slots` and
 * `connectionPool`, which are not typed as public); a client without them, a connection that is not ready, or a socket
 * without `cork` is left alone, and its commands are sent as they come.
 */
export class WriteBatch {
  /** The sockets corked in this turn, uncorked together in its check phase (scheduled when the first is held). */
  private readonly held: Corkable[] = []

  constructor (private readonly client: Connection & ClusterInternals & { isCluster?: boolean }, private readonly keyPrefix: string) {}

  /** Before sending a command on `key`: holds the writes of the connection it goes through until the end of this turn. */
  hold (key: string): void {
    const connection = this.client.isCluster === true ? this.masterOf(key) : this.client
    if (connection === undefined || connection.status !== 'ready') return
    const socket = corkable(connection.stream)
    if (socket === null || this.held.includes(socket)) return
    // An idle connection, with no command awaiting its answer, sends at once: when requests come one at a time,
    // each goes out without waiting for the end of its turn. While answers are awaited, more requests are coming.
    if (connection.commandQueue?.length === 0) return
    socket.cork()
    if (this.held.push(socket) === 1) nativeSetImmediate(release, this)
  }

  /** Uncorks every socket held in this turn. */
  release (): void {
    const held = this.held.splice(0)
    for (const socket of held) {
      // On a socket that has ended since, uncork does nothing (end() sent what was held). One that throws is broken:
      // ioredis sees it close and fails or resends its commands; the other sockets must still be released.
      try {
        socket.uncork()
      } catch {}
    }
  }

  /** The connection to the master of the key's slot, as the Cluster client will pick it (undefined when unknown). */
  private masterOf (key: string): Connection | undefined {
    const slots = this.client.slots
    const pool = this.client.connectionPool
    if (!Array.isArray(slots) || typeof pool?.getInstanceByKey !== 'function') return undefined
    const nodes: unknown = slots[keySlot(this.keyPrefix + key)]
    if (!Array.isArray(nodes) || typeof nodes[0] !== 'string') return undefined
    return pool.getInstanceByKey(nodes[0])
  }
}

/** The socket, when it can hold writes back. */
function corkable (stream: Partial<Corkable> | undefined): Corkable | null {
  if (stream === undefined || typeof stream.cork !== 'function' || typeof stream.uncork !== 'function') return null
  return stream as Corkable
}

function release (batch: WriteBatch): void {
  batch.release()
}
