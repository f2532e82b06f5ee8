-- iommu-ledger schema, version 5.
-- The state of a domain as of any event comes from compact blobs (src/projections/runlog.ts,
-- docs/architecture.md#stateat) instead of one SQL row per live run: a log of each flush's run
-- births and ends, and a snapshot of the live runs every so many events of the domain.
CREATE TABLE run_log (
  domain     INTEGER NOT NULL,
  first_pos  INTEGER NOT NULL,         -- smallest event position among its entries (rises with each row of a domain)
  last_pos   INTEGER NOT NULL,         -- largest
  small      INTEGER NOT NULL,         -- 1 for a piece of few entries (merged in groups while no snapshot follows it)
  births     BLOB NOT NULL,            -- runs born: every field, and their end when known at the flush
  ends       BLOB NOT NULL,            -- runs born in an earlier piece that ended: row id and end
  PRIMARY KEY (domain, first_pos)
) STRICT, WITHOUT ROWID;

CREATE TABLE run_snapshots (
  domain    INTEGER NOT NULL,
  position  INTEGER NOT NULL,          -- the state just after this event
  runs      INTEGER NOT NULL,          -- how many live runs
  data      BLOB NOT NULL,             -- the live runs, sorted by IOVA
  PRIMARY KEY (domain, position)
) STRICT, WITHOUT ROWID;

-- The lifetime classes served the old stateAt query only.
DROP INDEX runs_time;
ALTER TABLE runs DROP COLUMN lifetime_class;

-- Ledgers with runs need a rebuild to fill the log in; until then stateAt reads the runs table.
-- (Not 'rebuild-needed': every other projection is complete, and callers and migrate need not warn.)
INSERT OR REPLACE INTO meta (key, value) SELECT 'run-log-needed', 'schema 5: the run log behind stateAt'
  WHERE EXISTS (SELECT 1 FROM runs);
