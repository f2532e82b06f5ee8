-- iommu-ledger schema, version 8.
-- Over-unmaps are stepped (the caller consumed the returned size, as VFIO's teardown does) or
-- harmful (src/core/stepping.ts). The verdict is given by a later event of the same domain, so
-- it is a column the ledger updates: NULL for findings that are no over-unmap.
ALTER TABLE unmap_findings ADD COLUMN step TEXT;           -- 'stepped' | 'harmful' | 'pending'
ALTER TABLE unmap_findings ADD COLUMN step_why TEXT;       -- the reason (StepReason), NULL while pending
ALTER TABLE unmap_findings ADD COLUMN step_pos INTEGER;    -- the event that settled it
ALTER TABLE unmap_findings ADD COLUMN step_state TEXT;     -- JSON while pending: what a later event is compared with
ALTER TABLE unmap_findings ADD COLUMN step_others TEXT;    -- JSON array: the other callers (other-owner, reused)
-- The undecided ones of a domain, read when a ledger opens the domain to append.
CREATE INDEX unmap_findings_pending ON unmap_findings(domain) WHERE step = 'pending';
-- Over-unmaps stored before this version have no verdict: a rebuild gives them one (an older
-- reason to rebuild, already noted, is kept: the rebuild does both).
INSERT OR IGNORE INTO meta (key, value) SELECT 'rebuild-needed', 'schema 8: stepped and harmful over-unmaps'
  WHERE EXISTS (SELECT 1 FROM unmap_findings WHERE collateral_bytes > -9223372036854775808);
