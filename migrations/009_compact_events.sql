-- iommu-ledger schema, version 9: a cheaper events row (issue 16, item 5; docs/architecture.md,
-- "The events row").
--
-- An event's canonical text (what the hash chain covers) does not change. What changes is how a
-- row stores the parts of it that other columns already say:
-- - an id the ledger made (`@DOMAIN:VERSION`, or `KEY:LINE` for an imported line, KEY being the
--   first 24 hex digits of the file's SHA-256) is stored as '' and made again when read;
-- - an imported event's origin ({"source":NAME,"digest":SHA256,"line":N}, the last member of its
--   data) is stored as the integer columns `origin` (a row of `origins`) and `line`, and the data
--   without it.
-- The store does this only where the text made again is exactly the text it hashed
-- (src/events/compact.ts); every other event is stored whole, as are all events stored before.
-- `stored_events` gives every event as the chain covers it: readers of ids or data read it.
CREATE TABLE origins (
  id     INTEGER PRIMARY KEY,
  digest TEXT NOT NULL,                -- SHA-256 of the file's bytes (hex)
  name   TEXT NOT NULL,                -- the file's name as the import gave it
  UNIQUE (digest, name)
) STRICT;

ALTER TABLE events ADD COLUMN origin INTEGER;   -- origins.id, when the origin was taken out of data
ALTER TABLE events ADD COLUMN line INTEGER;     -- the imported line, with `origin`

-- Ids are unique as before: the stored ones by this index, the ones made again by what they are
-- made of (a domain's version; a file's line, checked by the ledger before it appends).
DROP INDEX events_id;
CREATE UNIQUE INDEX events_id ON events(event_id) WHERE event_id <> '';
CREATE INDEX events_line ON events(origin, line) WHERE origin IS NOT NULL;

CREATE VIEW stored_events AS
SELECT e.position, e.stream, s.name AS stream_name, e.version, e.type, e.schema_version,
       CASE WHEN e.event_id <> '' THEN e.event_id
            WHEN e.origin IS NULL THEN '@' || s.name || ':' || e.version
            ELSE substr(o.digest, 1, 24) || ':' || e.line END AS event_id,
       e.recorded_at, e.time,
       CASE WHEN e.origin IS NULL THEN e.data
            ELSE substr(e.data, 1, length(e.data) - 1) || ',"from":{"source":"' || o.name || '","digest":"' || o.digest || '","line":' || e.line || '}}' END AS data,
       e.hash
  FROM events e LEFT JOIN streams s ON s.id = e.stream LEFT JOIN origins o ON o.id = e.origin;
