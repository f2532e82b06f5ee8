/**
 * Faults of the disk and the file system for the tests of issue 14 items 3 and 4, made for real:
 * generated traces big enough to span two import transactions, a small tmpfs that fills up (as
 * root, where mounting is allowed), a file system filled to the last byte, the command line run
 * as another user in a child process, and ledgers compared event by event.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { projectionSnapshot } from '../ledger/helpers.js';

export const ROOT = join(__dirname, '..', '..');
export const BIN = join(ROOT, 'src', 'cli', 'bin.ts');

const hex16 = (v: bigint) => `0x${v.toString(16).padStart(16, '0')}`;

/**
 * An ftrace text of `pairs` 4 KiB maps, every other one unmapped again right after: 1.5 lines a
 * pair, one event a line (and the domain's creation).
 */
export function mapTrace(pairs: number): string {
  const out: string[] = [];
  for (let i = 0; i < pairs; i++) {
    const iova = BigInt(i) * 0x1000n;
    const t = (1 + i * 0.000002).toFixed(6);
    const t2 = (1 + i * 0.000002 + 0.000001).toFixed(6);
    out.push(
      `        vfio-dma-185     [000] .....    ${t}: map: IOMMU: iova=${hex16(iova)} - ${hex16(iova + 0x1000n)} paddr=${hex16(0x10000000n + iova)} size=4096`,
    );
    if (i % 2)
      out.push(`        vfio-dma-185     [000] .....    ${t2}: unmap: IOMMU: iova=${hex16(iova)} - ${hex16(iova + 0x1000n)} size=4096 unmapped_size=4096`);
  }
  return `${out.join('\n')}\n`;
}

/** JSON Lines of `n` map commands in domain `domain` (created by the first line). */
export function mapCommands(n: number, domain = 'big', base = 0x4000_0000n): string {
  const lines = [JSON.stringify({ op: 'domain', domain, profile: 'intel-vtd' })];
  for (let i = 0; i < n; i++)
    lines.push(
      JSON.stringify({
        op: 'map',
        domain,
        iova: hex16(base + BigInt(i) * 0x1000n),
        paddr: hex16(0x8000_0000n + BigInt(i) * 0x1000n),
        size: '4K',
        caller: 'filler',
      }),
    );
  return `${lines.join('\n')}\n`;
}

/** Reads a ledger through a raw read-only connection. */
export function withRead<T>(db: string, fn: (raw: Database.Database) => T): T {
  const raw = new Database(db, { readonly: true });
  try {
    return fn(raw);
  } finally {
    raw.close();
  }
}

export const eventCount = (db: string): number => withRead(db, (r) => r.prepare('SELECT count(*) FROM events').pluck().get() as number);

/** Every event as the ledger's content (not its storage time or hash): position, id, type, domain, body. */
export function eventRows(db: string): unknown[][] {
  return withRead(
    db,
    (r) =>
      r
        .prepare('SELECT e.position, e.event_id, e.type, s.name, e.data FROM stored_events e JOIN streams s ON s.id = e.stream ORDER BY e.position')
        .raw(true)
        .all() as unknown[][],
  );
}

export const projections = (db: string): Record<string, unknown[]> => withRead(db, projectionSnapshot);

export const isRoot = (): boolean => process.getuid?.() === 0;

/** A folder under the system's temporary folder that user nobody can enter (as root). */
export function openDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(d, 0o755);
  return d;
}

/**
 * A tmpfs of `size` mounted on a new folder, or why there cannot be one (not root, or mounting
 * refused here). Unmount with `unmount`.
 */
export function mountTmpfs(size: string): { dir: string } | { why: string } {
  if (!isRoot()) return { why: 'not root: mounting a small file system needs root (the SQLITE_FULL tests through IOMMU_LEDGER_TEST_MAX_PAGES still run)' };
  const dir = openDir('iommu-ledger-tmpfs-');
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return { why: `mount -t tmpfs refused here: ${(r.stderr || r.error?.message || '').trim()}` };
  }
  return { dir };
}

export function remount(dir: string, size: string): void {
  const r = spawnSync('mount', ['-o', `remount,size=${size}`, dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`remount ${dir}: ${r.stderr}`);
}

export function unmount(dir: string): void {
  spawnSync('umount', [dir]);
  rmSync(dir, { recursive: true, force: true });
}

/** Bytes this user may still write on the file system that holds `dir`. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

/** Fills the file system that holds `dir` with one file until at most `leave` bytes are free. */
export function fill(dir: string, leave = 0): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'a');
  try {
    for (let chunk = 1 << 20; chunk >= 512; chunk >>= 1) {
      const buf = Buffer.alloc(chunk, 0x5a);
      for (;;) {
        if (freeBytes(dir) - chunk < leave) break;
        try {
          writeSync(fd, buf);
        } catch {
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

export interface Run {
  code: number | null;
  out: string;
  err: string;
}

/**
 * The command line in a child process as another user: as root, user nobody (65534); else this
 * user (the files' permission bits then do the refusing). Undefined when nobody cannot read
 * the repository (a private checkout).
 */
export function runAsOther(...argv: string[]): Run | undefined {
  const opts = { cwd: ROOT, encoding: 'utf8' as const, env: { ...process.env, NODE_OPTIONS: '' }, ...(isRoot() ? { uid: 65534, gid: 65534 } : {}) };
  if (isRoot()) {
    const probe = spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(BIN)}, require('fs').constants.R_OK)`], opts);
    if (probe.status !== 0) return undefined;
  }
  const r = spawnSync(process.execPath, ['--import', 'tsx', BIN, ...argv], opts);
  return { code: r.status, out: r.stdout, err: r.stderr };
}
