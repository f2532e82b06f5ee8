/**
 * The renderers word the read layer's data (issue 15): each kind of `explain` answer, each note and
 * fix of the caller analysis, each stepped/harmful verdict, from hand-built values, so that a
 * sentence can be checked without a ledger that happens to produce it.
 */
import { describe, expect, it } from 'vitest';
import { apartText, explainJson, explainText } from '../../src/cli/render/explain.js';
import { callerAdvice, callerVerdict, exampleText, withWords } from '../../src/cli/render/callers.js';
import { describePage, whoText } from '../../src/cli/render/words.js';
import { findingJson } from '../../src/cli/render/findings.js';
import { stepText, verdictCountsText } from '../../src/cli/render/verdicts.js';
import type { CallerFix, CallerNote, CallerView } from '../../src/projections/callers.js';
import type { BlameView, EventSummary, Explanation, ExplainAnswer, FaultView, FindingView, PageView } from '../../src/projections/queries.js';

const ev = (position: number, type: string, body: Record<string, unknown>, extra: Partial<EventSummary> = {}): EventSummary => ({
  position,
  domain: 'gpu0',
  type,
  recordedAt: '2026-11-23T10:00:00.000Z',
  who: { caller: 'vfio', site: 'drivers/vfio/vfio_iommu_type1.c:1502' },
  body,
  ...extra,
});
const MAP = ev(23, 'map', { iova: '0x200000', paddr: '0x80000000', size: '0x200000', prot: 3, ok: true }, { time: '2026-11-23T10:00:01Z' });
const UNMAP = ev(
  26,
  'unmap',
  { iova: '0x201000', size: '0x1000', ok: true, unmapped: '0x200000' },
  { who: { caller: 'kvm', site: 'virt/kvm/iommu.c:283' }, time: '2026-11-23T10:00:05Z' },
);
const PAGE: PageView = { iova: 0x200000n, paddr: 0x80000000n, pageSize: 0x200000n, count: 1n, prot: 3, level: 1, mappedBy: 23, validFrom: 23, row: 7 };
const BLAME: BlameView = { domain: 'gpu0', iova: 0x202010n, at: 37, chain: [] };
const FAULT: FaultView = {
  position: 27,
  domain: 'gpu0',
  iova: 0x202010n,
  device: '0000:00:02.0',
  cause: 'use-after-collateral-unmap',
  detail: {},
  time: '2026-11-23T10:00:06Z',
};

const finding = (over: Partial<FindingView> = {}): FindingView => ({
  position: 26,
  domain: 'gpu0',
  caller: 'kvm',
  site: 'virt/kvm/iommu.c:283',
  requested: { iova: 0x201000n, size: 0x1000n },
  unmappedSize: 0x200000n,
  predicted: 0x200000n,
  divergent: false,
  ok: true,
  collateral: [],
  leftMapped: [],
  ...over,
});

function explanation(answer: ExplainAnswer, rest: Partial<Explanation> = {}): Explanation {
  return { domain: 'gpu0', iova: 0x202010n, asOf: 37, ...answer, faultNotes: [], blame: BLAME, findings: [], faults: [], ...rest } as Explanation;
}

const overUnmapped = (over: Partial<Extract<ExplainAnswer, { kind: 'over-unmapped' }>> = {}): ExplainAnswer => ({
  kind: 'over-unmapped',
  event: UNMAP,
  request: { iova: 0x201000n, size: 0x1000n },
  map: MAP,
  inferred: false,
  run: PAGE,
  removed: { iova: 0x200000n, size: 0x200000n, paddr: 0x80000000n },
  removal: 'driver-removed-page',
  owners: ['vfio'],
  ...over,
});

