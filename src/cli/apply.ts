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
import { Ledger } from '../projections/ledger.js';
import { recordSource, Tally } from '../projections/sources.js';
import { overUnmapVerdicts, type VerdictCounts } from '../projections/verdicts.js';

import { InputError } from './errors.js';

export { InputError, recordSource, Tally };

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

export interface ApplySummary {
  source: string;
  digest: string;
  lines: number;
  commands: number;
  stored: number;
  duplicates: number;
  rejected: number;
  overUnmaps: number;
  /** The over-unmaps stored, stepped or harmful (core/stepping.ts). */
  verdicts: VerdictCounts;
  leftMapped: number;
}

/**
 * Reads the file once, validating and storing each line in one transaction: a bad line (named
 * FILE:LINE, with the field and the reason) rolls back everything before it.
 */
export async function applyFile(ledger: Ledger, file: string): Promise<ApplySummary> {
  const src = await materialize(file);
  try {
    const digest = await digestOf(src.path);
    const name = file === '-' ? '<stdin>' : basename(file);
    let n = 0;
    let commands = 0;
    const t = new Tally();
    const startedAt = ledger.lastPosition;
    await ledger.sessionAsync(async (add) => {
      for await (const { no, text } of lines(src.path)) {
        n = no;
        const line = text.trim();
        if (line === '' || line.startsWith('#') || line.startsWith('//')) continue;
        let raw: unknown;
        try {
          raw = JSON.parse(line);
        } catch (e) {
          throw new InputError(`${src.name}:${no}: not valid JSON (${(e as Error).message}): ${line.slice(0, 120)}`);
        }
        let cmd: Command;
        try {
          cmd = parseCommand(raw);
        } catch (e) {
          throw new InputError(`${src.name}:${no}: ${(e as Error).message}`);
        }
        commands++;
        try {
          t.add(add({ cmd, from: { source: name, digest, line: no } }));
        } catch (e) {
          throw new InputError(`${src.name}:${no}: ${(e as Error).message.replace(/^command \d+: /, '')}`);
        }
      }
      recordSource(ledger, digest, name, n, t);
    });
    return {
      source: src.name,
      digest,
      lines: n,
      commands,
      stored: t.stored,
      duplicates: t.duplicates,
      rejected: t.rejected,
      overUnmaps: t.overUnmaps,
      verdicts: overUnmapVerdicts(ledger, startedAt),
      leftMapped: t.leftMapped,
    };
  } finally {
    src.cleanup();
  }
}
