/**
 * Caller names the ledger gives itself. Apart from events/schema.ts (which loads zod), so that the
 * question commands can name them without loading zod (docs/architecture.md, "What the CLI loads").
 */

/** The caller of a mapping an importer inferred to have existed before its trace began. */
export const BEFORE_TRACE_CALLER = '(before the trace)';
