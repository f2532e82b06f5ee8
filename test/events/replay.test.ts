/**
 * The shared replay of stored events through the core (src/events/replay.ts): replaying a
 * ledger's stored events reproduces the pages its writer computed, whatever mix of predicted,
 * observed, divergent and what-if unmaps it holds; `domainBefore` is that replay cut at a
 * position; and the rule for observed unmaps is the one each place asks for.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { Domain } from '../../src/core/domain.js';
import { BUILTIN_PROFILES, describeProfile, resolveProfile } from '../../src/core/profile.js';
import { DomainReplay, replayUnmap, type ReplayEvent } from '../../src/events/replay.js';
import { Ledger } from '../../src/projections/ledger.js';
import { tempDb } from '../ledger/helpers.js';

const PAGE = 0x1000;
const hexOf = (n: number) => `0x${n.toString(16)}`;

/** The live runs of a core domain, comparable. */
function pages(d: Domain | undefined): string[] {
  if (!d) return [];
  return [...d.runs()].map((r) => `${r.iova.toString(16)}:${r.paddr.toString(16)}:${r.pageSize.toString(16)}x${r.count}@${r.level}#${r.origin.ref}`);
}

/**
 * Random histories on one domain whose unmaps may carry what a trace observed (the size asked, one
 * page, a 2M block, nothing), and may ask for the prediction's pages (a what-if, stored divergent
 * without `followed`).
 */
function historyArb(profile: string) {
  const cmd = fc.oneof(
    fc.record({
      op: fc.constant('map' as const),
      page: fc.integer({ min: 0, max: 2047 }),
      pages: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constantFrom(512, 1024)),
    }),
    fc.record({
      op: fc.constant('unmap' as const),
      page: fc.integer({ min: 0, max: 2047 }),
      pages: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constantFrom(512)),
      observed: fc.constantFrom(undefined, 'size', 'page', '2M', 'none'),
      whatIf: fc.boolean(),
    }),
  );
  return fc.array(cmd, { minLength: 1, maxLength: 50, size: 'max' }).map((cmds) => [
    { op: 'domain', domain: 'd0', profile },
    ...cmds.map((c) => {
      const page = c.pages >= 512 ? c.page & ~511 : c.page;
      const iova = hexOf(0x4000_0000 + page * PAGE);
      const size = c.pages * PAGE;
      if (c.op === 'map') return { op: 'map', domain: 'd0', iova, paddr: hexOf(0x8_0000_0000 + page * PAGE), size: hexOf(size), caller: 'a' };
      const u: Record<string, unknown> = { op: 'unmap', domain: 'd0', iova, size: hexOf(size), caller: 'a' };
      if (c.observed !== undefined) {
        u.observedUnmapped = hexOf({ size, page: PAGE, '2M': 0x200000, none: 0 }[c.observed]);
        if (c.whatIf) u.followPrediction = true;
      }
      return u;
    }),
  ]);
}

