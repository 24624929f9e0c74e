// ESM entry. It hands out the objects of the CommonJS build instead of compiling lib/ twice, so
// `import` and `require()` users share one plugin instance (no dual package hazard).
// Only re-exports: Node finds these names in the CommonJS build with its static export scan (which understands what
// tsc emits), and the emitted declarations name nothing but './index.js', so they resolve the same under every
// `moduleResolution` (node10, node16, nodenext, bundler).
export {
  sessionPlugin as default,
  sessionPlugin, requireSession, getSession, SessionManager, RedisStore, MemoryStore, SessionCleanupService, errors,
  generateDeviceFingerprint, compareFingerprints, fingerprintFromHeaders, headerFingerprint,
  requireFreshSession
} from './index.js'
export type * from './index.js'