describe('explain: one sentence per kind of answer', () => {
  it('mapped, by a caller or inferred from before the trace; the unmaps that left it mapped', () => {
    const mapped: ExplainAnswer = { kind: 'mapped', page: PAGE, map: MAP, inferred: false, mapRange: { iova: 0x200000n, size: 0x200000n }, leftBy: [] };
    expect(explainText(explanation(mapped))).toBe(
      '0x202010 in domain gpu0 is mapped as of event #37: a 2M page at 0x200000..0x400000 -> 0x80000000 (rw), mapped at 2026-11-23T10:00:01Z by vfio at drivers/vfio/vfio_iommu_type1.c:1502 (event #23, map of 0x200000+2M).',
    );
    expect(explainText(explanation({ ...mapped, inferred: true }))).toBe(
      '0x202010 in domain gpu0 is mapped as of event #37: a 2M page at 0x200000..0x400000 -> 0x80000000 (rw); it was mapped before the trace began (event #23, inferred from the unmap that removes it: its physical address and caller are unknown).',
    );
    const left = [finding({ ok: true, unmappedSize: 0x1000n }), finding({ position: 30, caller: 'gst', ok: false, errno: 'EINVAL' })];
    expect(explainText(explanation({ ...mapped, leftBy: left }))).toMatch(
      / It was left mapped: kvm asked to unmap 0x201000\+4K at event #26, but the unmap returned 4K and stopped before it\. It was left mapped: gst asked to unmap 0x201000\+4K at event #30, but the unmap was refused \(EINVAL\)\.$/,
    );
  });

  it('unmapped, by an unmap whose request held it (a caller, or a mapping inferred from before the trace)', () => {
    const unmapped: ExplainAnswer = { kind: 'unmapped', event: UNMAP, request: { iova: 0x202000n, size: 0x1000n }, map: MAP, inferred: false };
    expect(explainText(explanation(unmapped))).toBe(
      '0x202010 in domain gpu0 is not mapped as of event #37: kvm at virt/kvm/iommu.c:283 unmapped it at 2026-11-23T10:00:05Z (event #26, unmap of 0x202000+4K); it had been mapped by vfio at drivers/vfio/vfio_iommu_type1.c:1502 at event #23.',
    );
    expect(explainText(explanation({ ...unmapped, inferred: true }))).toMatch(
      /; it had been mapped before the trace began \(event #23: inferred from that unmap's unmapped_size, which proves a mapping the trace never showed\)\.$/,
    );
  });

  it('over-unmapped: each removal, who still wanted it, and the verdict (none, harmful, stepped, pending)', () => {
    expect(explainText(explanation(overUnmapped()))).toBe(
      '0x202010 in domain gpu0 is not mapped as of event #37 because of an over-unmap: kvm at virt/kvm/iommu.c:283 asked to unmap only 0x201000+4K at 2026-11-23T10:00:05Z (event #26), ' +
        'but the driver removed the whole page — a 2M page at 0x200000..0x400000 -> 0x80000000 (rw) — which vfio at drivers/vfio/vfio_iommu_type1.c:1502 had mapped at event #23; vfio still meant it to be mapped.',
    );
    const run4k: PageView = { ...PAGE, pageSize: 0x1000n, count: 512n, level: 0 };
    expect(
      explainText(explanation(overUnmapped({ run: run4k, removed: { iova: 0x202000n, size: 0x2000n, paddr: 0x80002000n }, removal: 'driver-removed-pages' }))),
    ).toContain('but the driver removed whole pages — 2 4K pages at 0x202000..0x204000 -> 0x80002000 (rw) — ');
    expect(
      explainText(explanation(overUnmapped({ removed: { iova: 0x200000n, size: 0x2000n, paddr: 0x80000000n }, removal: 'unmap-removed-more' }))),
    ).toContain('but the unmap removed more — 8K at 0x200000..0x202000 -> 0x80000000 (rw) of a 2M page at 0x200000..0x400000 -> 0x80000000 (rw) — ');
    expect(explainText(explanation(overUnmapped({ inferred: true, owners: [] })))).toContain(
      '— which was mapped before the trace began (event #23, inferred).',
    );
    const harmful = finding({ step: { verdict: 'harmful', reason: 'other-owner', at: 26, others: ['vfio'] } });
    expect(explainText(explanation(overUnmapped({ finding: harmful })))).toMatch(/; vfio still meant it to be mapped\. Harmful: the collateral was vfio's\.$/);
    // Stepped: the caller itself no longer wants it; a verdict settled after the point says so.
    const stepped = finding({
      caller: 'vfio',
      step: { verdict: 'stepped', reason: 'advanced', at: 40 },
    });
    // (Where the removal ended, as the finding has it: the request's start plus the size the unmap returned.)
    expect(explainText(explanation(overUnmapped({ finding: stepped })))).toMatch(
      /had mapped at event #23\. It was a stepped over-unmap, not a loss: the caller's next unmap \(#40\) started where the removed page ended \(0x401000\): it consumed the returned size — shown after #37\.$/,
    );
    const pending = finding({ step: { verdict: 'pending', reason: 'pending' } });
    expect(explainText(explanation(overUnmapped({ finding: pending })))).toMatch(
      /; vfio still meant it to be mapped\. Whether kvm stepped past it is not known yet: no later unmap by it\.$/,
    );
  });

  it('destroyed, never mapped; the faults it names, placed relative to the event named', () => {
    const destroyed = ev(40, 'domain-destroyed', {}, { time: '511.200000' });
    expect(explainText(explanation({ kind: 'destroyed', event: destroyed }))).toBe(
      '0x202010 in domain gpu0 is not mapped as of event #37: the domain was destroyed at 511.200000 s (event #40).',
    );
    const never = explanation({ kind: 'never-mapped' }, { faultNotes: [{ fault: { ...FAULT, time: '511.1' }, relation: 'recorded' }] });
    expect(explainText(never)).toBe(
      '0x202010 in domain gpu0 was never mapped up to event #37. A fault at 0x202010 from 0000:00:02.0 at event #27 (511.1 s) was recorded (use after collateral unmap).',
    );
    const notes = [
      { fault: FAULT, relation: 'followed' as const },
      { fault: { ...FAULT, position: 20, device: undefined } as FaultView, relation: 'came-before' as const, apartMicros: 1500 },
      { fault: FAULT, relation: 'followed' as const, apartMicros: 2_500_000 },
    ];
    expect(explainText(explanation(overUnmapped(), { faultNotes: notes }))).toMatch(
      /\. A fault at 0x202010 from 0000:00:02\.0 at event #27 \(2026-11-23T10:00:06Z\) followed \(use after collateral unmap\)\. A fault at 0x202010 at event #20 \(2026-11-23T10:00:06Z\) came 1\.5 ms before it \(use after collateral unmap\)\. .* followed 2\.500 s later \(use after collateral unmap\)\.$/,
    );
    expect([apartText(999), apartText(1000), apartText(1500), apartText(1_000_000)]).toEqual(['999 µs', '1 ms', '1.5 ms', '1.000 s']);
  });

  it('--json is the data, with the sentence as text and the fields that existed before', () => {
    const j = explainJson(explanation(overUnmapped({ finding: finding() }), { faults: [FAULT] }));
    expect(j).toMatchObject({ kind: 'over-unmapped', domain: 'gpu0', iova: 0x202010n, asOf: 37, removal: 'driver-removed-page', owners: ['vfio'] });
    expect(j.text).toBe(explainText(explanation(overUnmapped({ finding: finding() }))));
    expect(j.removed).toEqual({ iova: 0x200000n, size: 0x200000n, paddr: 0x80000000n });
    expect(Object.keys(j)).toEqual(expect.arrayContaining(['text', 'blame', 'findings', 'faults', 'removed', 'faultNotes', 'event', 'map', 'request']));
    expect((j.finding as { requested: unknown }).requested).toEqual({ iova: '0x201000', size: '0x1000' });
    expect(explainJson(explanation({ kind: 'never-mapped' })).removed).toBeUndefined();
  });
});

describe('verdicts: the words of each stepped/harmful verdict, and of the counts', () => {
  it('each reason, in `audit --json` after the data (the read layer gives the data only)', () => {
    const words = (step: NonNullable<FindingView['step']>) => findingJson(finding({ step })).step;
    expect(words({ verdict: 'stepped', reason: 'advanced', at: 40 })).toEqual({
      verdict: 'stepped',
      reason: 'advanced',
      at: 40,
      text: "stepped: the caller's next unmap (#40) started where the removed page ended (0x401000): it consumed the returned size",
    });
    expect(Object.keys(words({ verdict: 'harmful', reason: 'reused', at: 41, others: ['y'] })!)).toEqual(['verdict', 'reason', 'at', 'others', 'text']);
    const text = (step: NonNullable<FindingView['step']>) => stepText(finding({ step }));
    expect([
      text({ verdict: 'stepped', reason: 'ended', at: 26 }),
      text({ verdict: 'stepped', reason: 'covered', at: 30 }),
      text({ verdict: 'stepped', reason: 'remapped', at: 31 }),
      text({ verdict: 'harmful', reason: 'fault', at: 27 }),
      text({ verdict: 'harmful', reason: 'reused', at: 28, others: ['y', 'z'] }),
      text({ verdict: 'harmful', reason: 'not-stepped', at: 29 }),
      text({ verdict: 'harmful', reason: 'other-owner', at: 26, others: ['vfio'] }),
      text({ verdict: 'pending', reason: 'pending' }),
    ]).toEqual([
      "stepped: the removed page ended where the caller's own map ended (the last step of a loop that consumes the returned size)",
      "stepped: the caller's following unmaps asked for all the collateral (#30), before anybody else used it",
      'stepped: the caller mapped into the collateral again itself (#31): it knew the range was free',
      'harmful: an IO page fault (#27) hit the collateral',
      'harmful: y, z mapped into the collateral (#28) before the caller stepped past it',
      "harmful: the caller's next unmap (#29) went elsewhere: it did not step past the collateral, so it may still count on it",
      "harmful: the collateral was vfio's",
      'harmful until shown otherwise: no later unmap by the caller yet',
    ]);
    expect(stepText(finding())).toBeUndefined();
    expect(findingJson(finding())).not.toHaveProperty('step');
  });

  it('the counts after a summary: nothing when all are harmful', () => {
    expect(verdictCountsText({ stepped: 0, harmful: 3, pending: 0 })).toBe('');
    expect(verdictCountsText({ stepped: 2, harmful: 1, pending: 0 })).toBe(' (1 harmful; 2 stepped: the caller consumed the returned size)');
    expect(verdictCountsText({ stepped: 0, harmful: 0, pending: 1 })).toBe(
      ' (0 harmful; 0 stepped: the caller consumed the returned size; 1 not decided yet: no later unmap by the caller)',
    );
  });
});

describe('shared phrases', () => {
  it('a page or run of pages (with its article), and who issued a command', () => {
    expect(describePage({ ...PAGE, pageSize: 0x2000n, iova: 0x2000n, paddr: 0x104000n })).toBe('an 8K page at 0x2000..0x4000 -> 0x104000 (rw)');
    expect(describePage({ ...PAGE, pageSize: 0x1000n, count: 3n, iova: 0x0n, paddr: 0x0n, prot: 1 })).toBe('3 4K pages at 0x0..0x3000 -> 0x0 (r-)');
    expect(whoText({ caller: 'vfio-dma', pid: 185 })).toBe('vfio-dma (pid 185)');
    expect(whoText({ caller: 'vfio', task: 'qemu', pid: 9, site: 'x.c:1' })).toBe('vfio at x.c:1 (task qemu, pid 9)');
    expect(whoText({ task: 'kworker/2:1H', pid: 201 })).toBe('kworker/2:1H (pid 201)');
    expect(whoText({})).toBe('an unknown caller');
  });
});

const caller = (notes: CallerNote[], fix?: CallerFix, over: Partial<CallerView> = {}): CallerView => ({
  domain: 'gpu0',
  caller: 'kvm',
  site: 'virt/kvm/iommu.c:283',
  maps: 0,
  unmaps: 1,
  exact: 0,
  spans: 0,
  cuts: 1,
  straddles: 0,
  misses: 0,
  foreign: 1,
  unmapBytes: 0x1000n,
  cutBytes: 0x1ff000n,
  readiness: 0,
  behaviours: {
    legacy: { overUnmaps: 1, overBytes: 0x1ff000n, leftMapped: 0, leftBytes: 0n, refused: 0 },
    split: { overUnmaps: 0, overBytes: 0n, leftMapped: 0, leftBytes: 0n, refused: 0 },
    strict: { overUnmaps: 0, overBytes: 0n, leftMapped: 0, leftBytes: 0n, refused: 1 },
  },
  safePage: 0x1000n,
  largestPage: 0x200000n,
  cutMapsBy: ['vfio at drivers/vfio/vfio_iommu_type1.c:1502'],
  missesAfterOverUnmap: 0,
  overUnmaps: { stepped: 0, harmful: 1, pending: 0 },
  examples: [],
  notes,
  ...(fix ? { fix } : {}),
  ...over,
});

describe('callers: a phrase per note, a sentence per fix', () => {
  it('notes', () => {
    const v = caller([
      { kind: 'symmetric' },
      { kind: 'partial', cuts: 1, straddles: 0, risk: { kind: 'over-unmapped', bytes: 0x1ff000n, unmaps: 1, largestPage: 0x200000n, safePage: 0x1000n } },
      { kind: 'partial', cuts: 2, straddles: 1, risk: { kind: 'over-unmapped', bytes: 0x2000n, unmaps: 2, largestPage: 0x2000n, safePage: 0n } },
      { kind: 'partial', cuts: 0, straddles: 3, risk: { kind: 'page-dependent', largestPage: 0x1000n, safePage: 0x1000n } },
      { kind: 'partial', cuts: 1, straddles: 0, risk: { kind: 'harmless' } },
      { kind: 'steps', stepped: 1, others: 0 },
      { kind: 'steps', stepped: 3, others: 2 },
      { kind: 'strict-refuses', refused: 1 },
      { kind: 'leaves-mapped', unmaps: 2, bytes: 0x3000n },
      { kind: 'misses', misses: 1, afterOverUnmap: 1 },
      { kind: 'misses', misses: 3, afterOverUnmap: 1 },
      { kind: 'misses', misses: 2, afterOverUnmap: 0 },
      { kind: 'foreign', unmaps: 1 },
      { kind: 'no-unmaps' },
    ]);
    expect(callerVerdict(v)).toEqual([
      'symmetric: every unmap removes whole maps',
      'cuts a map once; over-unmapped 2044K in 1 unmap on this hardware (pages up to 2M; the cuts are harmless only on pages up to 4K)',
      "cuts a map 2 times and crosses a map's edge once; over-unmapped 8K in 2 unmaps on this hardware (pages up to 8K)",
      "crosses a map's edge 3 times; harmless on 4K pages, over-unmaps if that map used a page larger than 4K",
      'cuts a map once; harmless on these pages',
      "steps by the returned size: each of its 1 over-unmap removed a whole page of its own map and its next unmap started where that page ended (or the map did): nothing it still wanted was lost (VFIO's vfio_unmap_unpin() works this way)",
      'steps by the returned size in 3 of its over-unmaps; 2 took pages somebody still relied on (audit over-unmaps --caller kvm lists them)',
      'strict unmap (VFIO type1 v2, iommufd) refuses 1 of them',
      'leaves pages mapped 2 times under the legacy loop (12K: it stops at a hole)',
      "unmaps nothing once (each right after another unmap had over-unmapped the range: not this caller's bug)",
      'unmaps nothing 3 times (1 of them right after another unmap had over-unmapped the range; the others: a double unmap, or a trace that starts mid-stream)',
      'unmaps nothing 2 times (a double unmap, or a trace that starts mid-stream)',
      "removes another caller's mapping once",
      'no unmaps',
    ]);
  });

  it('fixes, named by site (or by caller alone when it has no site)', () => {
    const sizes = { unmapSize: 0x1000n, mapSize: 0x200000n };
    const advice = (fix: CallerFix, over: Partial<CallerView> = {}) => callerAdvice(caller([], fix, over));
    expect(advice({ kind: 'stepper' }, { caller: 'vfio', site: '' })).toBe(
      'vfio steps by the returned size (correct under the 2011 semantics): to make it symmetric, unmap each map as it was mapped — migrate --strategy unmap-as-mapped --caller vfio',
    );
    expect(advice({ kind: 'others-map-pieces', ...sizes, mappers: ['vfio at drivers/vfio/vfio_iommu_type1.c:1502'], others: ['vfio'] })).toBe(
      'kvm at virt/kvm/iommu.c:283 unmaps 4K pieces of 2M maps made by vfio at drivers/vfio/vfio_iommu_type1.c:1502: vfio should map in 4K pieces, or kvm unmap the whole 2M (and only its own maps)',
    );
    expect(advice({ kind: 'unmap-as-mapped', unmapSize: 0x200000n, mapSize: 0x1000n })).toBe(
      'kvm at virt/kvm/iommu.c:283 unmaps 2M across maps of 4K: unmap each map as it was mapped',
    );
    expect(advice({ kind: 'own-pieces', ...sizes })).toBe('kvm at virt/kvm/iommu.c:283 maps 2M and unmaps 4K pieces: map in 4K pieces or unmap the whole 2M');
    expect(advice({ kind: 'pieces', ...sizes, mappers: ['kvm at a.c:1', 'kvm at b.c:2'] })).toBe(
      'kvm at virt/kvm/iommu.c:283 unmaps 4K pieces of 2M maps made by kvm at a.c:1, kvm at b.c:2: map in 4K pieces there, or unmap the whole 2M here',
    );
    expect(advice({ kind: 'foreign' })).toBe('kvm at virt/kvm/iommu.c:283 unmaps ranges another caller mapped: unmap only what it mapped itself');
    expect(advice({ kind: 'double-unmaps' }, { site: '' })).toBe('kvm: check for double unmaps (or import the trace from its start)');
    expect(callerAdvice(caller([]))).toBeUndefined();
  });

  it('examples, and --json: the data with verdict and advice', () => {
    const ex = {
      position: 26,
      class: 'cuts' as const,
      foreign: true,
      iova: 0x201000n,
      size: 0x1000n,
      maps: [{ position: 23, iova: 0x200000n, size: 0x200000n, caller: 'vfio', site: 'x.c:1' }],
      keptBytes: 0x1ff000n,
      largestPage: 0x200000n,
      legacy: { over: 0x1ff000n, left: 0n },
      split: { over: 0n, left: 0n },
      strict: { left: 0x1000n, errno: 'EINVAL' },
    };
    expect(exampleText(ex)).toBe(
      "#26 unmap 0x201000+4K cuts (another caller's map) [#23 0x200000+2M by vfio at x.c:1]: legacy over 2044K, split exact, strict refused (EINVAL)",
    );
    expect(exampleText({ ...ex, class: 'misses', foreign: false, maps: [], missedAfter: 5 })).toBe(
      '#26 unmap 0x201000+4K misses: nothing was mapped there (unmap #5 had over-unmapped it)',
    );
    const v = caller([{ kind: 'foreign', unmaps: 1 }], { kind: 'foreign' });
    expect(withWords(v)).toEqual({ ...v, verdict: ["removes another caller's mapping once"], advice: callerAdvice(v) });
    expect('advice' in withWords(caller([{ kind: 'no-unmaps' }]))).toBe(false);
  });
});
