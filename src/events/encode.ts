/**
 * The stored bodies of map and unmap events made from their decoded fields (decode.ts gives the
 * fields back): addresses as hex text, the keys in the order every stored event has always had
 * them, since the hash chain covers the bytes.
 */
import { hex } from '../core/address.js';
import type { MapFields, UnmapFields } from './decode.js';
import type { MapBody, UnmapBody } from './schema.js';

export function encodeMapBody(f: MapFields): MapBody {
  const b: MapBody = { iova: hex(f.iova), paddr: hex(f.paddr), size: hex(f.size), prot: f.prot, ok: f.ok };
  if (f.inferred !== undefined) b.inferred = f.inferred;
  if (f.errno !== undefined) b.errno = f.errno;
  if (f.reason !== undefined) b.reason = f.reason;
  return b;
}

export function encodeUnmapBody(f: UnmapFields): UnmapBody {
  const b: UnmapBody = { iova: hex(f.iova), size: hex(f.size), ok: f.ok, unmapped: hex(f.unmapped) };
  if (f.errno !== undefined) b.errno = f.errno;
  if (f.reason !== undefined) b.reason = f.reason;
  if (f.observed) {
    b.observed = true;
    if (f.predicted !== undefined) b.predicted = hex(f.predicted);
    if (f.followed) b.followed = true;
  }
  return b;
}
