/**
 * Self-tests of the trace generator (test/import/gen/): its text is what the parser reads as
 * records, in the kernel's print order and format; its truth replays through the core; its
 * oracle is consistent; and shrinking keeps traces valid.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { Domain } from '../../src/core/domain.js';
import { resolveProfile } from '../../src/core/profile.js';
import { parseTraceLine, parseTraceText, type TraceEventKind } from '../../src/import/parse.js';
import {
  IovaDomain,
  depthUnion,
  generateTrace,
  makeRecipe,
  normalize,
  traceArb,
  type ByteRange,
  type GeneratedTrace,
  type MapEvent,
  type TruthEvent,
  type UnmapEvent,
} from './gen/index.js';

const RUNS = 60;

const KIND: Record<TruthEvent['kind'], TraceEventKind> = {
  map: 'map',
  unmap: 'unmap',
  fault: 'io_page_fault',
  attach: 'attach',
  group: 'add_to_group',
};

/** Every line: a header, or a record whose fields are the truth's. */
function checkParses(t: GeneratedTrace): void {
  t.lines.forEach((line, i) => {
    const lineNo = i + 1;
    const res = parseTraceLine(line);
    const o = t.oracle.line(lineNo);
    if (!o) {
      assert.ok(res.kind === 'skip' && res.why === 'header', `line ${lineNo} is not a header: ${line}`);
      return;
    }
    if (res.kind !== 'record') assert.fail(`line ${lineNo} does not parse as a record: ${line}\n${res.kind === 'error' ? res.reason : res.why}`);
    const r = res.record;
    const ev = o.event;
    assert.equal(r.source, 'ftrace');
    assert.equal(r.event, KIND[ev.kind], line);
    assert.equal(r.task, o.comm, line);
    assert.equal(r.pid, ev.pid, line);
    assert.equal(r.cpu, ev.cpu, line);
    assert.equal(r.flags, ev.flags, line);
    assert.equal(r.timestamp, o.timestamp, line);
    switch (ev.kind) {
      case 'map':
        assert.deepEqual([r.iova, r.iovaEnd, r.paddr, r.size], [ev.iova, ev.iova + ev.size, ev.paddr, ev.size], line);
        break;
      case 'unmap':
        assert.deepEqual([r.iova, r.iovaEnd, r.size, r.unmappedSize], [ev.iova, ev.iova + ev.size, ev.size, ev.unmapped], line);
        break;
      case 'fault':
        assert.deepEqual([r.iova, r.driver, r.device, r.faultFlags], [ev.iova, ev.driver, ev.device, ev.faultFlags], line);
        break;
      case 'attach':
        assert.equal(r.device, ev.device, line);
        break;
      case 'group':
        assert.deepEqual([r.device, r.groupId], [ev.device, ev.groupId], line);
        break;
    }
  });
  let records = 0;
  for (const { lineNo, result } of parseTraceText(t.text)) {
    assert.notEqual(result.kind, 'error', `line ${lineNo}`);
    if (result.kind === 'record') records++;
  }
  assert.equal(records, t.oracle.records.length);
}

function rangesOf(d: Domain): ByteRange[] {
  const out: ByteRange[] = [];
  for (const r of d.runs()) out.push({ start: r.iova, end: r.iova + r.pageSize * r.count });
  return normalize(out);
}

