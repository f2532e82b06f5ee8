/**
 * The live mapping intent of a domain as one blob (intent_snapshots, schema 6): what the ledger
 * loads when it is opened to append, instead of one SQL row per live interval.
 *
 * Layout (little-endian): tag "INT1", count n, then columns of n entries each: the intent row id
 * (f64), first byte (u64), last byte (u64), the map event it came from (f64), and the index of
 * its caller in the snapshot's caller list (u32). 8-byte columns come first, so a blob read at
 * an 8-byte-aligned offset is decoded without a copy.
 */
import { unreadable } from './corrupt.js';

const INTENT_TAG = 0x31544e49; // "INT1" read as little-endian
const ENTRY_BYTES = 8 + 8 + 8 + 8 + 4;

export interface IntentColumns {
  n: number;
  id: Float64Array;
  first: BigUint64Array;
  last: BigUint64Array;
  mapPos: Float64Array;
  caller: Uint32Array;
}

/**
 * Writes n intervals straight into the blob (no intermediate columns: a snapshot of the bench's
 * million-event ledger holds 380,000 intervals, 13 MB).
 */
export class IntentWriter {
  readonly buf: Buffer;
  private readonly c: IntentColumns;
  private i = 0;

  constructor(readonly n: number) {
    // Not from Buffer's shared pool: the columns need an 8-byte-aligned offset.
    this.buf = Buffer.alloc(8 + n * ENTRY_BYTES);
    this.buf.writeUInt32LE(INTENT_TAG, 0);
    this.buf.writeUInt32LE(n, 4);
    this.c = columnsOver(this.buf, n);
  }

  push(id: number, first: bigint, last: bigint, mapPos: number, caller: number): void {
    const i = this.i;
    if (i >= this.n) throw new RangeError(`intent snapshot: more than the ${this.n} intervals announced`);
    this.i++;
    this.c.id[i] = id;
    this.c.first[i] = first;
    this.c.last[i] = last;
    this.c.mapPos[i] = mapPos;
    this.c.caller[i] = caller;
  }

  encode(): Buffer {
    if (this.i !== this.n) throw new RangeError(`intent snapshot: ${this.i} intervals of the ${this.n} announced`);
    return this.buf;
  }
}

/**
 * Columns over the blob's bytes (copied once when they are not 8-byte aligned), every entry
 * checked before it is trusted: whole positive row ids and map events, a first byte not after the
 * last, a caller index below `callers` (the length of the snapshot's caller list). `what` names
 * the blob in the error (CorruptProjectionError: `rebuild` recomputes it).
 */
export function decodeIntent(blob: Uint8Array, callers = Infinity, what: () => string = () => 'an intent snapshot'): IntentColumns {
  if (!(blob instanceof Uint8Array)) throw unreadable(what(), `${blob === null ? 'NULL' : typeof blob} where a blob belongs`);
  const buf = blob;
  if (buf.byteLength < 8) throw unreadable(what(), `a blob of ${buf.byteLength} bytes is shorter than its 8-byte header`);
  const dv = new DataView(buf.buffer, buf.byteOffset, 8);
  if (dv.getUint32(0, true) !== INTENT_TAG) throw unreadable(what(), `not a blob of this format (tag 0x${dv.getUint32(0, true).toString(16)})`);
  const n = dv.getUint32(4, true);
  // Exact in doubles: a huge count cannot wrap around to the right length.
  if (buf.byteLength !== 8 + n * ENTRY_BYTES) throw unreadable(what(), `${buf.byteLength} bytes for ${n} entries of ${ENTRY_BYTES} bytes`);
  let bytes = buf;
  if (buf.byteOffset % 8 !== 0) {
    bytes = new Uint8Array(buf.byteLength);
    bytes.set(buf);
  }
  const c = columnsOver(bytes, n);
  const whole = (v: number) => Number.isInteger(v) && v >= 1 && v <= Number.MAX_SAFE_INTEGER;
  for (let i = 0; i < n; i++) {
    const bad = !whole(c.id[i]!)
      ? `row id ${c.id[i]}`
      : !whole(c.mapPos[i]!)
        ? `map event ${c.mapPos[i]}`
        : c.first[i]! > c.last[i]!
          ? 'a first byte after its last'
          : c.caller[i]! >= callers
            ? `caller ${c.caller[i]} of ${callers} names`
            : undefined;
    if (bad !== undefined) throw unreadable(what(), `entry ${i + 1} of ${n} has ${bad}`);
  }
  return c;
}

/** The columns of n entries over a blob's bytes (at an 8-byte-aligned offset). */
function columnsOver(bytes: Uint8Array, n: number): IntentColumns {
  if (bytes.byteOffset % 8 !== 0) throw new Error('internal: intent snapshot bytes are not 8-byte aligned');
  let o = bytes.byteOffset + 8;
  const take = <T>(make: (ab: ArrayBufferLike, at: number, len: number) => T, width: number): T => {
    const a = make(bytes.buffer, o, n);
    o += n * width;
    return a;
  };
  return {
    n,
    id: take((ab, at, len) => new Float64Array(ab, at, len), 8),
    first: take((ab, at, len) => new BigUint64Array(ab, at, len), 8),
    last: take((ab, at, len) => new BigUint64Array(ab, at, len), 8),
    mapPos: take((ab, at, len) => new Float64Array(ab, at, len), 8),
    caller: take((ab, at, len) => new Uint32Array(ab, at, len), 4),
  };
}