describe('the shared replay of stored events', () => {
  const open: Ledger[] = [];
  afterEach(() => {
    for (const l of open.splice(0)) l.close();
  });

  it('property: replaying the stored events gives the pages the ledger computed, and every stored outcome again; domainBefore is the replay cut at a position', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...BUILTIN_PROFILES.map((p) => p.name)).chain((p) => historyArb(p)),
        fc.nat(),
        (cmds, cut) => {
          const ledger = new Ledger(tempDb());
          open.push(ledger);
          const pagesAt: string[][] = [[]];
          for (const c of cmds) {
            try {
              ledger.appendRaw([c]);
            } catch {
              continue; // a command the ledger refuses is not stored
            }
            pagesAt[ledger.lastPosition] = pages(ledger.peek('d0'));
          }
          const replay = new DomainReplay();
          for (const ev of ledger.store.events()) {
            const r = replay.apply(ev);
            if (ev.type === 'map') expect(r?.type === 'map' && r.result.ok).toBe(ev.body.ok);
            if (ev.type === 'unmap' && r?.type === 'unmap') {
              expect(r.result.ok).toBe(ev.body.ok);
              expect(r.result.predicted ?? r.result.unmappedSize).toBe(ev.body.predicted ?? ev.body.unmapped);
            }
            expect(pages(replay.domains.get('d0')?.core)).toEqual(pagesAt[ev.position]);
          }
          expect(pages(replay.domains.get('d0')?.core)).toEqual(pages(ledger.peek('d0')));
          const p = 1 + (cut % ledger.lastPosition);
          const before = ledger.domainBefore('d0', p + 1);
          expect(pages(before?.core)).toEqual(pagesAt[p]);
          expect(before?.destroyed).toBe(false);
          ledger.close();
          open.pop();
        },
      ),
      { numRuns: 40 },
    );
  });

  // omap: a 4K unmap inside a 1M section removes the whole section (legacy), but a trace saw the kernel report 4K.
  const omap = resolveProfile('omap');
  const events = (unmap: Record<string, unknown>): ReplayEvent[] => [
    { type: 'domain-created', body: { profile: describeProfile(omap) }, position: 1, stream: 'd' },
    { type: 'map', body: { iova: 0x100000n, paddr: 0x80000000n, size: 0x100000n, prot: 3, ok: true }, position: 2, stream: 'd' },
    { type: 'unmap', body: { iova: 0x100000n, size: 0x1000n, ok: true, unmapped: 0x1000n, ...unmap }, position: 3, stream: 'd' } as ReplayEvent,
  ];
  const replayed = (evs: ReplayEvent[], opts?: ConstructorParameters<typeof DomainReplay>[0]) => {
    const r = new DomainReplay(opts);
    for (const ev of evs) r.apply(ev);
    return r.domains.get('d')!.core;
  };

  it('an observed unmap stored as followed replays the observation; a what-if one (divergent, no `followed`) the prediction, unless the replay follows every observation', () => {
    const followed = replayed(events({ observed: true, predicted: 0x100000n, followed: true }));
    const whatIf = replayed(events({ observed: true, predicted: 0x100000n }));
    const always = replayed(events({ observed: true, predicted: 0x100000n }), { followObserved: 'always' });
    expect(pages(whatIf)).toEqual([]); // the whole 1M section went, as the profile predicts
    expect(followed.mappedIn({ start: 0x101000n, end: 0x200000n })).toEqual([{ start: 0x101000n, end: 0x200000n }]);
    expect(pages(always)).toEqual(pages(followed));
    // Not observed: the prediction, under either rule.
    const predicted = events({ unmapped: 0x100000n });
    expect(pages(replayed(predicted, { followObserved: 'always' }))).toEqual([]);
    expect(pages(replayed(predicted))).toEqual([]);
  });

  it('a replay under another profile makes every domain with that profile; its divergences are the unmaps whose observation that profile does not predict', () => {
    const arm = resolveProfile('arm-lpae-4k');
    const core = replayed(events({ observed: true }), { profile: arm, followObserved: 'always' });
    expect(core.profile).toBe(arm);
    const d = replayed(events({}).slice(0, 2), { profile: arm });
    const u = replayUnmap(d, { iova: 0x100000n, size: 0x1000n, ok: true, unmapped: 0x100000n, observed: true }, { followObserved: 'always' });
    expect(u.predicted).toBe(0x1000n); // split-on-unmap predicts the 4K asked, the trace said 1M
  });

  it('events of a domain are replayed only after its domain-created; a destroyed domain keeps its pages', () => {
    const r = new DomainReplay();
    const [created, map] = events({});
    expect(r.apply(map!)).toBeUndefined();
    r.apply(created!);
    r.apply(map!);
    r.apply({ type: 'domain-destroyed', body: {}, position: 4, stream: 'd' });
    expect(r.domains.get('d')!.destroyed).toBe(true);
    expect(pages(r.domains.get('d')!.core)).toHaveLength(1);
  });
});