/** Replays the truth through fresh core Domains: every unmapped_size, and the oracle's state after every event. */
function checkReplay(t: GeneratedTrace, statesToo: boolean): void {
  const cores = t.truth.domains.map((d) => new Domain(resolveProfile(d.profile)));
  t.truth.events.forEach((ev, s) => {
    assert.equal(ev.seq, s);
    if (s > 0) assert.ok(ev.tNs > t.truth.events[s - 1]!.tNs, 'true times increase');
    const core = cores[ev.domain]!;
    if (ev.kind === 'map') {
      const r = core.map({ iova: ev.iova, paddr: ev.paddr, size: ev.size, ref: ev.seq });
      assert.ok(r.ok, `map #${s} fails in replay`);
    } else if (ev.kind === 'unmap') {
      const r = core.unmap({ iova: ev.iova, size: ev.size });
      assert.ok(r.ok);
      assert.equal(r.unmappedSize, ev.unmapped, `unmap #${s}: replay gives ${r.unmappedSize}, the trace says ${ev.unmapped}`);
    }
    if (statesToo) {
      const want = new Map<number, ByteRange[]>();
      cores.forEach((c, d) => {
        const l = rangesOf(c);
        if (l.length > 0) want.set(d, l);
      });
      assert.deepEqual(t.oracle.liveByDomainAtSeq(s + 1), want, `state after event #${s}`);
    }
  });
}

function checkUnion(u: ReturnType<GeneratedTrace['oracle']['liveUnionAt']>, domains: number): void {
  for (let i = 0; i < u.length; i++) {
    const p = u[i]!;
    assert.ok(p.start < p.end && p.depth >= 1 && p.depth <= domains);
    if (i > 0) assert.ok(u[i - 1]!.end <= p.start);
  }
}

/** Samples traces until one satisfies `pred` (for "this case does occur" checks). */
function findTrace(arb: fc.Arbitrary<GeneratedTrace>, pred: (t: GeneratedTrace) => boolean, tries = 400): GeneratedTrace | undefined {
  return fc.sample(arb, { numRuns: tries, seed: 7 }).find(pred);
}

describe('trace generator: the text', () => {
  it('every line parses: headers as headers, records with the truth in every field', () => {
    fc.assert(fc.property(traceArb({ skewUs: 20, groups: true, floppy: true, lostComms: true, mixedProfiles: true }), checkParses), { numRuns: RUNS });
  });

  it('printed timestamps never decrease, and there are 10..200 records', () => {
    fc.assert(
      fc.property(traceArb({ skewUs: 20 }), (t) => {
        let last = -1n;
        for (const line of t.lines) {
          const r = parseTraceLine(line);
          if (r.kind !== 'record') continue;
          assert.ok(r.record.timestampNs! >= last, line);
          last = r.record.timestampNs!;
        }
        assert.ok(t.oracle.records.length >= 10 && t.truth.events.length <= 200);
      }),
      { numRuns: RUNS },
    );
  });

  it('is the kernel 6.1 layout: header, then TASK-PID right-aligned in 16 columns, [CPU], 5 flags, %5lu.%06lu', () => {
    const recipe = makeRecipe({
      steps: [
        { op: 0, a: 0, b: 0, c: 5, g: 0 }, // single, 1 page, dd on CPU 1
        { op: 5, a: 0, b: 1, c: 0, g: 0 }, // its unmap, in interrupt context on CPU 0
        { op: 12, a: 0, b: 1, c: 0, g: 0 }, // an sg of 3 segments, kworker/0:1H
      ],
    });
    const t = generateTrace(recipe, { profiles: ['intel-vtd'], vfio: false, minRecords: 0 });
    assert.deepEqual(t.lines.slice(0, 13), [
      '# tracer: nop',
      '#',
      `# entries-in-buffer/entries-written: ${t.oracle.records.length}/${t.oracle.records.length}   #P:2`,
      '#',
      '#                                _-----=> irqs-off/BH-disabled',
      '#                               / _----=> need-resched',
      '#                              | / _---=> hardirq/softirq',
      '#                              || / _--=> preempt-depth',
      '#                              ||| / _-=> migrate-disable',
      '#                              |||| /     delay',
      '#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION',
      '#              | |         |   |||||     |         |',
      '            init-1       [000] .....     2.075556: attach_device_to_domain: IOMMU: device=0000:00:02.0',
    ]);
    const rest = t.lines.slice(13);
    // A 1-page allocation below 4 GiB lands at the top: 0xfffff000.
    assert.match(
      rest[0]!,
      /^ {14}dd-223 {5}\[001\] \.{5} {5}6\.\d{6}: map: IOMMU: iova=0x00000000fffff000 - 0x0000000100000000 paddr=0x[0-9a-f]{16} size=4096$/,
    );
    assert.match(
      rest[1]!,
      /^ {10}<idle>-0 {7}\[000\] d\.h\d\. {5}6\.\d{6}: unmap: IOMMU: iova=0x00000000fffff000 - 0x0000000100000000 size=4096 unmapped_size=4096$/,
    );
    // The sg: one allocation (rounded up to a power of two, size-aligned), maps ascending.
    const sg = t.truth.events.filter((e): e is MapEvent => e.kind === 'map' && e.op === t.truth.events.at(-1)!.op);
    assert.ok(sg.length >= 2);
    for (let i = 1; i < sg.length; i++) assert.equal(sg[i]!.iova, sg[i - 1]!.iova + sg[i - 1]!.size);
    assert.match(rest[2]!, /^ {4}kworker\/0:1H-44 {6}\[000\] d\.\.1\. /);
  });

  it('is deterministic: the same recipe gives the same text', () => {
    fc.assert(
      fc.property(traceArb({ skewUs: 7 }), (t) => {
        assert.equal(generateTrace(t.recipe, t.options).text, t.text);
      }),
      { numRuns: 20 },
    );
  });
});

