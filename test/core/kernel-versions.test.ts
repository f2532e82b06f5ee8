/**
 * Behaviours by kernel release (issue 17): the worked examples of docs/kernel-facts.md § 6, each
 * tied to the kernel source or selftest that shows it, and the naming of versioned profiles.
 * The reference-model properties (properties.test.ts) sweep the new behaviours over every profile.
 */
import { describe, expect, it } from 'vitest';
import { Domain } from '../../src/core/domain.js';
import {
  ALL_PROFILES,
  BUILTIN_PROFILES,
  describeProfile,
  familyOf,
  holdsFor,
  LATER_PROFILES,
  parseRelease,
  profileForKernel,
  profileFromDescriptor,
  resolveProfile,
} from '../../src/core/profile.js';

const K = 1024n;
const M = 1024n * K;
const G = 1024n * M;

function mapped(d: Domain): Array<[bigint, bigint]> {
  return [...d.runs()].map((r) => [r.iova, r.pageSize * r.count]);
}

describe('ARM io-pgtable: split until v6.12, refused since v6.13', () => {
  // A 2M block, and 4K unmapped from its head (the case of issue 17).
  const run = (profile: string) => {
    const d = new Domain(resolveProfile(profile));
    expect(d.map({ iova: 0x40000000n, paddr: 0x80000000n, size: 2n * M, ref: 1 }).ok).toBe(true);
    const r = d.unmap({ iova: 0x40000000n, size: 4n * K });
    const left = [...d.runs()].reduce((a, x) => a + x.pageSize * x.count, 0n);
    return { r, left };
  };

  it('arm-lpae-4k (as v6.1): the block is split, 4K removed and 2044K left mapped', () => {
    const { r, left } = run('arm-lpae-4k@6.1');
    expect(r.unmappedSize).toBe(4n * K);
    expect(left).toBe(2044n * K);
  });

  it('arm-lpae-4k@6.13: the driver returns 0 and removes nothing; the whole request stays mapped', () => {
    const { r, left } = run('arm-lpae-4k@6.13');
    expect(r.ok).toBe(true);
    expect(r.unmappedSize).toBe(0n);
    expect(r.removed).toEqual([]);
    expect(left).toBe(2n * M);
    expect(r.leftMapped).toEqual([{ start: 0x40000000n, end: 0x40001000n }]);
  });

  // drivers/iommu/io-pgtable-arm.c arm_lpae_run_tests, before 33729a5fc0ca (v6.13): after mapping
  // a 1G block at SZ_1G, "Partial unmap" of the smallest page at SZ_1G + size returned size; the
  // v6.13 commit removed that check, since the call now returns 0.
  it('the selftest case: the smallest page unmapped inside a 1G block at SZ_1G', () => {
    for (const [name, want] of [
      ['arm-lpae-4k', 4n * K],
      ['arm-lpae-4k@6.13', 0n],
    ] as const) {
      const d = new Domain(resolveProfile(name));
      expect(d.map({ iova: G, paddr: G, size: G, ref: 1 }).ok).toBe(true);
      expect(d.unmap({ iova: G + 4n * K, size: 4n * K }).unmappedSize).toBe(want);
    }
  });

  it('since v6.13 a chunk that covers whole pages removes them; the loop stops at the first refused chunk', () => {
    // Two 2M blocks; unmap 2M + 4K from the first's head: the first chunk (2M) removes block one,
    // the second (4K) lands in block two and is refused.
    const d = new Domain(resolveProfile('arm-lpae-4k@6.13'));
    expect(d.map({ iova: 0n, paddr: 0n, size: 4n * M, ref: 1 }).ok).toBe(true);
    const r = d.unmap({ iova: 0n, size: 2n * M + 4n * K });
    expect(r.unmappedSize).toBe(2n * M);
    expect(mapped(d)).toEqual([[2n * M, 2n * M]]);
  });

  it('since v6.13 a chunk over a table frees the table whole and counts its size, holes included', () => {
    // Three 4K pages under one 2M table; a 2M unmap at the table's start: __arm_lpae_unmap finds a
    // table entry at the 2M level and frees it (all pages under it), returning 2M.
    const d = new Domain(resolveProfile('arm-lpae-4k@6.13'));
    for (const at of [0n, 8n * K, 64n * K]) expect(d.map({ iova: at, paddr: at, size: 4n * K, ref: 1 }).ok).toBe(true);
    const r = d.unmap({ iova: 0n, size: 2n * M });
    expect(r.unmappedSize).toBe(2n * M);
    expect(mapped(d)).toEqual([]);
  });
});

