import { shardTag } from '../../lib/core/token'

/**
 * A user id on shard tag `tag` (tags are a hash of the user id, core/token.ts shardTag): the first `<base>-<n>` that
 * hashes to it. About 4096 hashes on average; used to put users on one shard on purpose.
 */
export function userOnTag (tag: string, base: string): string {
  for (let n = 0; ; n++) {
    const userId = `${base}-${n}`
    if (shardTag(userId) === tag) return userId
  }
}
