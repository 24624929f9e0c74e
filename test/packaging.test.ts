import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { test } from 'tap'
import { assertDistIsCurrent } from './helpers/dist'

// What a user installs is the `npm pack` tarball, not this repository: pack it once, lay it out as npm would in a
// node_modules/ shared by small consumer projects (one per TypeScript module resolution), and compile each with the
// user's view of the package, without skipLibCheck. Offline: the consumers' other packages (fastify, the Redis
// clients, @types/node) and the package's own dependencies are this repository's node_modules, linked in.

const run = promisify(execFile)
const root = path.join(__dirname, '..')
const TSC = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')
const ATTW = path.join(root, 'node_modules', '@arethetypeswrong', 'cli', 'dist', 'index.js')
const PACKAGE = 'fastify-distributed-session'

interface Result { code: number, stdout: string, output: string }

async function exec (file: string, args: string[], cwd: string): Promise<Result> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } })
    return { code: 0, stdout, output: stdout + stderr }
  } catch (error) {
    const failure = error as { code?: unknown, stdout?: string, stderr?: string }
    return { code: typeof failure.code === 'number' ? failure.code : 1, stdout: failure.stdout ?? '', output: `${failure.stdout ?? ''}${failure.stderr ?? ''}` }
  }
}

const STRICT = { strict: true, noEmit: true, skipLibCheck: false, types: ['node'], target: 'ES2022', lib: ['ES2022'] }

interface Consumer {
  name: string
  type: 'commonjs' | 'module'
  compilerOptions: Record<string, unknown>
  /** index.ts (or index.mts / index.cts) of the project */
  file: string
  code: string
  skipLibCheck?: boolean
}

// Every project also holds a wrong option behind @ts-expect-error: were the plugin's options `any` in that mode
// (as they were under `bundler` with skipLibCheck), the directive would be unused and tsc would fail.
const WRONG_OPTION = `// @ts-expect-error 'sideways' is no sameSite value
app.register(sessionPlugin, { cookie: { sameSite: 'sideways' } })`

