import fs from 'node:fs'
import path from 'node:path'

const root = path.join(__dirname, '..', '..')

/** The example imports the package by its name, as a user's app would: that is dist/, which must be current. */
export function assertDistIsCurrent (): void {
  const built = path.join(root, 'dist', 'esm.mjs')
  const lib = path.join(root, 'lib')
  const newestSource = Math.max(...fs.readdirSync(lib, { recursive: true, encoding: 'utf8' }).map((file) => fs.statSync(path.join(lib, file)).mtimeMs))
  if (!fs.existsSync(built) || fs.statSync(built).mtimeMs < newestSource) {
    throw new Error('dist/ is missing or older than lib/: run `npm run build` first (`npm test` and `npm start` do)')
  }
}
