// ESM entry. It hands out the objects of the CommonJS build instead of compiling lib/ twice, so
// `import` and `require()` users share one plugin instance (no dual package hazard).
import cjs from './index.js'

// Importing CommonJS from ESM, the default import is the whole `module.exports`; the plugin is its `default`.
export default cjs.default
// Named re-exports (not `const X = cjs.X`) keep classes usable as types, generics included. Node finds these
// names in the CommonJS build with its static export scan, which understands what tsc emits.
export {
  sessionPlugin, SessionManager, RedisStore, MemoryStore, SessionCleanupService, errors,
  generateDeviceFingerprint, compareFingerprints, fingerprintFromHeaders, headerFingerprint,
  requireFreshSession
} from './index.js'
export type * from './index.js'
