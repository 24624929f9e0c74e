export interface ParsedUserAgent {
  /** e.g. 'Firefox 128' */
  browser: string
  /** e.g. 'Windows' */
  os: string
  /** e.g. 'Firefox 128 on Windows' */
  label: string
}

export declare function parseUserAgent (userAgent: unknown): ParsedUserAgent
