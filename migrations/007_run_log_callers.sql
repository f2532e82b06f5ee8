-- iommu-ledger schema, version 7.
-- The run log's blobs (run_log.births, run_snapshots.data) now carry the caller of each run's map
-- event (format RUN2, src/projections/runlog.ts), so `state` names the caller of tens of thousands
-- of runs without reading their map events. No table changes: blobs written before (RUN1) still
-- decode, with their callers read from the events as before; `rebuild` rewrites them all.
-- The version is raised so that an older iommu-ledger, which cannot read RUN2 blobs, refuses the
-- file with a clear message instead of failing on its first state query.
SELECT 1;
