import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { test } from 'tap'
import ts from 'typescript'
import * as pkg from '../lib/index'

// Every ```ts and ```js block of README.md and docs/*.md is type-checked against the package's source, as an ES
// module the way an ESM user's code is, and the README's minimal example is also run. A block fenced
// ```ts no-check is left out: keep that for the rare fragment that cannot stand on its own.

const root = path.join(__dirname, '..')
const LANGUAGES: Record<string, 'ts' | 'js'> = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js' }
const NO_CHECK = 'no-check'
const SNIPPET_DIR = path.join(root, '.docs-snippets')

interface Snippet {
  /** Relative to the repository, e.g. docs/api.md */
  file: string
  /** 1-based line of the opening fence */
  line: number
  language: 'ts' | 'js'
  isChecked: boolean
  code: string
}

function markdownFiles (): string[] {
  const docs = fs.readdirSync(path.join(root, 'docs')).filter((name) => name.endsWith('.md')).sort()
  return ['README.md', ...docs.map((name) => `docs/${name}`)]
}

function extractSnippets (file: string): Snippet[] {
  const lines = fs.readFileSync(path.join(root, file), 'utf8').split('\n')
  const snippets: Snippet[] = []
  for (let n = 0; n < lines.length; n++) {
    const open = /^(`{3,})\s*([\w-]*)\s*(.*)$/.exec(lines[n] as string)
    if (open === null) continue
    const fence = open[1] as string
    const close = lines.findIndex((text, index) => index > n && text.trimEnd() === fence)
    if (close === -1) throw new Error(`${file}:${n + 1}: a code fence is never closed`)
    const language = LANGUAGES[(open[2] as string).toLowerCase()]
    if (language !== undefined) {
      const info = (open[3] as string).split(/\s+/)
      snippets.push({ file, line: n + 1, language, isChecked: !info.includes(NO_CHECK), code: lines.slice(n + 1, close).join('\n') })
    }
    n = close
  }
  return snippets
}

const snippets = markdownFiles().flatMap(extractSnippets)

function virtualName (snippet: Snippet): string {
  return path.join(SNIPPET_DIR, `${snippet.file.replace(/[/.]/g, '_')}_L${snippet.line}.${snippet.language === 'ts' ? 'mts' : 'mjs'}`)
}

/** Type-checks the snippets in one program; returns each snippet's diagnostics, as `file:line: message`. */
function typeCheck (checked: Snippet[]): Map<Snippet, string[]> {
  const byName = new Map(checked.map((snippet) => [virtualName(snippet), snippet]))
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    lib: ['lib.es2022.d.ts'],
    module: ts.ModuleKind.Node16,
    moduleResolution: ts.ModuleResolutionKind.Node16,
    types: ['node'],
    strict: true,
    noUncheckedIndexedAccess: true,
    esModuleInterop: true,
    skipLibCheck: true,
    allowJs: true,
    checkJs: true,
    noEmit: true,
    baseUrl: root,
    // What `import ... from 'fastify-distributed-session'` gives an ES module: the ESM entry (dist/esm.mjs is built
    // from lib/esm.mts), so a name missing from it fails here as it would at run time.
    paths: { 'fastify-distributed-session': ['./lib/esm.mts'] }
  }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  const fileExists = host.fileExists.bind(host)
  const readFile = host.readFile.bind(host)
  host.getSourceFile = (fileName, languageVersion, ...rest) => {
    const snippet = byName.get(fileName)
    return snippet === undefined ? getSourceFile(fileName, languageVersion, ...rest) : ts.createSourceFile(fileName, snippet.code, languageVersion, true)
  }
  host.fileExists = (fileName) => byName.has(fileName) || fileExists(fileName)
  host.readFile = (fileName) => byName.get(fileName)?.code ?? readFile(fileName)

  const program = ts.createProgram([...byName.keys()], options, host)
  // Problems of the program itself (options, missing type libraries) are reported on every snippet. Only the
  // snippets are checked: the package's own sources are type-checked by its build.
  const global = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()]
    .map((diagnostic) => `TS${diagnostic.code}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`)
  const results = new Map<Snippet, string[]>()
  for (const [fileName, snippet] of byName) {
    const sourceFile = program.getSourceFile(fileName) as ts.SourceFile
    const diagnostics = [...program.getSyntacticDiagnostics(sourceFile), ...program.getSemanticDiagnostics(sourceFile)]
    results.set(snippet, [...global, ...diagnostics.map((diagnostic) => {
      const { line } = sourceFile.getLineAndCharacterOfPosition(diagnostic.start ?? 0)
      return `${snippet.file}:${snippet.line + 1 + line}: TS${diagnostic.code}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`
    })])
  }
  return results
}

test('the docs have code samples, and every ts / js sample type-checks against the package', async (t) => {
  t.ok(snippets.length >= 20, `found ${snippets.length} code samples`)
  const skipped = snippets.filter((snippet) => !snippet.isChecked)
  t.ok(skipped.length <= 2, `at most two samples are fenced ${NO_CHECK}: ${skipped.map((s) => `${s.file}:${s.line}`).join(', ')}`)
  // TypeScript forgets that an export is type-only (`export type *` in lib/esm.mts) once several files augment the
  // module, and would then accept a value import that fails at run time: one augmentation in all of the docs.
  const augmenting = snippets.filter((snippet) => snippet.code.includes("declare module 'fastify-distributed-session'"))
  t.ok(augmenting.length <= 1, `at most one sample augments the package's types: ${augmenting.map((s) => `${s.file}:${s.line}`).join(', ')}`)
  // The augmenting sample is checked in a program of its own: its required `SessionMetadata` fields would otherwise
  // make every other sample's `startSession(user)` (rightly) fail, as they would in one app.
  const checked = snippets.filter((snippet) => snippet.isChecked)
  const results = new Map([
    ...typeCheck(checked.filter((snippet) => !augmenting.includes(snippet))),
    ...typeCheck(checked.filter((snippet) => augmenting.includes(snippet)))
  ])
  for (const [snippet, diagnostics] of results) {
    t.same(diagnostics, [], `${snippet.file}:${snippet.line} type-checks`)
  }
})

test('every relative link of the docs points to a file of the repository', async (t) => {
  for (const file of markdownFiles()) {
    const text = fs.readFileSync(path.join(root, file), 'utf8')
    for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = (match[1] as string).split('#')[0] as string
      if (target === '' || /^[a-z]+:/i.test(target)) continue
      t.ok(fs.existsSync(path.resolve(root, path.dirname(file), target)), `${file} links to ${target}`)
    }
  }
})

