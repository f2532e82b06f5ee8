/**
 * The projection tables as the read path sees them: Kysely's types for the audit listings, and the
 * row types the typed statements of queries.ts and callers.ts derive from.
 */
/** Kysely's view of the tables the queries read (integers arrive as bigint). */
export interface Tables {
  streams: { id: bigint; name: string; version: bigint; profile: string; created_at: bigint; destroyed_at: bigint | null; max_span: bigint };
  events: { position: bigint; stream: bigint; version: bigint; type: string; event_id: string; recorded_at: string; time: string | null; data: string };
  unmap_findings: {
    position: bigint;
    domain: bigint;
    caller: string | null;
    site: string | null;
    iova: bigint;
    size: bigint;
    unmapped: bigint;
    predicted: bigint;
    collateral_bytes: bigint;
    left_bytes: bigint;
    divergent: bigint;
    detail: string;
    step: string | null;
    step_why: string | null;
    step_pos: bigint | null;
    step_others: string | null;
  };
  faults: {
    position: bigint;
    domain: bigint;
    iova: bigint;
    device: string | null;
    flags: bigint | null;
    cause: string;
    cause_position: bigint | null;
    detail: string;
  };
  caller_symmetry: {
    domain: bigint;
    caller: string;
    site: string;
    maps: bigint;
    unmaps: bigint;
    exact: bigint;
    spans: bigint;
    cuts: bigint;
    straddles: bigint;
    misses: bigint;
    foreign_unmaps: bigint;
    unmap_bytes: bigint;
    cut_bytes: bigint;
  };
}
