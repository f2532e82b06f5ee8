/**
 * `iommu-ledger apply FILE|-`: JSON Lines of commands, one a line, stored atomically (all lines
 * or none). Each event's id is the file's SHA-256 and the line number, so applying the same file
 * again stores nothing new.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseCommand, type Command } from '../events/schema.js';
import { Ledger, type Outcome } from '../projections/ledger.js';

import { InputError } from './errors.js';

export { InputError };

/** A readable file path for FILE or '-' (stdin is spooled to a temporary file: constant memory). */
export async function materialize(file: string): Promise<{ path: string; name: string; cleanup: () => void }> {
  if (file !== '-') return { path: file, name: file, cleanup: () => undefined };
  const dir = mkdtempSync(join(tmpdir(), 'iommu-ledger-'));
  const path = join(dir, 'stdin');
  await new Promise<void>((resolve, reject) => {
    const out = createWriteStream(path);
    process.stdin.pipe(out);
    out.on('finish', resolve);
    out.on('error', reject);
    process.stdin.on('error', reject);
  });
  return { path, name: '<stdin>', cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function digestOf(path: string): Promise<string> {
  const h = createHash('sha256');
  await new Promise<void>((resolve, reject) => {
    createReadStream(path)
      .on('data', (c) => h.update(c))
      .on('end', resolve)
      .on('error', (e) => reject(new InputError(`cannot read ${path}: ${e.message}`)));
  });
  return h.digest('hex');
}

/** Lines of a file, streaming, with their numbers (CRLF tolerated). */
export async function* lines(path: string): AsyncGenerator<{ no: number; text: string }> {
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let no = 0;
  for await (const text of rl) {
    no++;
    yield { no, text: text.endsWith('\r') ? text.slice(0, -1) : text };
  }
}

/** Notes an input file in `sources` (inside the import's transaction). */
export function recordSource(ledger: Ledger, digest: string, name: string, lineCount: number, out: Outcome[]): void {
  const stored = out.filter((o) => !o.duplicate && o.position !== undefined);
  if (!stored.length) return;
  ledger.db
    .prepare(
      `INSERT INTO sources (digest, name, lines, first_position, last_position, imported_at) VALUES (?,?,?,?,?,?)
       ON CONFLICT (digest) DO UPDATE SET lines = excluded.lines, last_position = excluded.last_position`,
    )
    .run(digest, name, lineCount, stored[0]!.position!, stored[stored.length - 1]!.position!, new Date().toISOString());
}

export interface ApplySummary {
  source: string;
  digest: string;
  lines: number;
  commands: number;
  stored: number;
  duplicates: number;
  rejected: number;
  overUnmaps: number;
  leftMapped: number;
  outcomes: Outcome[];
}

/**
 * Validates every line first (a bad line names FILE:LINE, the field and the reason, and nothing
 * is stored), then stores all commands in one transaction.
 */
export async function applyFile(ledger: Ledger, file: string): Promise<ApplySummary> {
  const src = await materialize(file);
  try {
    const digest = await digestOf(src.path);
    const name = file === '-' ? '<stdin>' : basename(file);
    let n = 0;
    let commands = 0;
    // One pass, one transaction: a bad line rolls back everything before it.
    const outcomes = await ledger.sessionAsync(async (add) => {
      const out: Outcome[] = [];
      for await (const { no, text } of lines(src.path)) {
        n = no;
        const t = text.trim();
        if (t === '' || t.startsWith('#') || t.startsWith('//')) continue;
        let raw: unknown;
        try {
          raw = JSON.parse(t);
        } catch (e) {
          throw new InputError(`${src.name}:${no}: not valid JSON (${(e as Error).message}): ${t.slice(0, 120)}`);
        }
        let cmd: Command;
        try {
          cmd = parseCommand(raw);
        } catch (e) {
          throw new InputError(`${src.name}:${no}: ${(e as Error).message}`);
        }
        commands++;
        try {
          out.push(add({ cmd, from: { source: name, digest, line: no } }));
        } catch (e) {
          throw new InputError(`${src.name}:${no}: ${(e as Error).message.replace(/^command \d+: /, '')}`);
        }
      }
      recordSource(ledger, digest, name, n, out);
      return out;
    });
    const stored = outcomes.filter((o) => !o.duplicate);
    return {
      source: src.name,
      digest,
      lines: n,
      commands,
      stored: stored.length,
      duplicates: outcomes.length - stored.length,
      rejected: stored.filter((o) => !o.ok).length,
      overUnmaps: stored.filter((o) => (o.collateral?.length ?? 0) > 0).length,
      leftMapped: stored.filter((o) => (o.leftMapped?.length ?? 0) > 0).length,
      outcomes,
    };
  } finally {
    src.cleanup();
  }
}