type AsyncFunctionConstructor = new (...parameters: string[]) => (...args: unknown[]) => Promise<unknown>
const AsyncFunction = (async () => {}).constructor as AsyncFunctionConstructor

/** Runs a sample as written, except for its final `app.listen(...)`, and returns its `app`. */
async function runSample (snippet: Snippet, listenCall: string): Promise<import('fastify').FastifyInstance> {
  const js = ts.transpileModule(snippet.code, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true }
  }).outputText
  const statement = `await ${listenCall};`
  if (js.split(statement).length !== 2) throw new Error(`${snippet.file}:${snippet.line}: expected the sample to end with \`${statement}\``)
  const requireFromRoot = createRequire(path.join(root, 'package.json'))
  const sampleRequire = (id: string): unknown => id === 'fastify-distributed-session' ? pkg : requireFromRoot(id)
  // `process` is replaced so REDIS_URL is never taken from the environment: the sample runs on the memory store.
  const run = new AsyncFunction('require', 'exports', 'process', js.replace(statement, 'return app;'))
  return await run(sampleRequire, {}, { env: {} }) as import('fastify').FastifyInstance
}

test('the README minimal example works as written, on the memory store', async (t) => {
  const readme = snippets.filter((snippet) => snippet.file === 'README.md' && snippet.code.includes("app.get('/orders'"))
  t.equal(readme.length, 1, 'the README has one minimal example')
  const app = await runSample(readme[0] as Snippet, 'app.listen({ port: 3000 })')
  t.teardown(() => app.close())

  const anonymous = await app.inject({ url: '/orders' })
  t.equal(anonymous.statusCode, 401)
  t.equal(anonymous.json().code, 'FST_SESSION_REQUIRED')

  const login = await app.inject({ method: 'POST', url: '/login', payload: { user: 'alice' } })
  t.equal(login.statusCode, 200)
  const { token } = login.json() as { token: string }
  t.match(token, /^[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{43}$/)
  const cookie = login.cookies.find((c) => c.name === 'session_id')
  t.equal(cookie?.value, token, 'the token is also set as a cookie')
  t.equal(cookie?.httpOnly, true)

  const byHeader = await app.inject({ url: '/orders', headers: { 'x-session-id': token } })
  t.equal(byHeader.statusCode, 200)
  t.same(byHeader.json(), { user: 'alice', orders: [] })
  const byCookie = await app.inject({ url: '/orders', cookies: { session_id: token } })
  t.same(byCookie.json(), { user: 'alice', orders: [] })

  const elsewhere = await app.inject({ url: '/orders', headers: { 'x-session-id': token }, remoteAddress: '203.0.113.9' })
  t.equal(elsewhere.statusCode, 403, 'another IP than at login: requiresSecurityCheck')
  t.same(elsewhere.json(), { error: 'please confirm it is you' })
})
