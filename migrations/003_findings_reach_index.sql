-- iommu-ledger schema, version 3.
-- Findings about an IOVA (explain, history) without reading every finding of the domain: the
-- index covers the reach test, so only matching rows are fetched.
CREATE INDEX unmap_findings_reach ON unmap_findings(domain, reach_last, reach_first, position);
-- For an unmap that hit nothing: the over-unmap that had removed the range, if one did.
ALTER TABLE asymmetric_unmaps ADD COLUMN missed_after INTEGER;
-- Misses recorded before this column existed have no cause: a rebuild fills it in.
INSERT OR REPLACE INTO meta (key, value) SELECT 'rebuild-needed', 'schema 3: causes of unmaps that hit nothing'
  WHERE EXISTS (SELECT 1 FROM asymmetric_unmaps WHERE class = 'misses');
