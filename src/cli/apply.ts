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
import { isSqliteError } from '../events/io-errors.js';
import { parseCommand, type Command } from '../events/schema.js';
import { CorruptEventError } from '../events/stored.js';
import { CorruptProjectionError } from '../projections/corrupt.js';
import { Ledger, LedgerError } from '../projections/ledger.js';
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

/** Lines of a file, streaming, with their numbers (CRLF tolerated; a UTF-8 BOM before line 1 dropped). */
export async function* lines(path: string): AsyncGenerator<{ no: number; text: string }> {
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let no = 0;
  for await (const raw of rl) {
    no++;
    const text = no === 1 && raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
    yield { no, text: text.endsWith('\r') ? text.slice(0, -1) : text };
  }
}

/**
 * The first key written twice in one object of a JSON text that JSON.parse has read (which keeps
 * the last value silently), with the path of that object (`$`, `$.who`, `$.x[2]`). Iterative, so
 * nesting as deep as JSON.parse takes cannot overflow the stack.
 */
export function duplicateKey(text: string): { key: string; path: string } | undefined {
  type Frame = { obj: true; seen: Set<string>; key?: string } | { obj: false; index: number };
  const stack: Frame[] = [];
  let expectKey = false;
  const pathOf = (frames: Frame[]) =>
    frames
      .map(
        (f, k) =>
          (k === 0 ? '$' : '') +
          (f === frames[frames.length - 1]
            ? ''
            : f.obj
              ? /^[A-Za-z_$][\w$]*$/.test(f.key ?? '')
                ? `.${f.key}`
                : `[${JSON.stringify(f.key)}]`
              : `[${f.index}]`),
      )
      .join('');
  for (let i = 0; i < text.length;) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) {
      stack.push({ obj: true, seen: new Set() });
      expectKey = true;
      i++;
    } else if (c === 0x5b /* [ */) {
      stack.push({ obj: false, index: 0 });
      i++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
      i++;
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top?.obj) expectKey = true;
      else if (top) top.index++;
      i++;
    } else if (c === 0x22 /* " */) {
      const start = i++;
      while (i < text.length && text.charCodeAt(i) !== 0x22) i += text.charCodeAt(i) === 0x5c ? 2 : 1;
      i++;
      const top = stack[stack.length - 1];
      if (expectKey && top?.obj) {
        const key = JSON.parse(text.slice(start, i)) as string;
        if (top.seen.has(key)) return { key, path: pathOf(stack) };
        top.seen.add(key);
        top.key = key;
        expectKey = false;
      }
    } else i++;
  }
  return undefined;
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
        const dup = duplicateKey(line);
        if (dup)
          throw new InputError(
            `${src.name}:${no}: key ${JSON.stringify(dup.key)} is written twice in ${dup.path} (JSON would keep only the last value): write each key once; nothing was stored`,
          );
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
          // A full disk or a damaged file is no fault of the line (events/io-errors.ts says what it is).
          if (isSqliteError(e)) throw e;
          // Neither is a ledger that cannot be read: a stored event or a projection (what it names is what to repair).
          if (e instanceof CorruptEventError || e instanceof CorruptProjectionError) throw e;
          // A refused command: its reason, without the "command N: " of a batch (the line names it).
          throw new InputError(`${src.name}:${no}: ${e instanceof LedgerError ? e.reason : (e as Error).message}`);
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
