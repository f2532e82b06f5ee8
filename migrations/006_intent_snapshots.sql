-- iommu-ledger schema, version 6.
-- Opening a ledger to append loads each domain's live mapping intent. From the intent table alone
-- that is one SQL row per live interval (a million-event ledger holds hundreds of thousands:
-- seconds). Instead: the latest snapshot of the live intent (one blob per domain,
-- src/projections/intentsnap.ts), plus the rows born after it and the ends recorded since.
CREATE TABLE intent_snapshots (
  domain    INTEGER PRIMARY KEY,       -- one row per domain: only the latest snapshot is kept
  position  INTEGER NOT NULL,          -- the live intent just after this event
  max_id    INTEGER NOT NULL,          -- largest intent row id then: rows above it were born later
  callers   TEXT NOT NULL,             -- JSON array of the callers' names, sorted; data refers to them by index
  data      BLOB NOT NULL              -- the live intervals, by caller then IOVA
) STRICT;

-- The map event each interval of intent comes from (the pieces an unmap leaves keep their map's):
-- valid_from is when the interval took its present shape. NULL in rows written before schema 6.
ALTER TABLE intent ADD COLUMN map_pos INTEGER;

-- The intervals that ended after a snapshot (rows are born with valid_to NULL: only ended ones are indexed).
CREATE INDEX intent_ended ON intent(domain, valid_to) WHERE valid_to IS NOT NULL;
