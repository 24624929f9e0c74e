import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { test } from 'tap'

const root = path.join(__dirname, '..')

test('require() and import both give the plugin, named and default, from the built package', async (t) => {
  const requireFromRoot = createRequire(path.join(root, 'package.json'))
  const cjs = requireFromRoot('fastify-distributed-session')
  t.type(cjs.default, 'function')
  t.equal(cjs.sessionPlugin, cjs.default)
  t.type(cjs.SessionManager, 'function')
  t.type(cjs.RedisStore, 'function')
  t.type(cjs.MemoryStore, 'function')
  const esm = await import(pathToFileURL(path.join(root, 'dist', 'esm.mjs')).href)
  t.equal(esm.default, cjs.default, 'the ESM default is the same plugin function')
  t.equal(esm.sessionPlugin, cjs.default)
  t.equal(esm.SessionManager, cjs.SessionManager)
  t.equal(cjs.default[Symbol.for('fastify.display-name')], 'fastify-distributed-session')
})
