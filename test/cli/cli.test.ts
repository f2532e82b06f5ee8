/**
 * The command line end to end, in-process (run() is what bin.js calls): real files, real
 * ledgers, the exit codes and messages a user sees.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { cli, EX, tamper } from './helpers.js';
import { projectionSnapshot, tempDb } from '../ledger/helpers.js';
import { Ledger } from '../../src/projections/ledger.js';

describe('iommu-ledger command line', () => {
  it('answers at the last event on a ledger whose library writer deferred its projections and stopped; read-only commands refuse it', async () => {
    const db = tempDb();
    const l = new Ledger(db, { deferProjections: 1000 });
    l.appendRaw(
      readFileSync(join(EX, 'scenario.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((x) => JSON.parse(x) as unknown),
    );
    l.store.close(); // the program stopped before writing them: 17 events, no projections
    const report = await cli('--db', db, 'report', '--out', join(db, '..', 'r.html'));
    expect(report.code).toBe(2);
    expect(report.err).toMatch(/the projections are at event #0 and the log goes to #17 .*reads the ledger without writing to it/);
    const audit = await cli('--db', db, '--json', 'audit', 'over-unmaps');
    expect(audit.code).toBe(0);
    expect((JSON.parse(audit.out) as unknown[]).length).toBe(2);
    expect((await cli('--db', db, 'report', '--out', join(db, '..', 'r.html'))).code).toBe(0);
  });

  it('applies the example scenario, once, and audits it (JSON shape, --fail-on exit code)', async () => {
    const db = tempDb();
    const a = await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'));
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/17 commands, 17 stored, 0 already in the ledger; 2 over-unmap/);
    const again = await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'));
    expect(again.code).toBe(0);
    expect(again.out).toMatch(/0 stored, 17 already in the ledger/);
    const audit = await cli('--db', db, '--json', 'audit', 'over-unmaps');
    const items = JSON.parse(audit.out) as Array<Record<string, unknown>>;
    expect(items).toHaveLength(2);
    expect(items[0]).toMatchObject({
      time: '2026-11-23T10:00:05Z',
      domain: 'gpu0',
      caller: 'kvm',
      requested: { iova: '0x201000', size: '0x1000' },
      unmappedSize: '0x200000',
      collateral: [
        { iova: '0x200000', size: '0x1000', owner: ['vfio'] },
        { iova: '0x202000', size: '0x1fe000', owner: ['vfio'] },
      ],
      leftMapped: [],
    });
    const gate = await cli('--db', db, 'audit', 'over-unmaps', '--fail-on', 'over-unmap');
    expect(gate.code).toBe(1);
    expect(gate.err).toMatch(/--fail-on over-unmap: 2 finding/);
    expect((await cli('--db', db, 'audit', 'divergences', '--fail-on', 'divergence')).code).toBe(0);
  });

  it('state prints one aligned row per run, whose END is IOVA + PAGE x COUNT to the last bit of a 64-bit space, with the caller of its map', async () => {
    const db = tempDb();
    const cmds = [
      { op: 'domain', domain: 'top', pgsizes: ['4K', '2M', '1G'], semantics: 'legacy', iovaBits: 64 },
      { op: 'map', domain: 'top', iova: '0x1000', paddr: '0x1000', size: '12K', caller: 'a b' },
      { op: 'map', domain: 'top', iova: '0x1fffffffffff000', paddr: '0x7000', size: '4K', caller: 'vfio', prot: 'r' },
      { op: 'map', domain: 'top', iova: '0xffffffffffe00000', paddr: '0xffffffffffe00000', size: '2M' },
    ];
    const file = join(db + '.jsonl');
    writeFileSync(file, cmds.map((c) => JSON.stringify(c)).join('\n'));
    expect((await cli('--db', db, 'apply', file)).code).toBe(0);
    const { out, code } = await cli('--db', db, 'state');
    expect(code).toBe(0);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^domain top .* as of event #4: 3 run\(s\), 2064K mapped$/);
    const header = lines[1]!;
    const cols = ['IOVA', 'END', 'PADDR', 'PAGE', 'COUNT', 'PROT', 'MAPPED BY'].map((h) => header.indexOf(h));
    expect(cols.every((c, i) => i === 0 || c > cols[i - 1]!)).toBe(true);
    const rows = lines.slice(3).map((l) => {
      // Every cell starts in its header's column (COUNT is right-aligned: it ends where its header ends).
      const cell = (i: number) => l.slice(cols[i], i + 1 < cols.length ? cols[i + 1] : undefined).trim();
      return {
        iova: cell(0),
        end: cell(1),
        paddr: cell(2),
        page: cell(3),
        count: l
          .slice(cols[3], cols[4]! + 'COUNT'.length)
          .trim()
          .split(/\s+/)
          .pop()!,
        prot: cell(5),
        by: cell(6),
      };
    });
    const unit = { '4K': 0x1000n, '2M': 0x200000n } as Record<string, bigint>;
    for (const r of rows) expect(BigInt(r.end)).toBe(BigInt(r.iova) + unit[r.page]! * BigInt(r.count));
    expect(rows).toEqual([
      { iova: '0x1000', end: '0x4000', paddr: '0x1000', page: '4K', count: '3', prot: 'rw', by: '#2 a b' },
      { iova: '0x1fffffffffff000', end: '0x200000000000000', paddr: '0x7000', page: '4K', count: '1', prot: 'r-', by: '#3 vfio' },
      { iova: '0xffffffffffe00000', end: '0x10000000000000000', paddr: '0xffffffffffe00000', page: '2M', count: '1', prot: 'rw', by: '#4 (unknown)' },
    ]);
  });

  it('a failed first apply removes the new file only when no other process has it open (a writer that opened it meanwhile keeps what it stores)', async () => {
    const db = tempDb();
    const bad = `${db}.jsonl`;
    const lines = [JSON.stringify({ op: 'domain', domain: 'a', profile: 'intel-vtd' })];
    for (let i = 0; i < 20000; i++)
      lines.push(JSON.stringify({ op: 'map', domain: 'a', iova: `0x${(0x100000 + i * 0x1000).toString(16)}`, paddr: '0x1000', size: '4K' }));
    lines.push('{"op":"map","domain":"a","iova":"zzz"}');
    writeFileSync(bad, lines.join('\n'));
    // Alone, the failed run leaves no file.
    expect((await cli('--db', db, 'apply', bad)).code).toBe(2);
    expect(existsSync(db)).toBe(false);
    // Another writer opens the new file while the run reads its input.
    const running = cli('--db', db, 'apply', bad);
    while (!existsSync(db)) await new Promise((r) => setImmediate(r));
    const other = new Ledger(db);
    expect((await running).code).toBe(2);
    expect(existsSync(db)).toBe(true);
    other.appendRaw([{ op: 'domain', domain: 'b', profile: 'omap' }]);
    other.close();
    const check = new Database(db);
    expect(check.prepare('SELECT count(*) FROM events').pluck().get()).toBe(1);
    check.close();
  });

  it("a writer that waits longer than the busy timeout for another process's write lock exits 75 (retry later) and stores nothing", async () => {
    const db = tempDb();
    await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'));
    const holder = new Database(db);
    holder.exec('BEGIN IMMEDIATE');
    process.env.IOMMU_LEDGER_BUSY_TIMEOUT = '200';
    try {
      const one = `${db}.jsonl`;
      writeFileSync(one, JSON.stringify({ op: 'map', domain: 'gpu0', iova: '0x900000', paddr: '0x90000000', size: '4K' }));
      const r = await cli('--db', db, 'apply', one);
      expect(r.code).toBe(75);
      expect(r.err).toBe(
        `iommu-ledger: ${db} is busy: another process has held its write lock for more than 0.2 s (a rebuild, an import, a large apply); nothing was stored by this command: run it again when that one is done\n`,
      );
    } finally {
      delete process.env.IOMMU_LEDGER_BUSY_TIMEOUT;
      holder.exec('ROLLBACK');
      holder.close();
    }
    expect((await cli('--db', db, '--json', 'verify')).code).toBe(0);
    const check = new Database(db);
    expect(check.prepare('SELECT count(*) FROM events').pluck().get()).toBe(17);
    check.close();
  });

  it('refuses a --db that is not a ledger with a message (exit 2) and leaves the file as it was; apply makes an empty file a ledger', async () => {
    const notDb = tempDb();
    writeFileSync(notDb, readFileSync(join(EX, 'scenario.jsonl')));
    for (const argv of [['state'], ['verify'], ['apply', join(EX, 'scenario.jsonl')]]) {
      const r = await cli('--db', notDb, ...argv);
      expect(r).toMatchObject({ code: 2, err: expect.stringContaining(`${notDb} is not an iommu-ledger ledger: file is not a database`) as unknown });
    }
    expect(readFileSync(notDb)).toEqual(readFileSync(join(EX, 'scenario.jsonl')));
    const empty = tempDb();
    writeFileSync(empty, '');
    const q = await cli('--db', empty, 'state');
    expect(q).toMatchObject({ code: 2, err: expect.stringContaining(`${empty} is empty, not a ledger`) as unknown });
    expect(statSync(empty).size).toBe(0);
    expect((await cli('--db', empty, 'apply', join(EX, 'scenario.jsonl'))).code).toBe(0);
    expect((await cli('--db', empty, 'verify')).code).toBe(0);
  });

  it('an event body changed outside iommu-ledger into something that is not JSON: rebuild refuses the broken chain; rebuild --accept-broken-chain, explain and history name the event and exit 1; the failed rebuilds change nothing', async () => {
    const db = tempDb();
    await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'));
    const raw = new Database(db);
    const before = projectionSnapshot(raw);
    raw.close();
    tamper(db, 'UPDATE events SET data = substr(data, 1, 20) WHERE position = 3');
    const refused = await cli('--db', db, 'rebuild');
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/^iommu-ledger: rebuild refused: the hash chain is broken \(position 3: its content does not match the hash chain/);
    for (const argv of [
      ['rebuild', '--accept-broken-chain'],
      ['explain', '0x200000', '--domain', 'gpu0'],
      ['history', '0x200000', '--domain', 'gpu0'],
    ]) {
      const r = await cli('--db', db, ...argv);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(
        /^iommu-ledger: event #3 \(id ade357a1fcd16486b5f69f95:3\): its stored body is not valid JSON \(.*\): this stored event is not one iommu-ledger writes \(the ledger was changed outside it\); nothing was written; restore the ledger from a copy \('iommu-ledger verify' checks the hash chain\)\n$/,
      );
    }
    const after = new Database(db);
    expect(projectionSnapshot(after)).toEqual(before);
    after.close();
    expect((await cli('--db', db, 'verify')).code).toBe(1);
  });

  it('walk of an IOVA beyond the domain says so instead of walking its low bits; --help shows each default once and --domain as a filter where it is one', async () => {
    const db = tempDb();
    await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'));
    const w = await cli('--db', db, 'walk', '0xfffffffffffff000', '--domain', 'gpu0');
    expect(w.out).toBe(
      '0xfffffffffffff000 is beyond the 48-bit IOVA space of gpu0 (which ends at 0xffffffffffff): no page-table walk reaches it, and a DMA there faults.\n',
    );
    expect(JSON.parse((await cli('--db', db, '--json', 'walk', '0x1000000000000', '--domain', 'gpu0')).out)).toMatchObject({ outside: true, steps: [] });
    expect((await cli('--db', db, 'walk', '0xffffffffffff', '--domain', 'gpu0')).out).toMatch(/invalid PML4 entry/);
    const help = (await cli('--help')).out;
    expect(help.match(/\(default:/g)).toHaveLength(1);
    expect((await cli('history', '--help')).out.match(/default/g)).toHaveLength(1);
    for (const c of ['audit', 'callers']) expect((await cli(c, '--help')).out).toMatch(/--domain <name>\s+only this domain \(default: every domain\)/);
    expect((await cli('replay', '--help')).out).toMatch(/--domain <name>\s+change the profile or behaviour of this domain only/);
  });

  it('explain places each fault before or after the event it names', async () => {
    const db = tempDb();
    const file = `${db}.jsonl`;
    const cmds = [
      { op: 'domain', domain: 'g', profile: 'intel-vtd' },
      { op: 'map', domain: 'g', iova: '0x200000', paddr: '0x80000000', size: '2M', caller: 'vfio' },
      { op: 'fault', domain: 'g', iova: '0x202010', device: '0000:00:02.0' },
      { op: 'unmap', domain: 'g', iova: '0x201000', size: '4K', caller: 'kvm' },
      { op: 'fault', domain: 'g', iova: '0x202010', device: '0000:00:02.0' },
      { op: 'fault', domain: 'g', iova: '0x900000' },
    ];
    writeFileSync(file, cmds.map((c) => JSON.stringify(c)).join('\n'));
    await cli('--db', db, 'apply', file);
    const e = (await cli('--db', db, 'explain', '0x202010')).out;
    expect(e).toContain('kvm asked to unmap only 0x201000+4K (event #4)');
    expect(e).toContain('A fault at 0x202010 from 0000:00:02.0 at event #3 came before it (mapped).');
    expect(e).toContain('A fault at 0x202010 from 0000:00:02.0 at event #5 followed (use after collateral unmap).');
    expect((await cli('--db', db, 'explain', '0x900000')).out).toContain('A fault at 0x900000 at event #6 was recorded (never mapped).');
  });

  it('history cuts a range at the end of the 64-bit space; empty ranges, reversed diffs and malformed --at are usage errors that say which argument', async () => {
    const db = tempDb();
    await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'));
    const whole = await cli('--db', db, '--json', 'history', '0x1000', '0xffffffffffffffff', '--domain', 'gpu0');
    expect(whole.code).toBe(0);
    const exact = await cli('--db', db, '--json', 'history', '0x1000', String((1n << 64n) - 0x1000n), '--domain', 'gpu0');
    expect(JSON.parse(whole.out)).toEqual(JSON.parse(exact.out));
    expect((JSON.parse(whole.out) as unknown[]).length).toBeGreaterThan(0);
    const top = await cli('--db', db, 'history', '0xfffffffffffff000', '8K', '--domain', 'gpu0');
    expect(top.code).toBe(0);
    expect(top.out).toMatch(/^history of 0xfffffffffffff000\.\.0x10000000000000000 in gpu0 up to event #17: 0 event\(s\)/);
    const none = await cli('--db', db, 'history', '0x0', '0', '--domain', 'gpu0');
    expect(none).toMatchObject({ code: 2, err: expect.stringMatching(/size "0": give at least one byte/) as unknown });
    const back = await cli('--db', db, 'diff', '10', '5', '--domain', 'gpu0');
    expect(back).toMatchObject({ code: 2, err: expect.stringMatching(/diff: the first point \(event #10\) is after the second \(event #5\)/) as unknown });
    expect((await cli('--db', db, 'diff', '5', '99', '--domain', 'gpu0')).err).toMatch(/diff to 99: the ledger ends at position 17/);
    for (const at of ['-1', '1.2.3', 'yesterday']) {
      const r = await cli('--db', db, 'state', '--at', at, '--domain', 'gpu0');
      expect(r.code).toBe(2);
      expect(r.err).toContain(`--at ${JSON.stringify(at)}: give a position (1234), trace seconds (511.10) or an ISO time`);
    }
    expect((await cli('--db', db, 'state', '--at', '2026-11-23 10:00:02', '--domain', 'gpu0')).out).toMatch(/as of event #5:/);
    expect((await cli('--db', db, 'state', '--at', '2', '--domain', 'dsp')).out).toMatch(
      /as of event #2: 0 run\(s\), 0 mapped \(the domain was created at event #11\)\n/,
    );
  });

  it('state --json lists pages as {iova, paddr, pageSize, count, prot, mappedBy}, at any point in time', async () => {
    const db = tempDb();
    await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'));
    const now = JSON.parse((await cli('--db', db, '--json', 'state', '--domain', 'gpu0')).out) as { pages: Array<Record<string, unknown>> };
    expect(now.pages[0]).toMatchObject({ iova: '0x600000', paddr: '0x81000000', pageSize: '0x1000', count: 16, prot: 'rw', mappedBy: 5 });
    const before = JSON.parse((await cli('--db', db, '--json', 'state', '--domain', 'gpu0', '--at', '2026-11-23T10:00:02Z')).out) as {
      at: number;
      pages: unknown[];
    };
    expect(before.at).toBe(5);
    expect(before.pages).toHaveLength(3); // the 2M page, the 8K and the 64K maps
    const explain = await cli('--db', db, 'explain', '0x202010', '--domain', 'gpu0');
    expect(explain.out).toMatch(/not mapped .* over-unmap: kvm at virt\/kvm\/iommu.c:283 asked to unmap only 0x201000\+4K/);
    expect(explain.out).toMatch(/vfio .* had mapped at event #3/);
  });

  it('refuses a bad line with FILE:LINE, the field and the reason, exit 2, and stores nothing of the file', async () => {
    const db = tempDb();
    const file = join(db, '..', 'bad.jsonl');
    writeFileSync(
      file,
      [
        '{"op":"domain","domain":"d","profile":"intel-vtd"}',
        '{"op":"map","domain":"d","iova":"0x1000","paddr":"0x2000","size":"4K"}',
        '{"op":"map","domain":"d","iova":"0x3000","paddr":"nope","size":"4K"}',
      ].join('\n'),
    );
    const r = await cli('--db', db, 'apply', file);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/bad\.jsonl:3: paddr: "nope" is not a number/);
    // the run created the ledger and stored nothing: no empty ledger is left behind
    expect(existsSync(db)).toBe(false);
    // into an existing ledger, nothing of the file is stored and what was there stays
    await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'));
    expect((await cli('--db', db, 'apply', file)).code).toBe(2);
    const n = new Database(db).prepare('SELECT count(*) FROM events').pluck().get();
    expect(n).toBe(17);
  });

  it('imports the 2011 OMAP trace, explains the fault, and stores nothing the second time', async () => {
    const db = tempDb();
    const first = await cli('--db', db, 'import', join(EX, 'omap-2011.trace'), '--profile', 'omap');
    expect(first.code).toBe(0);
    expect(first.out).toMatch(/8 IOMMU records/);
    expect(first.out).toMatch(/over-unmaps: 1/);
    const e = await cli('--db', db, 'explain', '0x600c1000');
    expect(e.out).toMatch(/over-unmap: queue0:src .* asked to unmap only 0x60042000\+4K/);
    expect(e.out).toMatch(/use after collateral unmap/);
    const again = await cli('--db', db, 'import', join(EX, 'omap-2011.trace'), '--profile', 'omap');
    expect(again.out).toMatch(/already imported .* nothing new stored/);
    expect((await cli('--db', db, 'verify')).code).toBe(0);
  });

  it('separates IOVAs live in two domains at once, and puts same-timestamp records back in cause order', async () => {
    const db = tempDb();
    const file = join(db, '..', 'two.trace');
    const L = (ts: string, body: string, cpu = '000') => `  qemu-1201    [${cpu}] .....  ${ts}: ${body}`;
    writeFileSync(
      file,
      [
        '# tracer: nop',
        L('10.000001', 'map: IOMMU: iova=0x0000000000100000 - 0x0000000000101000 paddr=0x0000000080000000 size=4096'),
        L('10.000002', 'map: IOMMU: iova=0x0000000000100000 - 0x0000000000101000 paddr=0x0000000090000000 size=4096'),
        // printed out of order: the unmap before the map it undoes, same timestamp, two CPUs
        L('10.000003', 'unmap: IOMMU: iova=0x0000000000200000 - 0x0000000000201000 size=4096 unmapped_size=4096'),
        L('10.000003', 'map: IOMMU: iova=0x0000000000200000 - 0x0000000000201000 paddr=0x00000000a0000000 size=4096', '001'),
        L('10.000004', 'unmap: IOMMU: iova=0x0000000000100000 - 0x0000000000101000 size=4096 unmapped_size=4096'),
        L('10.000005', 'unmap: IOMMU: iova=0x0000000000100000 - 0x0000000000101000 size=4096 unmapped_size=4096'),
        'garbage line that is not a trace',
        L('10.000006', 'map: IOMMU: iova=0x0000000000300000 - 0x0000000000301000 paddr=zzzz size=4096'),
      ].join('\n') + '\n',
    );
    const r = await cli('--db', db, 'import', file, '--profile', 'intel-vtd');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/address spaces: 2 \(as1, as2\)/);
    expect(r.out).toMatch(/reordered: 1 record/);
    expect(r.out).toMatch(/malformed lines skipped: 1/);
    expect(r.out).toMatch(/two\.trace:9: .*paddr/);
    expect(r.out).not.toMatch(/divergences/);
    const strict = await cli('--db', tempDb(), 'import', file, '--strict');
    expect(strict.code).toBe(2);
    expect(strict.err).toMatch(/two\.trace:9: .*--strict: nothing of this import was stored/);
  });

  it('with the wrong profile, lists the divergences and names the profile that fits the trace', async () => {
    const db = tempDb();
    const r = await cli('--db', db, 'import', join(EX, 'omap-2011.trace'), '--profile', 'arm-v7s');
    // One unmap diverges; its pages follow the kernel, so the next unmap is predicted right and
    // the kernel's over-unmap shows although v7s would have split the page.
    expect(r.out).toMatch(/divergences: 1 unmap/);
    expect(r.out).toMatch(/over-unmaps: 1 /);
    expect(r.out).toMatch(/omap fits the trace better: try --profile omap/);
    const d = JSON.parse((await cli('--db', db, '--json', 'audit', 'divergences')).out) as Array<{ unmappedSize: string; predictedSize: string }>;
    expect(d[0]).toMatchObject({ unmappedSize: '0x100000', predictedSize: '0x1000' });
  });

  it('verify exits 1 and names the position when an event was changed', async () => {
    const db = tempDb();
    await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'));
    tamper(db, "UPDATE events SET data = replace(data, '0x201000', '0x203000') WHERE position = 6");
    const v = await cli('--db', db, 'verify');
    expect(v.code).toBe(1);
    expect(v.out).toMatch(/position 6/);
  });

  it('usage errors exit 2 with a message that says what to do', async () => {
    const db = tempDb();
    expect((await cli('--db', db, 'state')).code).toBe(2); // no ledger yet
    const r = await cli('--db', db, 'explain', 'not-an-address');
    expect(r.code).toBe(2);
    await cli('--db', db, 'apply', join(EX, 'scenario.jsonl'));
    const amb = await cli('--db', db, 'state');
    expect(amb.code).toBe(2);
    expect(amb.err).toMatch(/2 domains \(gpu0, dsp\): choose one with --domain NAME/);
    expect((await cli('--db', db, 'replay', '--out', join(db, '..', 'r.db'))).err).toMatch(/give --kernel, or --semantics and\/or --profile/);
  });

  it('replays under another behaviour into a new ledger and compares', async () => {
    const db = tempDb();
    await cli('--db', db, 'import', join(EX, 'omap-2011.trace'), '--profile', 'omap');
    const out = join(db, '..', 'split.db');
    const r = await cli('--db', db, 'replay', '--semantics', 'split', '--out', out);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/over-unmaps\s+1\s+->\s+0/);
    // the trace saw the whole 1M go: under split the prediction disagrees, and says so
    expect(r.out).toMatch(/divergences from trace\s+\d+\s+->\s+[1-9]/);
    // The before/after columns line up whatever the labels' lengths, and say where to look next.
    const rows = r.out.split('\n').filter((l) => l.includes('  ->  '));
    expect(new Set(rows.map((l) => l.indexOf('  ->  '))).size).toBe(1);
    expect(r.out).toContain(`the findings of each: iommu-ledger --db ${db} audit over-unmaps, and --db ${out}`);
  });
});
