-- iommu-ledger schema, version 1.
-- Small keyed tables are WITHOUT ROWID: one B-tree each, so a commit dirties fewer pages.
-- Addresses and sizes are 64-bit unsigned; SQLite integers are signed, so they are stored
-- shifted by -2^63 (order-preserving): stored = value - 9223372036854775808.

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- One stream per IOMMU domain.
CREATE TABLE streams (
  id        INTEGER PRIMARY KEY,
  name      TEXT NOT NULL UNIQUE,
  version   INTEGER NOT NULL,          -- per-stream version of its last event
  profile   TEXT NOT NULL,             -- JSON profile descriptor
  created_at INTEGER NOT NULL,         -- position of the DomainCreated event
  destroyed_at INTEGER,                -- position of DomainDestroyed, if any
  max_span   INTEGER NOT NULL DEFAULT -9223372036854775808, -- longest run ever mapped, biased like addresses
  invalidations INTEGER NOT NULL DEFAULT 0,   -- IOTLB invalidation ranges so far (hardware projection)
  invalidated_bytes INTEGER NOT NULL DEFAULT -9223372036854775808 -- their bytes, biased
) STRICT;

-- The append-only log. `position` is the global order; (stream, version) the per-stream one.
CREATE TABLE events (
  position     INTEGER PRIMARY KEY,
  stream       INTEGER NOT NULL,
  version      INTEGER NOT NULL,
  type         TEXT NOT NULL,
  schema_version INTEGER NOT NULL,
  event_id     TEXT NOT NULL,
  recorded_at  TEXT NOT NULL,
  time         TEXT,                   -- source timestamp when known (ISO 8601 or trace seconds)
  data         TEXT NOT NULL,          -- canonical JSON of the event body
  hash         BLOB NOT NULL           -- SHA-256(prev hash || canonical envelope)
) STRICT;
CREATE UNIQUE INDEX events_id ON events(event_id);
CREATE UNIQUE INDEX events_stream_version ON events(stream, version);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable: UPDATE is not allowed'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable: DELETE is not allowed'); END;

-- Imported sources (idempotency of whole files, and where events came from).
CREATE TABLE sources (
  digest    TEXT PRIMARY KEY,          -- SHA-256 of the file's bytes (hex)
  name      TEXT NOT NULL,
  lines     INTEGER NOT NULL,
  first_position INTEGER,
  last_position  INTEGER,
  imported_at TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- ---- projections (rebuildable from events) ----

CREATE TABLE checkpoints (
  projection TEXT PRIMARY KEY,
  position   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Page tables, temporally: each row is a run of equal pages valid in [valid_from, valid_to).
-- lifetime_class = bit length of (valid_to - valid_from), 63 while still live: stateAt(p) looks in
-- each class only at rows born within that many events before p (a bounded scan per class).
CREATE TABLE runs (
  id          INTEGER PRIMARY KEY,
  domain      INTEGER NOT NULL,
  iova        INTEGER NOT NULL,
  iova_last   INTEGER NOT NULL,        -- last byte (iova + bytes - 1): an end of 2^64 would not fit
  paddr       INTEGER NOT NULL,
  page_size   INTEGER NOT NULL,
  count       INTEGER NOT NULL,
  level       INTEGER NOT NULL,
  prot        INTEGER NOT NULL,
  map_pos     INTEGER NOT NULL,        -- the map event that created these pages
  valid_from  INTEGER NOT NULL,
  valid_to    INTEGER,                 -- the event that removed or rewrote them
  lifetime_class INTEGER NOT NULL
) STRICT;
CREATE INDEX runs_time ON runs(domain, lifetime_class, valid_from);
CREATE INDEX runs_iova ON runs(domain, iova);

-- Hardware state over time: a snapshot per domain at checkpoints (replay covers the rest).
CREATE TABLE hw_state (
  domain    INTEGER NOT NULL,
  position  INTEGER NOT NULL,
  stats     TEXT NOT NULL,             -- JSON: entries/tables per level, runs, bytes, invalidations so far
  PRIMARY KEY (domain, position)
) STRICT, WITHOUT ROWID;

-- Mapping intent: per caller, what it believes mapped (its maps minus its own unmaps), temporally.
CREATE TABLE intent (
  id         INTEGER PRIMARY KEY,
  domain     INTEGER NOT NULL,
  caller     TEXT NOT NULL,
  iova       INTEGER NOT NULL,
  iova_last  INTEGER NOT NULL,
  valid_from INTEGER NOT NULL,
  valid_to   INTEGER
) STRICT;
CREATE INDEX intent_caller ON intent(domain, caller, iova);

-- Unmaps whose effect differs from the request (over-unmap, left mapped) or from the trace.
CREATE TABLE unmap_findings (
  position      INTEGER PRIMARY KEY,
  domain        INTEGER NOT NULL,
  caller        TEXT,
  site          TEXT,
  iova          INTEGER NOT NULL,
  size          INTEGER NOT NULL,
  unmapped      INTEGER NOT NULL,      -- as the ledger records it (observed when imported)
  predicted     INTEGER NOT NULL,      -- the core's prediction
  collateral_bytes INTEGER NOT NULL,
  left_bytes    INTEGER NOT NULL,
  divergent     INTEGER NOT NULL,      -- 1 when observed != predicted
  reach_first   INTEGER NOT NULL,      -- first byte the request or its collateral covers (biased)
  reach_last    INTEGER NOT NULL,      -- last such byte (biased): findings about an IOVA need no JSON
  detail        TEXT NOT NULL          -- JSON: collateral [{iova,size,mappedBy,owner}], leftMapped [{iova,size}]
) STRICT;
CREATE INDEX unmap_findings_domain ON unmap_findings(domain, position);

CREATE TABLE faults (
  position   INTEGER PRIMARY KEY,
  domain     INTEGER NOT NULL,
  iova       INTEGER NOT NULL,
  device     TEXT,
  flags      INTEGER,
  cause      TEXT NOT NULL,            -- mapped | use-after-unmap | use-after-collateral-unmap | never-mapped
  cause_position INTEGER,              -- the event that removed the page (or null)
  detail     TEXT NOT NULL
) STRICT;

-- Caller symmetry: how each caller's unmaps relate to the maps alive at that moment.
CREATE TABLE caller_symmetry (
  domain   INTEGER NOT NULL,
  caller   TEXT NOT NULL,
  site     TEXT NOT NULL,
  maps     INTEGER NOT NULL,
  unmaps   INTEGER NOT NULL,
  exact    INTEGER NOT NULL,           -- mirrors one map exactly
  spans    INTEGER NOT NULL,           -- covers several whole maps
  cuts     INTEGER NOT NULL,           -- cuts through a map
  misses   INTEGER NOT NULL,           -- hits nothing mapped
  foreign_unmaps INTEGER NOT NULL,     -- removes another caller's mapping
  PRIMARY KEY (domain, caller, site)
) STRICT, WITHOUT ROWID;
