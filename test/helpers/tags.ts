import { shardTag } from '../../lib/core/token'

/**
 * A user id on shard tag `tag` (tags are a hash of the user id, core/token.ts shardTag): the first `<base>-<n>` that
 * hashes to it. About 4096 hashes on average; used to put users on one shard on purpose.
 */
export function userOnTag (tag: string, base: string): string {
  return usersOnTag(tag, base, 1)[0] as string
}

/** The first `count` user ids `<base>-<n>` on shard tag `tag`, in order of n. */
export function usersOnTag (tag: string, base: string, count: number): string[] {
  const users: string[] = []
  for (let n = 0; users.length < count; n++) {
    if (shardTag(`${base}-${n}`) === tag) users.push(`${base}-${n}`)
  }
  return users
}
