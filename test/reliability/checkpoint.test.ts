/**
 * Checkpoints (issue 14 item 8): `checkpoint` writes the head of the verified chain, optionally
 * signed with Ed25519; `verify --checkpoint` proves that the ledger still extends it. Each attack
 * below is one `verify` alone does not see (it reports the tampered ledger as intact), and the
 * checkpoint catches, with exit 1 and a one-line reason naming the checkpoint.
 */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { chainHash, envelope, GENESIS } from '../../src/events/chain.js';
import { Ledger } from '../../src/projections/ledger.js';
import { cli, EX } from '../cli/helpers.js';
import { tempDb } from '../ledger/helpers.js';

const SCENARIO = join(EX, 'scenario.jsonl');

/** A ledger of the 17 events of the example scenario, and a checkpoint of it. */
async function checkpointed(): Promise<{ db: string; dir: string; cp: string; head: string; time: string }> {
  const db = tempDb();
  const dir = dirname(db);
  expect((await cli('--db', db, 'apply', SCENARIO)).code).toBe(0);
  const cp = join(dir, 'cp.json');
  const r = await cli('--db', db, 'checkpoint', '--out', cp);
  expect(r.code, r.err).toBe(0);
  const c = JSON.parse(readFileSync(cp, 'utf8')) as { head: string; time: string; position: number };
  expect(c.position).toBe(17);
  expect(r.out).toBe(`checkpoint of ${db} at position 17 (head ${c.head}), written to ${cp}\n`);
  return { db, dir, cp, head: c.head, time: c.time };
}

/** More commands, in a domain of their own, applied after the checkpoint. */
async function applyMore(db: string, n = 3): Promise<void> {
  const file = `${db}.more.jsonl`;
  const lines = [
    { op: 'domain', domain: 'later', profile: 'intel-vtd' },
    ...Array.from({ length: n - 1 }, (_, i) => ({
      op: 'map',
      domain: 'later',
      iova: `0x${(0x100000 + i * 0x1000).toString(16)}`,
      paddr: '0x1000',
      size: '4K',
    })),
  ];
  writeFileSync(file, lines.map((l) => JSON.stringify(l)).join('\n'));
  const r = await cli('--db', db, 'apply', file);
  expect(r.code, r.err).toBe(0);
}

/** The file opened behind iommu-ledger's back, its triggers against updates and deletes dropped. */
function raw(db: string): Database.Database {
  const d = new Database(db);
  d.exec('DROP TRIGGER IF EXISTS events_no_update; DROP TRIGGER IF EXISTS events_no_delete');
  return d;
}

/** What an attacker who knows the format does after an edit: every hash recomputed from the first event. */
function rehash(d: Database.Database): void {
  const rows = d
    .prepare(
      `SELECT e.position, e.stream_name AS stream, e.version, e.type, e.schema_version AS schemaVersion, e.event_id AS id, e.recorded_at AS recordedAt, e.time, e.data
         FROM stored_events e WHERE e.stream_name IS NOT NULL ORDER BY e.position`,
    )
    .all() as Array<Parameters<typeof envelope>[0]>;
  const upd = d.prepare('UPDATE events SET hash = ? WHERE position = ?');
  let prev = GENESIS;
  for (const r of rows) {
    prev = chainHash(prev, envelope(r));
    upd.run(Buffer.from(prev, 'hex'), r.position);
  }
}

