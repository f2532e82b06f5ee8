/**
 * Kernel releases on the command line (issue 17): versioned profiles, `audit refused-unmaps`,
 * `replay --kernel` and `import --kernel`, end to end on real ledger files.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, EX } from './helpers.js';
import { tempDb } from '../ledger/helpers.js';

const REAL = join(__dirname, '..', 'fixtures', 'real');

/** A GPU driver that maps a 2M block and unmaps it in two parts (Panthor's case before its fix). */
function armHistory(profile: string): string {
  const db = tempDb();
  const file = join(dirname(db), 'arm.jsonl');
  const lines = [
    { op: 'domain', domain: 'gpu', profile },
    { op: 'map', domain: 'gpu', iova: '0x40000000', paddr: '0x80000000', size: '0x200000', caller: 'panthor', site: 'vm_map' },
    { op: 'unmap', domain: 'gpu', iova: '0x40000000', size: '0x1000', caller: 'panthor', site: 'vm_unmap_head' },
    { op: 'unmap', domain: 'gpu', iova: '0x40001000', size: '0x1ff000', caller: 'panthor', site: 'vm_unmap_rest' },
    { op: 'map', domain: 'gpu', iova: '0x40400000', paddr: '0x80400000', size: '0x200000', caller: 'other', site: 'whole' },
    { op: 'unmap', domain: 'gpu', iova: '0x40400000', size: '0x200000', caller: 'other', site: 'whole' },
  ];
  writeFileSync(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  return file;
}

describe('kernel releases on the command line', () => {
  it('profiles lists each behaviour with the releases it holds for', async () => {
    const r = await cli('profiles');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^arm-lpae-4k\s+4K\|2M\|1G\s+48\s+split\s+-6\.12\s/m);
    expect(r.out).toMatch(/^arm-lpae-4k@6\.13\s+4K\|2M\|1G\s+48\s+refuse-partial\s+6\.13\+\s.*Unmap of a partial large IOPTE is not allowed/m);
    expect(r.out).toMatch(/^amd-v1@6\.19\s.*iommupt\s+6\.19\+\s/m);
    const j = JSON.parse((await cli('--json', 'profiles')).out) as Array<{ name: string; releases: string }>;
    expect(j.find((p) => p.name === 'intel-vtd')?.releases).toBe('5.15-6.18');
  });

  it('an ARM history under 6.1 and 6.13: split, then refused with the kernel warning; replay --kernel names the call sites', async () => {
    const old = tempDb();
    expect((await cli('--db', old, 'apply', armHistory('arm-lpae-4k@6.1'))).code).toBe(0);
    // Under 6.1 the head unmap splits the block: nothing is left when the rest goes.
    expect((await cli('--db', old, 'audit', 'left-mapped')).out).toMatch(/^0 unmap\(s\) left/);
    expect((await cli('--db', old, 'audit', 'refused-unmaps')).out).toMatch(/^0 unmap\(s\) refused/);

    const neu = tempDb();
    expect((await cli('--db', neu, 'apply', armHistory('arm-lpae-4k@6.13'))).code).toBe(0);
    const refused = await cli('--db', neu, 'audit', 'refused-unmaps');
    expect(refused.out).toMatch(/^2 unmap\(s\) refused by the driver/);
    expect(refused.out).toMatch(
      /^3\s+gpu\s+panthor \(vm_unmap_head\)\s+0x40000000\+4K\s+0\s+0x40000000\s+0x40000000\+4K\s+WARN "Unmap of a partial large IOPTE is not allowed"/m,
    );
    const j = JSON.parse((await cli('--db', neu, '--json', 'audit', 'refused-unmaps')).out) as Array<{ position: number; refused: { warning: string } }>;
    expect(j.map((x) => x.position)).toEqual([3, 4]);
    expect(j[0]!.refused.warning).toBe('Unmap of a partial large IOPTE is not allowed');
    const gate = await cli('--db', neu, 'audit', 'refused-unmaps', '--fail-on', 'refused-unmap');
    expect(gate.code).toBe(1);
    expect(gate.err).toMatch(/--fail-on refused-unmap: 2 finding/);

    // What changes on upgrade: the two partial unmaps break; the whole-block unmap does not.
    const out = join(dirname(old), 'up.db');
    const up = await cli('--db', old, 'replay', '--kernel', '6.13', '--out', out);
    expect(up.code).toBe(0);
    expect(up.out).toMatch(/under the behaviours of kernel 6\.13 \(gpu: arm-lpae-4k -> arm-lpae-4k@6\.13\)/);
    expect(up.out).toMatch(/unmaps left mapped\s+0\s+->\s+2/);
    expect(up.out).toMatch(/^\s+panthor \(vm_unmap_head\)\s+1 \(#3\)\s+1 \(#3\)\s+-/m);
    expect(up.out).toMatch(/^\s+panthor \(vm_unmap_rest\)\s+1 \(#4\)\s+1 \(#4\)\s+-/m);
    expect(up.out).not.toMatch(/other \(whole\)/);
    const upj = JSON.parse((await cli('--db', old, '--json', 'replay', '--kernel', '6.13', '--out', join(dirname(old), 'up2.db'))).out) as {
      impact: Array<{ caller: string; site: string; nowRefused: number[] }>;
    };
    expect(upj.impact.map((c) => [c.site, c.nowRefused])).toEqual([
      ['vm_unmap_head', [3]],
      ['vm_unmap_rest', [4]],
    ]);
    // The same release as the ledger's: nothing changes.
    const same = await cli('--db', old, 'replay', '--kernel', '6.6', '--out', join(dirname(old), 'same.db'));
    expect(same.out).toMatch(/gpu: arm-lpae-4k, unchanged/);
    expect(same.out).toMatch(/no call site changes/);
  });

  it('refuses a release it cannot place, and --kernel with --profile, before writing anything', async () => {
    const db = tempDb();
    expect((await cli('--db', db, 'apply', armHistory('arm-lpae-4k'))).code).toBe(0);
    const bad = await cli('--db', db, 'replay', '--kernel', 'six', '--out', join(dirname(db), 'x.db'));
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/kernel "six" is not a release/);
    const both = await cli('--db', db, 'replay', '--kernel', '6.13', '--profile', 'omap', '--out', join(dirname(db), 'y.db'));
    expect(both.code).toBe(2);
    expect(both.err).toMatch(/--kernel picks each domain's profile/);
  });

  it('import --kernel picks the release behaviour of the profile, given or inferred, and says so', async () => {
    const db = tempDb();
    const r = await cli('--db', db, 'import', join(REAL, 'fl.trace'), '--profile', 'amd-v1', '--kernel', '6.19');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^profile: amd-v1@6\.19 \(given with --profile; amd-v1@6\.19 for kernel 6\.19 \(--kernel\)\)/m);
    const state = await cli('--db', db, 'state', '--domain', 'as1');
    expect(state.out).toMatch(/\(amd-v1@6\.19, iommupt unmap\)/);
    const old = await cli('--db', tempDb(), 'import', join(REAL, 'fl.trace'), '--kernel', '6.1');
    expect(old.out).toMatch(/^profile: intel-vtd \(inferred: .*; the behaviour of kernel 6\.1 \(--kernel\)\)/m);
    const none = await cli('--db', tempDb(), 'import', join(REAL, 'fl.trace'), '--kernel', '5.4');
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/no built-in behaviour of intel-vtd models kernel 5\.4/);
  });

  it("a 'Linux version' line in the input picks the release, unless --kernel says otherwise", async () => {
    const dir = dirname(tempDb());
    const log = (release: string) => {
      const f = join(dir, `boot-${release}.log`);
      const banner = `[    0.000000] Linux version ${release} (debian-kernel@lists.debian.org) (gcc-14) #1 SMP PREEMPT_DYNAMIC Debian\n`;
      // The example boot log without its own banner (Linux 6.8.12), under another one.
      const body = readFileSync(join(EX, 'dmesg-debug.log'), 'utf8').split('\n').slice(1).join('\n');
      writeFileSync(f, banner + body);
      return f;
    };
    const a = await cli('--db', tempDb(), 'import', log('6.19.0-1-amd64'), '--profile', 'amd-v1');
    expect(a.code).toBe(0);
    expect(a.out).toMatch(
      /^profile: amd-v1@6\.19 \(given with --profile; amd-v1@6\.19 for kernel 6\.19\.0-1-amd64 \(the input's 'Linux version 6\.19\.0-1-amd64' line; --kernel overrides\)\)/m,
    );
    const b = await cli('--db', tempDb(), 'import', log('6.19.0-1-amd64'), '--profile', 'amd-v1', '--kernel', '6.1');
    expect(b.out).toMatch(/^profile: amd-v1 \(given with --profile; the behaviour of kernel 6\.1 \(--kernel\)\)/m);
    const c = await cli('--db', tempDb(), 'import', log('5.4.0'), '--profile', 'intel-vtd');
    expect(c.code).toBe(0);
    expect(c.out).toMatch(/the input's 'Linux version 5\.4\.0' line: no built-in behaviour of intel-vtd models kernel 5\.4\.0 .*, so intel-vtd is kept/);
  });

  it("widen-unmaps does what Panthor did by hand, and the result holds under 6.13's refusal", async () => {
    // drm/panthor "Support partial unmaps of huge pages": expand the unmap to the whole block,
    // unmap it, map the survivors back. migrate --strategy widen-unmaps issues exactly that.
    const db = tempDb();
    expect((await cli('--db', db, 'apply', armHistory('arm-lpae-4k@6.13'))).code).toBe(0);
    const out = join(dirname(db), 'fixed.db');
    const m = await cli('--db', db, 'migrate', '--strategy', 'widen-unmaps', '--out', out);
    expect(m.code).toBe(0);
    expect(m.out).toMatch(/bugs fixed: 2 \(over-unmaps 0, unmaps that left pages mapped 2, refused unmaps 0\)/);
    expect(m.out).toMatch(/^PASSED/m);
    // The migrated ledger is verified under strict unmap; replayed under the 6.13 driver it
    // leaves nothing mapped and meets no refusal.
    const r = await cli('--db', out, 'replay', '--kernel', '6.13', '--out', join(dirname(db), 'fixed-6.13.db'));
    expect(r.out).toMatch(/gpu: arm-lpae-4k@6\.13 with strict unmap -> arm-lpae-4k@6\.13/);
    expect(r.out).toMatch(/unmaps left mapped\s+0\s+->\s+0/);
    expect((await cli('--db', join(dirname(db), 'fixed-6.13.db'), 'audit', 'refused-unmaps')).out).toMatch(/^0 unmap\(s\) refused/);
    expect((await cli('--db', join(dirname(db), 'fixed-6.13.db'), 'state')).out).toMatch(/refuse-partial unmap\) as of event #\d+: 0 run\(s\), 0 mapped/);
  });
});
