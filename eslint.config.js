'use strict'

const neostandard = require('neostandard')

module.exports = neostandard({
  ts: true,
  // neostandard only picks up *.ts on its own; lib/esm.mts is the ESM entry and is linted like the rest.
  files: ['**/*.mts', '**/*.cts'],
  filesTs: ['**/*.mts', '**/*.cts'],
  ignores: ['dist/**', 'coverage/**', '.tap/**', 'node_modules/**'],
})
