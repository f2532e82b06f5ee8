/**
 * A stored event turned back into the command that produced it (for replay and migrate, which
 * re-run a ledger's commands into a new ledger), from its decoded form (decode.ts): addresses as
 * bigint, which parseCommand takes as they are.
 */
import { profileFromDescriptor, resolveProfile, type ProfileDescriptor, type Semantics } from '../core/profile.js';
import type { DecodedEvent } from './decode.js';
import { followsObserved } from './schema.js';

export interface DomainOverride {
  semantics?: Semantics;
  /** A built-in profile name to use instead of the stored one. */
  profile?: string;
}

/**
 * The command (raw, for parseCommand) that re-creates an event. Given and source ids carry over
 * (so a replay can be re-run idempotently); derived ones ('@') are re-derived by the new ledger.
 */
export function commandFromEvent(ev: DecodedEvent, o: DomainOverride = {}, keepId = true): Record<string, unknown> {
  const base: Record<string, unknown> = { domain: ev.stream, ...ev.who, ...(ev.time ? { time: ev.time } : {}) };
  if (keepId && !ev.id.startsWith('@')) base.id = ev.id;
  let cmd: Record<string, unknown>;
  switch (ev.type) {
    case 'domain-created': {
      const d = ev.body.profile;
      const semantics = o.semantics ?? (o.profile ? undefined : d.semantics);
      if (o.profile) cmd = { op: 'domain', ...base, profile: o.profile, semantics };
      else if (isBuiltin(d)) cmd = { op: 'domain', ...base, profile: d.name, semantics };
      else cmd = { op: 'domain', ...base, profile: d.base, pgsizeBitmap: d.pgsizeBitmap, iovaBits: d.iovaBits, semantics, emptyUnmapErrno: d.emptyUnmapErrno };
      break;
    }
    case 'map': {
      const b = ev.body;
      cmd = { op: 'map', ...base, iova: b.iova, paddr: b.paddr, size: b.size, prot: b.prot, inferred: b.inferred };
      break;
    }
    case 'unmap': {
      const b = ev.body;
      // What the trace saw stays what it saw: only the prediction changes. Under another profile
      // or behaviour (a what-if), the pages follow that prediction; otherwise as they did.
      cmd = {
        op: 'unmap',
        ...base,
        iova: b.iova,
        size: b.size,
        observedUnmapped: b.observed === true ? b.unmapped : undefined,
        followPrediction: b.observed === true && (o.semantics !== undefined || o.profile !== undefined || !followsObserved(b)) ? true : undefined,
      };
      break;
    }
    case 'fault': {
      const b = ev.body;
      cmd = { op: 'fault', ...base, iova: b.iova, device: b.device, driver: b.driver, flags: b.flags };
      break;
    }
    case 'device-attached':
    case 'device-detached':
      cmd = { op: ev.type === 'device-attached' ? 'attach' : 'detach', ...base, device: ev.body.device, groupId: ev.body.groupId };
      break;
    default:
      cmd = { op: 'destroy', ...base };
  }
  for (const k of Object.keys(cmd)) if (cmd[k] === undefined) delete cmd[k];
  return cmd;
}

/** Is this descriptor exactly a built-in profile (by name, page sizes and width)? */
function isBuiltin(d: ProfileDescriptor): boolean {
  try {
    const p = resolveProfile(d.name);
    return profileFromDescriptor(d).format === p.format;
  } catch {
    return false;
  }
}