const consumers: Consumer[] = [
  {
    name: 'node10-cjs-ioredis5',
    type: 'commonjs',
    compilerOptions: { module: 'commonjs', moduleResolution: 'node10', esModuleInterop: true },
    file: 'index.ts',
    code: `import { fastify } from 'fastify'
import pkg = require('${PACKAGE}')
import { sessionPlugin, RedisStore, type Session } from '${PACKAGE}'
// A second copy of ioredis (5.x, not the 6.x the package depends on): accepted by shape.
import { Redis as Redis5, Cluster as Cluster5 } from 'ioredis5'

const app = fastify()
const same: typeof sessionPlugin = pkg.default
app.register(same, { redis: new Redis5({ lazyConnect: true }) })
app.register(sessionPlugin, { redis: new Cluster5([{ host: '127.0.0.1', port: 7000 }], { lazyConnect: true }) })
export const store = new RedisStore({ client: new Redis5({ lazyConnect: true }) })
${WRONG_OPTION}
app.post('/login', async (request, reply) => {
  // No required metadata field declared: data stays optional.
  const { token } = await reply.startSession('u1')
  const session: Session | null = request.session
  return { token, id: session?.id }
})
`
  },
  {
    name: 'node16-cjs-fastify-redis',
    type: 'commonjs',
    compilerOptions: { module: 'node16', moduleResolution: 'node16' },
    file: 'index.ts',
    code: `import { fastify } from 'fastify'
import fastifyRedis from '@fastify/redis'
import sessionPlugin from '${PACKAGE}'

const app = fastify()
app.register(fastifyRedis, { host: '127.0.0.1', lazyConnect: true })
app.after(() => {
  // @fastify/redis's client, typed by its own declarations.
  app.register(sessionPlugin, { redis: app.redis })
})
${WRONG_OPTION}
app.get('/me', { preHandler: app.requireSession }, async (request) => request.session?.userId)
`
  },
  {
    name: 'nodenext-esm-iovalkey',
    type: 'module',
    compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext' },
    file: 'index.ts',
    code: `import { fastify } from 'fastify'
import { Redis as Valkey, Cluster as ValkeyCluster } from 'iovalkey'
import sessionPlugin, { MemoryStore, type Session, type SessionPluginOptions } from '${PACKAGE}'

declare module '${PACKAGE}' {
  interface SessionMetadata {
    plan: string
  }
}

const app = fastify()
await app.register(sessionPlugin, { redis: new Valkey({ lazyConnect: true }) })
export const clustered: SessionPluginOptions = { redis: new ValkeyCluster([{ host: '127.0.0.1', port: 7000 }], { lazyConnect: true }) }
export const memory = new MemoryStore()
${WRONG_OPTION}
app.post('/login', async (request, reply) => {
  const { session } = await reply.startSession('u1', { metadata: { plan: 'pro' } })
  // @ts-expect-error 'plan' is required by the SessionMetadata declared above
  await reply.startSession('u2')
  return session.id
})
app.get('/plan', async (request) => {
  const session: Session | null = request.session
  const plan: string = session?.metadata.plan ?? 'free'
  // @ts-expect-error a stored session may not have 'plan': it reads as string | undefined
  const assumed: string = session!.metadata.plan
  return { plan, assumed }
})
`
  },
  {
    name: 'bundler-esm-ioredis',
    type: 'module',
    compilerOptions: { module: 'preserve', moduleResolution: 'bundler' },
    file: 'index.ts',
    code: `import Fastify from 'fastify'
import { Cluster, Redis } from 'ioredis'
import sessionPlugin, { errors, SessionManager, type SessionPluginOptions } from '${PACKAGE}'

const app = Fastify()
const options: SessionPluginOptions = { redis: new Redis({ lazyConnect: true }), idleTimeout: '15m' }
app.register(sessionPlugin, options)
app.register(sessionPlugin, { redis: new Cluster([{ host: '127.0.0.1', port: 7000 }], { lazyConnect: true }) })
app.register(sessionPlugin, { redis: 'redis://127.0.0.1:6379' })
${WRONG_OPTION}
export const manager: SessionManager = app.sessions
export const code: string = new errors.SESSION_REQUIRED().code
`
  }
]

/** The same bundler project with mistakes no one marked: the compile must fail, naming each line. */
const broken: Consumer = {
  name: 'bundler-broken',
  type: 'module',
  compilerOptions: { module: 'preserve', moduleResolution: 'bundler' },
  file: 'index.ts',
  // Only its own errors matter here: the libraries were checked by the projects above.
  skipLibCheck: true,
  code: `import Fastify from 'fastify'
import sessionPlugin from '${PACKAGE}'

declare module '${PACKAGE}' {
  interface SessionMetadata {
    plan: string
  }
}

const app = Fastify()
app.register(sessionPlugin, { redis: 42 })
app.post('/login', async (request, reply) => reply.startSession('u1'))
`
}

function writeConsumer (base: string, consumer: Consumer): string {
  const dir = path.join(base, consumer.name)
  fs.mkdirSync(dir)
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: consumer.name, private: true, type: consumer.type }))
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...STRICT, ...consumer.compilerOptions, skipLibCheck: consumer.skipLibCheck === true }, files: [consumer.file] }))
  fs.writeFileSync(path.join(dir, consumer.file), consumer.code)
  return dir
}

