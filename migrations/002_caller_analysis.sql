-- iommu-ledger schema, version 2: the caller analysis behind `callers` and `migrate`.
-- A ledger of version 1 upgrades in place; its new columns and table stay empty until
-- `iommu-ledger rebuild` (the meta key 'rebuild-needed' says so, and `callers` warns).

-- 'cuts' now counts only unmaps inside one map; unmaps that cross a map's edge are 'straddles'.
ALTER TABLE caller_symmetry ADD COLUMN straddles INTEGER NOT NULL DEFAULT 0;
-- Bytes asked to unmap, and bytes of the maps a partial unmap cut through (kept by the caller).
ALTER TABLE caller_symmetry ADD COLUMN unmap_bytes INTEGER NOT NULL DEFAULT -9223372036854775808;
ALTER TABLE caller_symmetry ADD COLUMN cut_bytes INTEGER NOT NULL DEFAULT -9223372036854775808;

-- The unmaps a caller audit needs to see one by one: partial ones (cuts, straddles), misses, and
-- whole-map unmaps across a hole (the legacy and split loops stop at one), with what each does
-- under each unmap behaviour on the pages live at that moment. Exact mirrors and hole-free spans
-- behave the same everywhere: caller_symmetry counts them.
CREATE TABLE asymmetric_unmaps (
  position   INTEGER PRIMARY KEY,
  domain     INTEGER NOT NULL,
  caller     TEXT NOT NULL,
  site       TEXT NOT NULL,
  class      TEXT NOT NULL,            -- cuts | straddles | misses | spans | exact (with foreign = 1)
  foreign_map INTEGER NOT NULL,        -- 1 when it reaches a map made by another caller
  iova       INTEGER NOT NULL,         -- biased
  size       INTEGER NOT NULL,         -- biased
  maps       TEXT NOT NULL,            -- JSON [{position, iova, size, caller, site}] of the maps it touches
  kept_bytes INTEGER NOT NULL,         -- bytes of those maps outside the request (biased)
  largest_page INTEGER NOT NULL,       -- largest page backing the touched maps (biased)
  safe_page  INTEGER NOT NULL,         -- largest page size at which the cut edges stay harmless (biased; 0 = none)
  -- what it does under each behaviour, on the pages live at that moment (bytes, biased):
  legacy_over INTEGER NOT NULL,        -- removed outside the request (the 2011 loop removes whole pages)
  legacy_left INTEGER NOT NULL,        -- left mapped inside the request (the loop stops at a hole)
  split_over  INTEGER NOT NULL,        -- io-pgtable-arm before v6.13: blocks split, never over
  split_left  INTEGER NOT NULL,
  strict_left INTEGER NOT NULL,        -- VFIO type1 v2 / iommufd: refused when it cuts a mapping
  strict_errno TEXT                    -- EINVAL / ENOENT when refused
) STRICT;
CREATE INDEX asymmetric_unmaps_caller ON asymmetric_unmaps(domain, caller, site, position);

INSERT INTO meta (key, value) SELECT 'rebuild-needed', 'schema 2: caller analysis'
  WHERE EXISTS (SELECT 1 FROM events);
