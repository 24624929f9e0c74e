export declare function escapeHtml (value: unknown): string
