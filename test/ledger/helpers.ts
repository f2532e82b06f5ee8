import { copyFileSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { BUILTIN_PROFILES } from '../../src/core/profile.js';
import type Database from 'better-sqlite3';

export function tempDb(name = 'ledger.db'): string {
  return join(mkdtempSync(join(tmpdir(), 'iommu-ledger-test-')), name);
}

/** A copy of a closed ledger file (and its WAL, if one is left), in a new folder. */
export function copyLedger(path: string): string {
  const to = tempDb();
  copyFileSync(path, to);
  if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${to}-wal`);
  return to;
}

/** Every row of the projection tables, in a stable order, as JSON-safe values. */
export function projectionSnapshot(db: Database.Database): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  const order: Record<string, string> = {
    runs: 'id',
    intent: 'id',
    unmap_findings: 'position',
    faults: 'position',
    caller_symmetry: 'domain, caller, site',
    asymmetric_unmaps: 'position',
    hw_state: 'domain, position',
    intent_snapshots: 'domain',
    checkpoints: 'projection',
  };
  for (const [t, by] of Object.entries(order)) {
    out[t] = db
      .prepare(`SELECT * FROM ${t} ORDER BY ${by}`)
      .safeIntegers(true)
      .all()
      .map((r) => JSON.parse(JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))) as unknown);
  }
  return out;
}

const PAGE = 0x1000;

/**
 * Random command histories on one small domain: maps and unmaps of 4K..2M pieces inside a
 * 16 MiB window, several callers, some faults. Sizes and addresses are 4K-aligned so most
 * commands are accepted; overlaps give EEXIST, partial unmaps give over-unmaps.
 */
export function historyArb(profile: string, maxLen = 60) {
  const cmd = fc.oneof(
    fc.record({
      op: fc.constant('map' as const),
      page: fc.integer({ min: 0, max: 4095 }),
      pages: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constantFrom(16, 512, 1024)),
      caller: fc.constantFrom('vfio', 'kvm', 'dma-api'),
    }),
    fc.record({
      op: fc.constant('unmap' as const),
      page: fc.integer({ min: 0, max: 4095 }),
      pages: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constantFrom(512, 1024)),
      caller: fc.constantFrom('vfio', 'kvm', 'dma-api'),
    }),
    fc.record({ op: fc.constant('fault' as const), page: fc.integer({ min: 0, max: 4095 }), pages: fc.constant(1), caller: fc.constant('dev') }),
  );
  // size 'max': fast-check's default size keeps an array to ~10 elements whatever maxLength says
  // (histories of 1-12 commands, mean 6); these are meant to run up to maxLen.
  return fc.array(cmd, { minLength: 1, maxLength: maxLen, size: 'max' }).map((cmds) => [
    { op: 'domain', domain: 'd0', profile },
    ...cmds.map((c) => {
      // Align big pieces so that 2M pages appear.
      const page = c.pages >= 512 ? c.page & ~511 : c.page;
      const iova = `0x${(0x4000_0000 + page * PAGE).toString(16)}`;
      if (c.op === 'map')
        return {
          op: 'map',
          domain: 'd0',
          iova,
          paddr: `0x${(0x8_0000_0000 + page * PAGE).toString(16)}`,
          size: `0x${(c.pages * PAGE).toString(16)}`,
          caller: c.caller,
        };
      if (c.op === 'unmap') return { op: 'unmap', domain: 'd0', iova, size: `0x${(c.pages * PAGE).toString(16)}`, caller: c.caller };
      return { op: 'fault', domain: 'd0', iova: `0x${(0x4000_0000 + page * PAGE + 0x10).toString(16)}`, device: '0000:00:02.0' };
    }),
  ]);
}

/**
 * historyArb with symmetric unmaps mixed in: some maps are undone later, exactly and by their
 * own caller, so intervals of mapping intent end some events after they begin (random unmaps
 * rarely hit their own caller's intent).
 */
export function mirroredHistoryArb(profile: string, maxLen = 60) {
  return fc
    .tuple(historyArb(profile, maxLen), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 30 })), { minLength: 3, maxLength: maxLen, size: 'max' }))
    .map(([cmds, mirrors]) => {
      const maps = cmds.flatMap((c, i) => ((c as { op: string }).op === 'map' ? [i] : []));
      if (!maps.length) return cmds;
      // Each mirror goes `after` commands after its map (or at the end).
      const inserts = new Map<number, unknown[]>();
      for (const [pick, after] of mirrors) {
        const at = maps[pick % maps.length]!;
        const m = cmds[at] as { domain: string; iova: string; size: string; caller: string };
        const where = Math.min(cmds.length - 1, at + after);
        inserts.set(where, [...(inserts.get(where) ?? []), { op: 'unmap', domain: m.domain, iova: m.iova, size: m.size, caller: m.caller }]);
      }
      return cmds.flatMap((c, i) => [c, ...(inserts.get(i) ?? [])]);
    });
}

/** Every built-in profile's name, from the profile list: the properties sweep them all (issue 15). */
export const PROFILE_NAMES: readonly string[] = BUILTIN_PROFILES.map((p) => p.name);
