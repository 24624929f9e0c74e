// Types of the demo app for the TypeScript tests that build it (the app itself is plain JavaScript).
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { SessionPluginOptions } from '../lib/index.js'

export interface BuildAppOptions {
  /** A redis:// URL; without it the plugin's embedded memory store is used. */
  redis?: SessionPluginOptions['redis']
  logger?: FastifyServerOptions['logger']
  /** More options for the session plugin. */
  session?: SessionPluginOptions
  /** More options for Fastify. */
  fastify?: FastifyServerOptions
}

export declare function buildApp (options?: BuildAppOptions): Promise<FastifyInstance>