describe('the generic page table (iommupt): AMD and VT-d since v6.19', () => {
  // drivers/iommu/generic_pt/kunit_iommu_pt.h test_unmap_split: an unmap at a large page's head
  // removes the whole page (the result is larger than the request), as the legacy drivers did.
  it('an unmap at the head of a large page removes it whole, as before', () => {
    for (const name of ['amd-v1', 'amd-v1@6.19', 'intel-vtd', 'intel-vtd@6.19']) {
      const d = new Domain(resolveProfile(name));
      expect(d.map({ iova: 2n * M, paddr: 2n * M, size: 2n * M, ref: 1 }).ok).toBe(true);
      const r = d.unmap({ iova: 2n * M, size: 4n * K });
      expect([name, r.unmappedSize]).toEqual([name, 2n * M]);
      expect(mapped(d)).toEqual([]);
    }
  });

  // iommu_pt.h __unmap_range: a range that starts inside a leaf, not at its head, stops at once.
  it('an unmap starting inside a large page removes nothing since v6.19 (the whole page before)', () => {
    for (const [name, want] of [
      ['intel-vtd', 2n * M],
      ['intel-vtd@6.19', 0n],
      ['amd-v1', 2n * M],
      ['amd-v1@6.19', 0n],
    ] as const) {
      const d = new Domain(resolveProfile(name));
      expect(d.map({ iova: 2n * M, paddr: 2n * M, size: 2n * M, ref: 1 }).ok).toBe(true);
      expect([name, d.unmap({ iova: 2n * M + 4n * K, size: 4n * K }).unmappedSize]).toEqual([name, want]);
    }
  });
});

describe('profiles by kernel release', () => {
  it('a release picks the behaviour of the family that holds for it', () => {
    expect(resolveProfile('arm-lpae-4k@6.1').name).toBe('arm-lpae-4k');
    expect(resolveProfile('arm-lpae-4k@6.12').name).toBe('arm-lpae-4k');
    expect(resolveProfile('arm-lpae-4k@6.13').name).toBe('arm-lpae-4k@6.13');
    expect(resolveProfile('arm-lpae-4k@6.15.2').semantics).toBe('refuse-partial');
    expect(profileForKernel('amd-v1', '6.18.9').name).toBe('amd-v1');
    expect(profileForKernel('amd-v1', '6.19-rc1').name).toBe('amd-v1@6.19');
    expect(profileForKernel('intel-vtd', '6.1.0-27-amd64').name).toBe('intel-vtd');
    expect(profileForKernel('omap', '6.13').name).toBe('omap');
    expect(() => profileForKernel('intel-vtd', '5.10')).toThrow(
      /no built-in behaviour of intel-vtd models kernel 5.10 \(intel-vtd models 5.15-6.18; intel-vtd@6.19 models 6.19\+\)/,
    );
    expect(() => profileForKernel('intel-vtd', 'six')).toThrow(/is not a release/);
    expect(parseRelease('v6.13')).toEqual([6, 13, 0]);
  });

  it('every family has one behaviour per release: the ranges of its members do not overlap', () => {
    const releases = ['4.19', '5.4', '5.10', '5.15', '6.1', '6.6', '6.12', '6.13', '6.18', '6.19', '7.1'].map((v) => parseRelease(v)!);
    for (const fam of new Set(ALL_PROFILES.map((p) => familyOf(p.name)))) {
      const members = ALL_PROFILES.filter((p) => familyOf(p.name) === fam);
      for (const v of releases) expect(members.filter((p) => holdsFor(p, v)).length).toBeLessThanOrEqual(1);
    }
  });

  it('a later behaviour keeps the hardware of its family, and its descriptor gives it back', () => {
    for (const p of LATER_PROFILES) {
      const base = BUILTIN_PROFILES.find((b) => b.name === familyOf(p.name))!;
      expect(p.pgsizeBitmap).toBe(base.pgsizeBitmap);
      expect(p.iovaBits).toBe(base.iovaBits);
      expect(p.format).toBe(base.format);
      expect(p.semantics).not.toBe(base.semantics);
      expect(profileFromDescriptor(describeProfile(p))).toBe(p);
    }
    // Today's names keep what they have always modelled (a stored ledger rebuilds the same).
    expect(resolveProfile('arm-lpae-4k').semantics).toBe('split');
    expect(resolveProfile('amd-v1').semantics).toBe('legacy');
  });
});