describe('trace generator: the order', () => {
  it('with skew 0 and no ties the printed order is the true order', () => {
    fc.assert(
      fc.property(traceArb({ skewUs: 0, ties: false }), (t) => {
        t.oracle.records.forEach((r, i) => assert.equal(r.seq, t.truth.preTraceCount + i));
        assert.equal(t.oracle.causalInversions.length, 0);
        assert.equal(t.oracle.consistentCuts.length, t.oracle.records.length + 1);
      }),
      { numRuns: RUNS },
    );
  });

  it('records print out of true order by less than the skew (plus a microsecond with ties)', () => {
    for (const ties of [false, true]) {
      fc.assert(
        fc.property(traceArb({ skewUs: 20, ties }), (t) => {
          assert.ok(t.oracle.maxInversionNs <= t.oracle.inversionBoundNs, `${t.oracle.maxInversionNs} > ${t.oracle.inversionBoundNs}`);
          // One CPU's records keep their order.
          const lastOfCpu = new Map<number, number>();
          for (const r of t.oracle.records) {
            assert.ok((lastOfCpu.get(r.event.cpu) ?? -1) < r.seq);
            lastOfCpu.set(r.event.cpu, r.seq);
          }
        }),
        { numRuns: RUNS },
      );
    }
  });

  it('ties can print an unmap before the map it undoes (another CPU, the same microsecond)', () => {
    const t = findTrace(traceArb({ skewUs: 0, ties: true }), (x) => x.oracle.causalInversions.length > 0);
    assert.ok(t, 'no adversarial tie in 400 traces');
    const inv = t.oracle.causalInversions[0]!;
    const u = t.oracle.line(inv.unmapLine)!;
    const m = t.oracle.line(inv.mapLine)!;
    assert.ok(inv.unmapLine < inv.mapLine && u.seq > m.seq);
    assert.equal(u.timestamp, m.timestamp);
    assert.notEqual(u.event.cpu, m.event.cpu);
  });
});

