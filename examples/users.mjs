// The demo's user directory: two users whose passwords are hashed with scrypt when the app starts. A real app keeps
// the hashes in its database; the session plugin only ever sees the user id that a successful login hands it.
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'

const scryptAsync = promisify(scrypt)
const KEY_LENGTH = 64
const SALT_LENGTH = 16

/** The demo accounts. The login page shows these credentials: never do that with real ones. */
export const DEMO_USERS = Object.freeze([
  Object.freeze({ id: 'alice', name: 'Alice Liddell', password: 'wonderland' }),
  Object.freeze({ id: 'bob', name: 'Bob Builder', password: 'canwefixit' })
])

function hashPassword (password, salt) {
  return scryptAsync(password.normalize('NFKC'), salt, KEY_LENGTH)
}

/** Hashes the users' passwords and returns `{ verify (username, password), find (id) }`. */
export async function createUserDirectory (users = DEMO_USERS) {
  const records = new Map()
  for (const user of users) {
    const salt = randomBytes(SALT_LENGTH)
    records.set(user.id, { id: user.id, name: user.name, salt, hash: await hashPassword(user.password, salt) })
  }
  // Unknown users are checked against this record, so a wrong user name takes as long as a wrong password.
  const nobody = { salt: randomBytes(SALT_LENGTH), hash: randomBytes(KEY_LENGTH) }

  return {
    /** The user `{ id, name }` when the password is right, else null. */
    async verify (username, password) {
      const record = records.get(username) ?? null
      const { salt, hash } = record ?? nobody
      const candidate = await hashPassword(password, salt)
      const isMatch = timingSafeEqual(candidate, hash)
      return record !== null && isMatch ? { id: record.id, name: record.name } : null
    },
    find (id) {
      const record = records.get(id)
      return record === undefined ? null : { id: record.id, name: record.name }
    }
  }
}