/** node_modules/ as npm would lay it out for the consumers: the tarball unpacked, everything else linked in. */
async function layOut (base: string, tarball: string): Promise<void> {
  const modules = path.join(base, 'node_modules')
  const target = path.join(modules, PACKAGE)
  fs.mkdirSync(target, { recursive: true })
  const unpacked = await exec('tar', ['-xzf', tarball, '-C', target, '--strip-components=1'], base)
  if (unpacked.code !== 0) throw new Error(`tar failed: ${unpacked.output}`)
  const manifest = JSON.parse(fs.readFileSync(path.join(target, 'package.json'), 'utf8')) as { dependencies: Record<string, string>, peerDependencies: Record<string, string> }
  const linked = [...Object.keys(manifest.dependencies), 'fastify', '@types/node', 'ioredis5', 'iovalkey', '@fastify/redis']
  for (const name of new Set(linked)) {
    const link = path.join(modules, name)
    fs.mkdirSync(path.dirname(link), { recursive: true })
    fs.symlinkSync(path.join(root, 'node_modules', name), link, 'dir')
  }
}

test('the npm pack tarball type-checks in consumer projects under node10, node16, nodenext and bundler, without skipLibCheck', async (t) => {
  assertDistIsCurrent()
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'fds-packaging-'))
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }))

  // --ignore-scripts: dist/ is already built (checked above); rebuilding it here would race the other test files.
  const packed = await exec('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', base], root)
  t.equal(packed.code, 0, 'npm pack succeeds')
  if (packed.code !== 0) t.comment(packed.output)
  const [info] = JSON.parse(packed.stdout) as Array<{ filename: string, files: Array<{ path: string }> }>
  if (info === undefined) throw new Error('npm pack reported no tarball')
  const tarball = path.join(base, info.filename)
  const files = info.files.map((file) => file.path)
  for (const expected of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/esm.mjs', 'dist/esm.d.mts', 'dist/store/redis/client.d.ts']) {
    t.ok(files.includes(expected), `the tarball holds ${expected}`)
  }
  t.notOk(files.some((file) => file.startsWith('lib/') || file.startsWith('test/')), 'the tarball holds no sources or tests')

  const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>
  t.equal(manifest.dependencies?.fastify, undefined, 'fastify is not a dependency')
  t.equal(manifest.peerDependencies?.fastify, '^5.0.0', 'fastify is a peer dependency (5.x)')
  t.ok(manifest.devDependencies?.fastify, 'fastify is a dev dependency')

  await layOut(base, tarball)
  const dirs = consumers.map((consumer) => writeConsumer(base, consumer))
  const brokenDir = writeConsumer(base, broken)

  // Every compile and attw, two processes at a time: the machine (and tap's other test file) share two cores.
  const jobs = [
    ...dirs.map((dir) => () => exec(process.execPath, [TSC, '-p', dir], dir)),
    () => exec(process.execPath, [TSC, '-p', brokenDir], brokenDir),
    () => exec(process.execPath, [ATTW, tarball, '--format', 'json'], base)
  ]
  const results: Result[] = new Array(jobs.length)
  let next = 0
  await Promise.all([0, 1].map(async () => {
    while (next < jobs.length) {
      const n = next++
      results[n] = await (jobs[n] as () => Promise<Result>)()
    }
  }))
  consumers.forEach((consumer, n) => {
    const result = results[n] as Result
    t.equal(result.code, 0, `${consumer.name} compiles`)
    if (result.code !== 0) t.comment(result.output)
  })

  const failed = results[dirs.length] as Result
  t.not(failed.code, 0, 'a consumer passing a wrong option does not compile')
  t.match(failed.output, /index\.ts\(11,\d+\): error TS\d+/, 'the `redis: 42` line is reported')
  t.match(failed.output, /index\.ts\(12,\d+\): error TS\d+/, "startSession('u1') without the required metadata is reported")
  t.equal(failed.output.match(/error TS/g)?.length, 2, 'exactly those two errors')
  if (failed.output.match(/error TS/g)?.length !== 2) t.comment(failed.output)

  const attw = results[dirs.length + 1] as Result
  const report = JSON.parse(attw.stdout) as { analysis?: { problems?: unknown[], entrypoints?: object } }
  t.ok(report.analysis?.entrypoints, 'attw analysed the tarball')
  t.same(report.analysis?.problems, [], '@arethetypeswrong/cli finds no problem in the tarball')
  t.equal(attw.code, 0, 'attw exits 0')
})