describe('trace generator: the truth and the oracle', () => {
  it('replaying the truth by domain reproduces every unmapped_size and the oracle state after every event', () => {
    fc.assert(
      fc.property(traceArb({ skewUs: 5, floppy: true, mixedProfiles: true, profiles: ['intel-vtd', 'amd-v1', 'arm-lpae-4k', 'omap'] }), (t) =>
        checkReplay(t, true),
      ),
      { numRuns: 40 },
    );
  });

  it('unions have no negative depth; at consistent cuts the two states agree; over-unmaps only where VFIO steps', () => {
    fc.assert(
      fc.property(traceArb({ skewUs: 10 }), (t) => {
        const o = t.oracle;
        const nd = t.truth.domains.length;
        for (let k = 0; k <= o.records.length; k++) {
          checkUnion(o.liveUnionAt(k), nd);
          checkUnion(o.liveUnionAfter(k), nd);
        }
        for (const k of o.consistentCuts) {
          assert.deepEqual(o.liveUnionAfter(k), o.liveUnionAtSeq(o.preTraceCount + k), `cut ${k}`);
        }
        assert.deepEqual(o.liveUnionAt(0), o.liveUnionAtSeq(o.preTraceCount));
        assert.equal(o.expectedDivergences, 0);
        let over = 0;
        for (const r of o.records) {
          if (r.event.kind !== 'unmap' || r.event.unmapped <= r.event.size) continue;
          over++;
          // VFIO only: the fgsp test (4K of an 8K page at 0), or a stepping unmap.
          const d = t.truth.domains[r.domain]!;
          assert.equal(d.role, 'vfio');
          assert.ok(d.stepping === true || (r.event.iova === 0n && r.event.size === 4096n && d.fgsp === true));
        }
        assert.equal(o.overUnmaps, over);
      }),
      { numRuns: 40 },
    );
  });

  it('iommu-dma: sg maps ascend contiguously on one task and CPU, and one unmap undoes the whole range', () => {
    fc.assert(
      fc.property(traceArb(), (t) => {
        const byOp = new Map<number, TruthEvent[]>();
        for (const ev of t.truth.events) byOp.set(ev.op, [...(byOp.get(ev.op) ?? []), ev]);
        for (const evs of byOp.values()) {
          const d = t.truth.domains[evs[0]!.domain]!;
          if (d.role !== 'dma' || evs[0]!.kind !== 'map') continue;
          const maps = evs.filter((e): e is MapEvent => e.kind === 'map');
          const unmaps = evs.filter((e): e is UnmapEvent => e.kind === 'unmap');
          for (let i = 1; i < maps.length; i++) {
            const [p, m] = [maps[i - 1]!, maps[i]!];
            assert.equal(m.iova, p.iova + p.size);
            assert.deepEqual([m.comm, m.cpu, m.seq], [p.comm, p.cpu, p.seq + 1]);
            assert.ok(m.paddr !== p.paddr + p.size, 'segments are not physically contiguous (else one map)');
          }
          assert.ok(unmaps.length <= 1);
          const u = unmaps[0];
          if (u) {
            const size = maps.reduce((n, m) => n + m.size, 0n);
            assert.deepEqual([u.iova, u.size, u.unmapped], [maps[0]!.iova, size, size]);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('faults: a live IOVA, one of an earlier unmap, or (VFIO) one never mapped; attach moves the device', () => {
    fc.assert(
      fc.property(traceArb({ groups: true }), (t) => {
        const o = t.oracle;
        const deviceAt = new Map<string, number>();
        for (const ev of t.truth.events) {
          if (ev.kind === 'attach') deviceAt.set(ev.device, ev.domain);
          if (ev.kind !== 'fault') continue;
          assert.equal(deviceAt.get(ev.device), ev.domain, 'a fault belongs to the domain its device is attached to');
          const live = o.liveByDomainAtSeq(ev.seq).get(ev.domain) ?? [];
          const inLive = live.some((r) => r.start <= ev.iova && ev.iova < r.end);
          if (ev.cause === 'live') assert.ok(inLive);
          if (ev.cause === 'never-mapped') assert.ok(!inLive);
          if (ev.cause === 'after-unmap') {
            const u = t.truth.events[ev.about!] as UnmapEvent;
            assert.ok(u.kind === 'unmap' && u.seq < ev.seq && u.iova <= ev.iova && ev.iova < u.iova + u.size);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('the same IOVAs are live in several domains at once', () => {
    const t = findTrace(traceArb({ preTrace: false }), (x) => x.oracle.liveUnionAt(x.oracle.records.length).some((p) => p.depth >= 2));
    assert.ok(t, 'no IOVA live in two domains in 400 traces');
  });
});

describe('trace generator: the cut', () => {
  it('without pre-trace every printed unmap removes printed maps only', () => {
    fc.assert(
      fc.property(traceArb({ preTrace: false, skewUs: 5 }), (t) => {
        assert.equal(t.truth.preTraceCount, 0);
        assert.equal(t.truth.cutNs, undefined);
        assert.deepEqual(t.oracle.revealedPreTrace, []);
        assert.deepEqual(t.oracle.liveUnionAt(0), []);
        for (const ev of t.truth.events) if (ev.kind === 'unmap') for (const r of ev.removes) assert.ok(t.truth.events[r.map]!.printed);
      }),
      { numRuns: RUNS },
    );
  });

  it('with a cut the trace starts at T0: earlier events stay live in the truth, and unmaps reveal them', () => {
    fc.assert(
      fc.property(traceArb(), (t) => {
        const { truth, oracle } = t;
        if (truth.preTraceCount === 0) {
          assert.deepEqual(oracle.revealedPreTrace, []);
          return;
        }
        for (const ev of truth.events) assert.equal(ev.printed, ev.tNs >= truth.cutNs!);
        for (const rp of oracle.revealedPreTrace) {
          for (const m of rp.maps) assert.ok(m.seq < truth.preTraceCount);
          const live = oracle.liveByDomainAt(0).get(rp.domain) ?? [];
          // What was revealed was live at the cut.
          assert.deepEqual(normalize([...live, ...rp.removed]), live);
        }
      }),
      { numRuns: RUNS },
    );
    const t = findTrace(traceArb(), (x) => x.oracle.revealedPreTrace.length > 0);
    assert.ok(t, 'no trace with revealed pre-trace maps in 400');
    // Such a trace shows an unmap of a range it never showed mapped.
    const first = t.oracle.records.find((r) => r.kind === 'unmap' && (r.event as UnmapEvent).removes.some((x) => x.map < t.truth.preTraceCount));
    assert.ok(first);
  });
});

describe('trace generator: VFIO', () => {
  it('amd-v1 (fgsp): 4K unmaps inside large pages step by the returned size and over-unmap', () => {
    const arb = traceArb({ profiles: ['amd-v1'], faults: false });
    const t = findTrace(arb, (x) => x.oracle.overUnmaps > 0);
    assert.ok(t, 'no over-unmap in 400 amd-v1 traces');
    fc.assert(
      fc.property(arb, (x) => {
        const unmaps = x.truth.events.filter((e): e is UnmapEvent => e.kind === 'unmap' && x.truth.domains[e.domain]!.role === 'vfio');
        for (let i = 1; i < unmaps.length; i++) {
          const [p, u] = [unmaps[i - 1]!, unmaps[i]!];
          if (p.op === u.op && x.truth.domains[u.domain]!.stepping && p.iova !== 0n) {
            assert.equal(u.size, 4096n);
            assert.equal(u.iova, p.iova + p.unmapped, 'the next unmap is at iova + unmapped');
          }
        }
        // (A session the trace's record budget cut before its fgsp test ran has no result.)
        for (const d of x.truth.domains) if (d.role === 'vfio' && d.fgsp !== undefined) assert.equal(d.fgsp, true);
        const tested = x.truth.domains.filter((d) => d.role === 'vfio');
        if (tested.length > 1)
          assert.ok(
            tested.slice(0, -1).every((d) => d.fgsp === true),
            'only the last session can be cut before its fgsp test',
          );
      }),
      { numRuns: RUNS },
    );
  });

  it('intel-vtd (no fgsp) never over-unmaps; stepping off leaves only the fgsp test; force steps on intel too', () => {
    fc.assert(
      fc.property(traceArb({ profiles: ['intel-vtd'] }), (t) => assert.equal(t.oracle.overUnmaps, 0)),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(traceArb({ vfioStepping: 'off' }), (t) => {
        for (const r of t.oracle.records) {
          if (r.event.kind === 'unmap' && r.event.unmapped > r.event.size) assert.deepEqual([r.event.iova, r.event.size], [0n, 4096n]);
        }
      }),
      { numRuns: RUNS },
    );
    assert.ok(findTrace(traceArb({ profiles: ['intel-vtd'], vfioStepping: 'force' }), (x) => x.oracle.overUnmaps > 0));
  });

  it('the device leaves its default domain for each session and comes back', () => {
    const t = findTrace(traceArb({ preTrace: false }), (x) => x.truth.domains.filter((d) => d.role === 'vfio').length >= 2);
    assert.ok(t);
    const edu = t.truth.domains.find((d) => d.role === 'idle')!;
    const attaches = t.truth.events.filter((e) => e.kind === 'attach' && e.device === edu.device).map((e) => t.truth.domains[e.domain]!.role);
    assert.deepEqual(attaches.slice(0, 4), ['idle', 'vfio', 'idle', 'vfio']);
  });
});

describe('trace generator: shrinking', () => {
  it('keeps traces valid: a failing property shrinks to a small trace that still parses and replays', () => {
    const details = fc.check(
      fc.property(traceArb({ profiles: ['amd-v1'], skewUs: 3 }), (t) => t.oracle.overUnmaps === 0),
      { seed: 11, numRuns: 400 },
    );
    assert.ok(details.failed, 'expected an over-unmap in 400 amd-v1 traces');
    const t = details.counterexample![0];
    checkParses(t);
    checkReplay(t, false);
    assert.ok(t.oracle.overUnmaps > 0);
    assert.ok(t.recipe.steps.length <= 8, `shrunk to ${t.recipe.steps.length} steps`);
    assert.match(fc.stringify(t), /^generateTrace\(\{/);
  });
});

describe('the IOVA allocator (iova.c)', () => {
  const LIMIT = 0xfffff; // DMA_BIT_MASK(32) >> PAGE_SHIFT

  it('allocates top-down, size-aligned, rounding small sizes up to a power of two', () => {
    const a = new IovaDomain(1, 2);
    assert.equal(a.allocFast(1, LIMIT, 0), 0xfffff);
    assert.equal(a.allocFast(2, LIMIT, 0), 0xffffd - 1); // 2 pages, 2-aligned, below 0xfffff
    assert.equal(a.allocFast(3, LIMIT, 0), 0xffff8); // rounded to 4, 4-aligned
    assert.equal(a.allocFast(64, LIMIT, 0), 0xfff80); // not cached (order 6): 64-aligned
  });

  it('reuses a freed range of the same order on the CPU that freed it, newest first', () => {
    const a = new IovaDomain(1, 2);
    const x = a.allocFast(1, LIMIT, 0)!;
    const y = a.allocFast(1, LIMIT, 0)!;
    a.freeFast(x, 1, 1);
    a.freeFast(y, 1, 1);
    assert.equal(a.allocFast(1, LIMIT, 1), y);
    assert.equal(a.allocFast(1, LIMIT, 0), y - 1, 'CPU 0 does not see CPU 1s cache');
    assert.equal(a.allocFast(1, LIMIT, 1), x);
    // A 3-page mapping (4 allocated) goes back under order 2 and comes back for 4 pages.
    const z = a.allocFast(3, LIMIT, 0)!;
    a.freeFast(z, 3, 0);
    assert.equal(a.allocFast(4, LIMIT, 0), z);
  });

  it('finds freed space above the cached node again (large sizes bypass the cache)', () => {
    const a = new IovaDomain(1, 1);
    const big = a.allocFast(64, LIMIT, 0)!;
    const below = a.allocFast(64, LIMIT, 0)!;
    assert.equal(below, big - 64);
    a.freeFast(big, 64, 0);
    assert.equal(a.allocFast(64, LIMIT, 0), big);
    assert.deepEqual(depthUnion([]), []);
  });
});
