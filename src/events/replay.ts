/**
 * Stored events replayed through the core: the one place that says how a decoded map or unmap
 * event (decode.ts) acts on a core `Domain`. The ledger's rebuild, `Ledger.domainBefore` (a
 * resumed import's starting state), import's profile fit and migrate's model of the source all
 * replay through here, so they agree on the rules:
 *
 * - a domain is created by its `domain-created` event, with the profile that event stores
 *   (covered by the hash chain; `streams.profile` is only a copy);
 * - every map is replayed, failed ones too (the core refuses them again, the same way; a rebuild
 *   counts a different outcome as a mismatch), with its stored `prot`, its position as the ref;
 *   a mapping inferred from before the trace is a map like any other for the pages;
 * - an unmap's pages follow the kernel's observed `unmapped` where they did when it was stored
 *   (`followsObserved`: every observed unmap except a divergent one stored without `followed`,
 *   by a what-if replay or before the flag existed), else the profile's prediction;
 * - `domain-destroyed` marks the domain destroyed and keeps its pages (nothing is replayed into it
 *   after); faults and device events do not change the pages.
 *
 * Pure: no I/O. Where a replay needs other rules, they are options here (`ReplayRules`).
 */
import { Domain, type MapAsker, type MapResult, type UnmapResult } from '../core/domain.js';
import { profileFromDescriptor, type Profile } from '../core/profile.js';
import type { DecodedBody, DomainCreatedFields, MapFields, UnmapFields } from './decode.js';
import { followsObserved } from './schema.js';

/** How a replay treats observed unmaps. */
export interface ReplayRules {
  /**
   * `'as-stored'` (the default): an unmap's pages follow the observation exactly where they did
   * when the event was stored (`followsObserved`), so the replay reproduces the ledger's pages.
   * `'always'`: every observed unmap follows the observation. For a replay under another profile
   * than the stored one (import's profile fit), where the stored prediction belongs to the stored
   * profile and says nothing about the candidate's: the kernel's report is the only authority.
   */
  followObserved?: 'as-stored' | 'always';
}

/** Does this replay make an unmap's pages follow the kernel's observed `unmapped`? */
export function followsInReplay(b: UnmapFields, rules?: ReplayRules): boolean {
  return rules?.followObserved === 'always' ? b.observed === true : followsObserved(b);
}

/** A stored map replayed: the same map again, `position` its ref (and `by` who asked, when the replay keeps it). */
export function replayMap(core: Domain, position: number, b: MapFields, by?: MapAsker): MapResult {
  return core.map({ iova: b.iova, paddr: b.paddr, size: b.size, prot: b.prot, ref: position, by });
}

/** A stored unmap replayed: the observation's pages or the profile's prediction (`followsInReplay`). */
export function replayUnmap(core: Domain, b: UnmapFields, rules?: ReplayRules): UnmapResult {
  const u = { iova: b.iova, size: b.size };
  return followsInReplay(b, rules) ? core.unmapObserved(u, b.unmapped) : core.unmap(u);
}

/** The core domain a `domain-created` event makes: its stored profile, unless the replay runs under another. */
export function createdDomain(b: DomainCreatedFields, profile?: Profile): Domain {
  return new Domain(profile ?? profileFromDescriptor(b.profile));
}

/** An event to replay: a decoded body with its position and stream. */
export type ReplayEvent = DecodedBody & { position: number; stream: string };

/** What replaying one event did: the core's result for a map or unmap. */
export type Replayed = { type: 'map'; result: MapResult; core: Domain } | { type: 'unmap'; result: UnmapResult; core: Domain };

/** One domain's replayed state. */
export interface ReplayedDomain {
  core: Domain;
  destroyed: boolean;
}

/**
 * Many domains replayed from a stream of decoded events (in position order), for the places that
 * keep nothing but the pages: `Ledger.domainBefore`, import's profile fit.
 */
export class DomainReplay {
  readonly domains = new Map<string, ReplayedDomain>();

  /** `profile`: replay every domain under this profile instead of its stored one (what-if: import's profile fit). */
  constructor(private readonly opts: ReplayRules & { profile?: Profile } = {}) {}

  /** Applies one event. Events of a domain before its `domain-created` (none in a ledger) are skipped. */
  apply(ev: ReplayEvent): Replayed | undefined {
    if (ev.type === 'domain-created') {
      this.domains.set(ev.stream, { core: createdDomain(ev.body, this.opts.profile), destroyed: false });
      return undefined;
    }
    const d = this.domains.get(ev.stream);
    if (!d) return undefined;
    if (ev.type === 'map') return { type: 'map', result: replayMap(d.core, ev.position, ev.body), core: d.core };
    if (ev.type === 'unmap') return { type: 'unmap', result: replayUnmap(d.core, ev.body, this.opts), core: d.core };
    if (ev.type === 'domain-destroyed') d.destroyed = true;
    return undefined;
  }
}