function keys(dir: string, name: string): { priv: string; pub: string } {
  const k = generateKeyPairSync('ed25519');
  const priv = join(dir, `${name}.pem`);
  const pub = join(dir, `${name}.pub.pem`);
  writeFileSync(priv, k.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(pub, k.publicKey.export({ type: 'spki', format: 'pem' }));
  return { priv, pub };
}

describe('checkpoints: verify --checkpoint proves the ledger extends what was checkpointed', () => {
  it('a good ledger that grew since the checkpoint extends it (exit 0)', async () => {
    const { db, cp, head, time } = await checkpointed();
    await applyMore(db, 3);
    const v = await cli('--db', db, 'verify', '--checkpoint', cp);
    expect(v.code, v.err).toBe(0);
    expect(v.err).toBe('');
    expect(v.out.split('\n')[1]).toBe(
      `checkpoint ${cp}: extended: the ledger holds the checkpoint's 17 event(s) unchanged (head ${head.slice(0, 16)}…, ${time}), and 3 event(s) since`,
    );
    // --json: the chain's result and one object per checkpoint.
    const j = JSON.parse((await cli('--db', db, '--json', 'verify', '--checkpoint', cp)).out) as { ok: boolean; events: number; checkpoints: unknown[] };
    expect(j).toMatchObject({ ok: true, events: 20, checkpoints: [{ file: cp, ok: true, position: 17, head, signed: false, signatureVerified: false }] });
  });

  it('truncation: the last events deleted (and all of them) pass verify alone, and fail the checkpoint (exit 1)', async () => {
    const { db, cp, time } = await checkpointed();
    const d = raw(db);
    d.exec('DELETE FROM events WHERE position > 15');
    d.close();
    const alone = await cli('--db', db, 'verify');
    expect(alone.code).toBe(0); // the limitation the checkpoint closes
    expect(alone.out).toMatch(/^intact: 15 events/);
    const v = await cli('--db', db, 'verify', '--checkpoint', cp);
    expect(v.code).toBe(1);
    expect(v.err).toBe(
      `iommu-ledger: checkpoint ${cp}: the ledger has 15 event(s), fewer than the 17 the checkpoint covers: events 16 to 17 were removed (the ledger was cut short since ${time}); restore it from a copy that verifies against this checkpoint\n`,
    );

    const e = raw(db);
    e.exec('DELETE FROM events');
    e.close();
    expect((await cli('--db', db, 'verify')).code).toBe(0);
    const all = await cli('--db', db, 'verify', '--checkpoint', cp);
    expect(all.code).toBe(1);
    expect(all.err).toBe(
      `iommu-ledger: checkpoint ${cp}: the ledger has 0 event(s), fewer than the 17 the checkpoint covers: events 1 to 17 were removed (the ledger was cut short since ${time}); restore it from a copy that verifies against this checkpoint\n`,
    );
  });

  it('an edited event with every hash recomputed passes verify alone, and fails the checkpoint at its position (exit 1)', async () => {
    const { db, cp, head, time } = await checkpointed();
    const d = raw(db);
    const before = d.prepare('SELECT data FROM events WHERE position = 5').pluck().get() as string;
    d.prepare('UPDATE events SET data = ? WHERE position = 5').run(before.replace('"caller":"', '"caller":"x'));
    expect(d.prepare('SELECT data FROM events WHERE position = 5').pluck().get()).not.toBe(before);
    rehash(d);
    const now = (d.prepare('SELECT lower(hex(hash)) FROM events WHERE position = 17').pluck().get() as string).slice(0, 16);
    d.close();
    expect((await cli('--db', db, 'verify')).code).toBe(0);
    const v = await cli('--db', db, 'verify', '--checkpoint', cp);
    expect(v.code).toBe(1);
    expect(v.err).toBe(
      `iommu-ledger: checkpoint ${cp}: the chain hash at position 17 is ${now}… here and ${head.slice(0, 16)}… in the checkpoint: events up to position 17 were changed (or removed and replaced) and the chain re-hashed since ${time}, or this ledger forked from the one checkpointed; restore it from a copy that verifies against this checkpoint\n`,
    );
  });

  it('the first event edited and re-hashed: named as another ledger or a rewrite from the start (exit 1)', async () => {
    const { db, cp } = await checkpointed();
    const d = raw(db);
    d.prepare("UPDATE events SET recorded_at = '2000-01-01T00:00:00.000Z' WHERE position = 1").run();
    rehash(d);
    d.close();
    const v = await cli('--db', db, 'verify', '--checkpoint', cp);
    expect(v.code).toBe(1);
    expect(v.err).toMatch(
      new RegExp(
        `^iommu-ledger: checkpoint ${cp}: the ledger's first event differs from the checkpoint's \\(ledger id [0-9a-f]{16}… here, [0-9a-f]{16}… in the checkpoint\\): it is a checkpoint of another ledger, or this ledger was rewritten from its first event and re-hashed\\n$`,
      ),
    );
  });

  it('a forged event appended in place of the last one (a fork at the checkpoint) fails it; a forged event appended after it with a bad hash breaks the chain', async () => {
    const { db, cp, head, time } = await checkpointed();
    // Fork: event 17 replaced by a forged one, then one more appended, every hash valid.
    const d = raw(db);
    const last = d.prepare('SELECT * FROM events WHERE position = 17').get() as Record<string, unknown>;
    d.exec('DELETE FROM events WHERE position = 17');
    const ins = d.prepare(
      'INSERT INTO events (position, stream, version, type, schema_version, event_id, recorded_at, time, data, hash) VALUES (?,?,?,?,?,?,?,?,?,?)',
    );
    ins.run(17, last.stream, last.version, last.type, last.schema_version, 'forged-17', last.recorded_at, last.time, last.data, Buffer.alloc(32));
    ins.run(
      18,
      last.stream,
      (last.version as number) + 1,
      last.type,
      last.schema_version,
      'forged-18',
      last.recorded_at,
      last.time,
      last.data,
      Buffer.alloc(32),
    );
    rehash(d);
    const forged = (d.prepare('SELECT lower(hex(hash)) FROM events WHERE position = 17').pluck().get() as string).slice(0, 16);
    d.close();
    expect((await cli('--db', db, 'verify')).out).toMatch(/^intact: 18 events/);
    const v = await cli('--db', db, 'verify', '--checkpoint', cp);
    expect(v.code).toBe(1);
    expect(v.err).toBe(
      `iommu-ledger: checkpoint ${cp}: the chain hash at position 17 is ${forged}… here and ${head.slice(0, 16)}… in the checkpoint: events up to position 17 were changed (or removed and replaced) and the chain re-hashed since ${time}, or this ledger forked from the one checkpointed; restore it from a copy that verifies against this checkpoint\n`,
    );

    // A forged event appended after the checkpoint without a valid hash: the chain breaks after
    // the checkpoint, which is still confirmed; verify fails on the chain.
    const { db: db2, cp: cp2 } = await checkpointed();
    const e = raw(db2);
    const l2 = e.prepare('SELECT * FROM events WHERE position = 17').get() as Record<string, unknown>;
    e.prepare('INSERT INTO events (position, stream, version, type, schema_version, event_id, recorded_at, time, data, hash) VALUES (?,?,?,?,?,?,?,?,?,?)').run(
      18,
      l2.stream,
      (l2.version as number) + 1,
      l2.type,
      l2.schema_version,
      'forged',
      l2.recorded_at,
      l2.time,
      l2.data,
      Buffer.alloc(32),
    );
    e.close();
    const w = await cli('--db', db2, 'verify', '--checkpoint', cp2);
    expect(w.code).toBe(1);
    expect(w.out).toMatch(/^position 18: /);
    expect(w.out).toMatch(new RegExp(`\\ncheckpoint ${cp2}: extended: .*, and the chain breaks later, at position 18\\n$`));
    expect(w.err).toBe('iommu-ledger: the hash chain is broken\n');
  });

  it('signed checkpoints: a good signature verifies; another key, a changed checkpoint, an unsigned one under --pubkey fail (exit 1)', async () => {
    const { db, dir } = await checkpointed();
    const a = keys(dir, 'a');
    const b = keys(dir, 'b');
    const cp = join(dir, 'signed.json');
    const t = await cli('--db', db, 'checkpoint', '--key', a.priv, '--out', cp);
    expect(t.code, t.err).toBe(0);
    expect(t.out).toMatch(/, signed with key [0-9a-f]{16}…, written to /);
    const c = JSON.parse(readFileSync(cp, 'utf8')) as { signature: { key: string }; head: string };

    const good = await cli('--db', db, 'verify', '--checkpoint', cp, '--pubkey', a.pub);
    expect(good.code, good.err).toBe(0);
    expect(good.out).toMatch(new RegExp(`\\ncheckpoint ${cp}: extended: .*, and 0 event\\(s\\) since \\(signature verified with ${a.pub}\\)\\n$`));
    // Without --pubkey, the chain is checked and the output says the signature was not.
    expect((await cli('--db', db, 'verify', '--checkpoint', cp)).out).toMatch(/\(signed; the signature was not checked: give --pubkey\)\n$/);

    const other = await cli('--db', db, 'verify', '--checkpoint', cp, '--pubkey', b.pub);
    expect(other.code).toBe(1);
    expect(other.err).toMatch(
      new RegExp(
        `^iommu-ledger: checkpoint ${cp}: signed with key ${c.signature.key.slice(0, 16)}…, not with --pubkey ${b.pub} \\(key [0-9a-f]{16}…\\): give the public key it was signed with, or do not trust it\\n$`,
      ),
    );

    // The checkpoint moved back to an earlier head, the signature kept (the key id too).
    const changed = join(dir, 'changed.json');
    writeFileSync(changed, JSON.stringify({ ...c, position: 16, head: 'f'.repeat(64) }));
    const bad = await cli('--db', db, 'verify', '--checkpoint', changed, '--pubkey', a.pub);
    expect(bad.code).toBe(1);
    expect(bad.err).toBe(
      `iommu-ledger: checkpoint ${changed}: its signature does not verify with --pubkey ${a.pub}: the checkpoint was changed after it was signed; do not trust it\n`,
    );

    // A signature stripped: refused when --pubkey asks for one.
    const stripped = join(dir, 'stripped.json');
    const { signature: _s, ...unsigned } = c;
    writeFileSync(stripped, JSON.stringify(unsigned));
    const u = await cli('--db', db, 'verify', '--checkpoint', stripped, '--pubkey', a.pub);
    expect(u.code).toBe(1);
    expect(u.err).toBe(
      `iommu-ledger: checkpoint ${stripped}: it is not signed, and --pubkey ${a.pub} asks for a signed checkpoint: an unsigned one proves nothing about who took it; check it without --pubkey, or sign checkpoints with 'iommu-ledger checkpoint --key'\n`,
    );
    // Several checkpoints: every one is reported, the first failure on stderr with the count.
    const several = await cli('--db', db, 'verify', '--checkpoint', cp, changed, stripped, '--pubkey', a.pub);
    expect(several.code).toBe(1);
    expect(several.out.trimEnd().split('\n')).toHaveLength(4);
    expect(several.err).toMatch(new RegExp(`^iommu-ledger: checkpoint ${changed}: its signature does not verify .* \\(2 of 3 checkpoints fail\\)\\n$`));
  });

  it('import and apply --checkpoint-to write one per run; verify --checkpoint DIR checks them all', async () => {
    const db = tempDb();
    const dir = join(dirname(db), 'cps');
    mkdirSync(dir);
    const k = keys(dirname(db), 'k');
    const a = await cli('--db', db, 'apply', SCENARIO, '--checkpoint-to', dir, '--checkpoint-key', k.priv);
    expect(a.code, a.err).toBe(0);
    expect(a.out).toMatch(new RegExp(`\\ncheckpoint: ${dir}/checkpoint-000000000017-[0-9a-f]{12}\\.json \\(position 17\\)\\n$`));
    const i = await cli(
      '--db',
      db,
      '--json',
      'import',
      join(EX, 'vfio-intel.trace'),
      '--profile',
      'intel-vtd',
      '--checkpoint-to',
      dir,
      '--checkpoint-key',
      k.priv,
    );
    expect(i.code, i.err).toBe(0);
    const s = JSON.parse(i.out) as { stored: number; checkpoint: { file: string; position: number } };
    expect(s.checkpoint.position).toBe(17 + s.stored);
    // The same file again stores nothing: the checkpoint of the same head is already there.
    expect((await cli('--db', db, 'import', join(EX, 'vfio-intel.trace'), '--checkpoint-to', dir)).code).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(
      [`checkpoint-000000000017-`, `checkpoint-${String(17 + s.stored).padStart(12, '0')}-`].map(
        (p) => expect.stringMatching(new RegExp(`^${p}[0-9a-f]{12}\\.json$`)) as unknown as string,
      ),
    );
    const v = await cli('--db', db, 'verify', '--checkpoint', dir, '--pubkey', k.pub);
    expect(v.code, v.err).toBe(0);
    expect(v.out.match(/: extended: /g)).toHaveLength(2);

    // A folder that does not exist: refused before anything is stored (the ledger is not created).
    const fresh = tempDb();
    const r = await cli('--db', fresh, 'apply', SCENARIO, '--checkpoint-to', join(dirname(fresh), 'nope'));
    expect(r.code).toBe(2);
    expect(r.err).toBe(`iommu-ledger: --checkpoint-to ${join(dirname(fresh), 'nope')}: no such folder (create it first)\n`);
    expect(existsSync(fresh)).toBe(false);
  });

  it('checkpoint refuses a broken chain (exit 1), an empty ledger and an existing --out (exit 2); prints without --out; writes into a folder', async () => {
    const { db, dir, cp } = await checkpointed();
    const printed = await cli('--db', db, 'checkpoint');
    expect(printed.code).toBe(0);
    expect(JSON.parse(printed.out)).toMatchObject({ format: 'iommu-ledger-checkpoint/1', position: 17 });
    const again = await cli('--db', db, 'checkpoint', '--out', cp);
    expect(again).toMatchObject({
      code: 2,
      err: `iommu-ledger: --out ${cp} exists: a checkpoint is never overwritten; choose another file, or give a folder to write it in\n`,
    });
    const folder = join(dir, 'f');
    mkdirSync(folder);
    const f = await cli('--db', db, 'checkpoint', '--out', folder);
    expect(f.code).toBe(0);
    expect(readdirSync(folder)).toEqual([expect.stringMatching(/^checkpoint-000000000017-[0-9a-f]{12}\.json$/)]);

    const d = raw(db);
    d.prepare("UPDATE events SET data = replace(data, 'vfio', 'vfiO') WHERE position = 3").run();
    d.close();
    const broken = await cli('--db', db, 'checkpoint', '--out', join(dir, 'x.json'));
    expect(broken.code).toBe(1);
    expect(broken.err).toBe(
      "iommu-ledger: the hash chain is broken at position 3: no checkpoint written (it would vouch for a tampered history); see 'iommu-ledger verify'\n",
    );
    expect(existsSync(join(dir, 'x.json'))).toBe(false);

    const empty = tempDb();
    new Ledger(empty).close(); // a ledger with no event
    expect(await cli('--db', empty, 'checkpoint')).toMatchObject({
      code: 2,
      err: "iommu-ledger: the ledger holds no event: a checkpoint of an empty ledger proves nothing; take one after 'import' or 'apply'\n",
    });
  });

  it('bad checkpoint files and keys are input errors (exit 2), found before the chain is walked', async () => {
    const { db, dir, cp } = await checkpointed();
    const missing = join(dir, 'missing.json');
    expect(await cli('--db', db, 'verify', '--checkpoint', missing)).toMatchObject({ code: 2, err: `iommu-ledger: --checkpoint ${missing}: no such file\n` });
    const garbage = join(dir, 'garbage.json');
    writeFileSync(garbage, '{"format":"iommu-ledger-checkpoint/1","position":-1}');
    expect(await cli('--db', db, 'verify', '--checkpoint', garbage)).toMatchObject({
      code: 2,
      err: `iommu-ledger: --checkpoint ${garbage}: not an iommu-ledger checkpoint (position: a whole number, 0 or more); write one with 'iommu-ledger checkpoint --out FILE'\n`,
    });
    const rsa = join(dir, 'rsa.pem');
    writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    expect(await cli('--db', db, 'checkpoint', '--key', rsa)).toMatchObject({
      code: 2,
      err: `iommu-ledger: --key ${rsa}: a rsa key, not Ed25519; make one with 'openssl genpkey -algorithm ed25519'\n`,
    });
    expect(await cli('--db', db, 'verify', '--pubkey', rsa)).toMatchObject({
      code: 2,
      err: 'iommu-ledger: --pubkey checks the signatures of checkpoints: give --checkpoint FILE too\n',
    });
    expect((await cli('--db', db, 'verify', '--checkpoint', cp, '--pubkey', garbage)).code).toBe(2);
  });
});
