/**
 * What a stream of bytes is (by its magic bytes, never by its file name), and the decoders that
 * turn compressed bytes into content: gzip with node:zlib, zstd with fzstd (pure JavaScript), xz
 * with xz-decompress (xz-embedded compiled to WebAssembly, shipped inside the npm package). None
 * has an install script or a native part. The system's `xz -dc` (when on PATH) takes what
 * xz-decompress cannot: an integrity check other than CRC32/CRC64 (`xz --check=sha256`), and a
 * second xz stream while one is open (it reads one at a time). The decoders load on first use,
 * so a plain trace loads none of them.
 *
 * Errors here are plain `DecodeError`s that say what failed; src/import/read.ts adds the file
 * name and turns them into its ReadError.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';

export type Compression = 'gzip' | 'zstd' | 'xz';

/** What the first bytes say: a compression, a trace-cmd binary file, or (undefined) text. */
export type Magic = Compression | 'trace-cmd' | 'bzip2' | 'lz4';

/** A decoder, as SourceInfo.decoder names it. */
export type Decoder = 'node:zlib' | 'fzstd' | 'xz-decompress' | 'xz -dc';

export class DecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecodeError';
  }
}

/** Bytes needed to tell every format apart (trace-cmd: 3 magic bytes and "tracing"). */
export const MAGIC_BYTES = 10;

const TRACE_CMD = Buffer.from([0x17, 0x08, 0x44, 0x74, 0x72, 0x61, 0x63, 0x69, 0x6e, 0x67]);
const MAGICS: Array<{ magic: Magic; bytes: Array<number | [number, number]> }> = [
  { magic: 'gzip', bytes: [0x1f, 0x8b] },
  { magic: 'zstd', bytes: [0x28, 0xb5, 0x2f, 0xfd] },
  // A zstd skippable frame (pzstd and seekable-zstd files start with one).
  { magic: 'zstd', bytes: [[0x50, 0x5f], 0x2a, 0x4d, 0x18] },
  { magic: 'xz', bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { magic: 'trace-cmd', bytes: [...TRACE_CMD] },
  { magic: 'bzip2', bytes: [0x42, 0x5a, 0x68, [0x31, 0x39], 0x31, 0x41, 0x59, 0x26, 0x53, 0x59] },
  { magic: 'lz4', bytes: [0x04, 0x22, 0x4d, 0x18] },
];

const byteMatches = (want: number | [number, number], b: number): boolean => (typeof want === 'number' ? b === want : b >= want[0] && b <= want[1]);

/**
 * The format the first bytes show: `undefined` is text (or anything else, read as text).
 * `final` says no more bytes will come; without it the answer is `'more'` while the bytes so
 * far are the start of some magic, so a stream is asked again with more bytes.
 */
export function sniff(prefix: Uint8Array, final: boolean): Magic | undefined | 'more' {
  let more = false;
  for (const m of MAGICS) {
    const n = Math.min(prefix.length, m.bytes.length);
    let ok = true;
    for (let i = 0; i < n && ok; i++) ok = byteMatches(m.bytes[i]!, prefix[i]!);
    if (!ok) continue;
    if (prefix.length >= m.bytes.length) return m.magic;
    more = true;
  }
  return more && !final ? 'more' : undefined;
}

/**
 * xz-embedded (inside xz-decompress) checks CRC32 and CRC64 only: a stream with another check
 * (SHA-256: `xz --check=sha256`) needs the xz tool. The check id is the low 4 bits of byte 7.
 */
export function xzCheckSupported(prefix: Uint8Array): boolean {
  if (prefix.length < 8) return true;
  const check = prefix[7]! & 0x0f;
  return check === 0 || check === 1 || check === 4;
}

/** The command a person runs to get the text out of a file of this format (`-`: standard input). */
export function decompressCommand(magic: Compression | 'bzip2' | 'lz4', file: string): string {
  const tool = { gzip: 'gzip', zstd: 'zstd', xz: 'xz', bzip2: 'bzip2', lz4: 'lz4' }[magic];
  if (file === '-') return `${tool} -dc > trace.txt`;
  const base = stripExt(file);
  return `${tool} -dc ${shellQuote(file)} > ${shellQuote(`${base === file ? file : base}.txt`)}`;
}

const stripExt = (f: string): string => f.replace(/\.(gz|zst|zstd|xz|bz2|lz4)$/i, '');

/** A word as a POSIX shell reads it back unchanged. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The full path of a command on a PATH list (`undefined` if none is there, executable). */
export function findCommand(name: string, pathList: string | undefined = process.env.PATH): string | undefined {
  for (const dir of (pathList ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

type Chunks = AsyncIterable<Buffer>;

/** Decompressed content of `raw` (an async iterable of compressed chunks). */
export function decode(raw: Chunks, how: Decoder, tools?: { xz?: string }): AsyncGenerator<Buffer> {
  switch (how) {
    case 'node:zlib':
      return gunzip(raw);
    case 'fzstd':
      return unzstd(raw);
    case 'xz-decompress':
      return unxz(raw, tools?.xz);
    case 'xz -dc':
      if (!tools?.xz) throw new DecodeError('xz is not on PATH');
      return filterThrough(tools.xz, ['-dc'], raw, 'xz -dc');
  }
}

async function* gunzip(raw: Chunks): AsyncGenerator<Buffer> {
  const z = createGunzip({ chunkSize: 64 * 1024 });
  // pipeline destroys z with the source's error, and the source when z fails or is abandoned.
  pipeline(Readable.from(raw), z, () => undefined);
  try {
    for await (const c of z as AsyncIterable<Buffer>) yield c;
  } catch (e) {
    throw decodeError('gzip', e);
  } finally {
    z.destroy();
  }
}

async function* unzstd(raw: Chunks): AsyncGenerator<Buffer> {
  const { Decompress } = await import('fzstd');
  const out: Buffer[] = [];
  const d = new Decompress((chunk) => {
    // A copy: the line reader keeps pieces of chunks, and this must not depend on fzstd never
    // reusing an output array.
    if (chunk.length) out.push(Buffer.from(chunk));
  });
  try {
    for await (const c of raw) {
      d.push(c);
      while (out.length) yield out.shift()!;
    }
    d.push(new Uint8Array(0), true);
    while (out.length) yield out.shift()!;
  } catch (e) {
    throw decodeError('zstd', e);
  }
}

/** xz-embedded's return codes (xz.h), for messages. */
const XZ_CODES: Record<string, string> = {
  '2': 'unsupported integrity check',
  '3': 'out of memory',
  '4': 'memory limit reached',
  '5': 'not in the xz format',
  '6': 'unsupported options (an integrity check other than CRC32/CRC64, or a filter xz-embedded lacks)',
  '7': 'data is corrupt',
  '8': 'unexpected end of input (the file is cut short)',
};

/** xz streams being read with xz-decompress in this process (it reads one at a time). */
let xzOpen = 0;

async function* unxz(raw: Chunks, xzTool: string | undefined): AsyncGenerator<Buffer> {
  // xz-decompress serialises its streams on one lock: a second stream waits until the first is
  // finished or cancelled, so reading two at once (a digest while lines are read, say) would
  // hang. The second one goes to the system's xz instead, or fails at once without it.
  if (xzOpen > 0) {
    if (xzTool) {
      yield* filterThrough(xzTool, ['-dc'], raw, 'xz -dc');
      return;
    }
    throw new DecodeError(
      'xz: another xz stream is being read in this process, and xz-decompress reads one at a time (finish or close the other first, or install xz-utils)',
    );
  }
  xzOpen++;
  try {
    yield* unxzOne(raw);
  } finally {
    xzOpen--;
  }
}

async function* unxzOne(raw: Chunks): AsyncGenerator<Buffer> {
  const mod = (await import('xz-decompress')) as unknown as { XzReadableStream?: XzCtor; default?: { XzReadableStream: XzCtor } };
  const Xz = mod.XzReadableStream ?? mod.default!.XzReadableStream;
  // A reader neither finished nor cancelled keeps xz-decompress's lock: it is always cancelled when left.
  const web = new Xz(Readable.toWeb(Readable.from(raw)) as unknown as ReadableStream<Uint8Array>);
  const reader = web.getReader();
  let finished = false;
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) {
        finished = true;
        return;
      }
      if (r.value.byteLength) yield Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    }
  } catch (e) {
    finished = true; // an errored stream has released its lock
    const m = /error code (\d+)/.exec((e as Error).message ?? '');
    throw new DecodeError(`xz: ${m ? (XZ_CODES[m[1]!] ?? (e as Error).message) : (e as Error).message}`);
  } finally {
    if (!finished) await reader.cancel().catch(() => undefined);
  }
}

type XzCtor = new (s: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array>;

function decodeError(format: string, e: unknown): Error {
  if (e instanceof DecodeError) return e;
  const err = e as NodeJS.ErrnoException;
  // The source's own errors (a read error of the file) pass through unchanged.
  if (err && typeof err.code === 'string' && err.code.startsWith('E') && !err.code.startsWith('ERR_')) return err;
  let msg = err?.message ?? String(e);
  if (/unexpected end of file|unexpected EOF/i.test(msg)) msg = 'unexpected end of input (the file is cut short)';
  return new DecodeError(`${format}: ${msg}`);
}

/**
 * The standard output of a command, streaming; `input` (when given) is written to its standard
 * input. A command that fails (exit code not 0, or a signal other than the one sent when the
 * consumer stops early) is a DecodeError with the end of its standard error.
 */
export async function* filterThrough(cmd: string, args: string[], input: Chunks | undefined, label: string): AsyncGenerator<Buffer> {
  const child = spawn(cmd, args, { stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-2000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.on('error', (error) => resolve({ code: null, signal: null, error }));
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  let inputError: Error | undefined;
  if (input) {
    pipeline(Readable.from(input), child.stdin!, (e) => {
      // EPIPE: the command stopped reading (it failed, or was stopped); its exit says why.
      if (e && (e as NodeJS.ErrnoException).code !== 'EPIPE' && (e as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') inputError = e;
    });
  }
  let done = false;
  try {
    for await (const c of child.stdout! as AsyncIterable<Buffer>) yield c;
    const r = await exited;
    done = true;
    if (inputError) throw inputError;
    if (r.error) throw new DecodeError(`${label}: ${r.error.message}`);
    if (r.code !== 0) {
      const why = stderr
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .slice(-3)
        .join('; ');
      throw new DecodeError(`${label} failed (${r.code === null ? `signal ${r.signal}` : `exit code ${r.code}`})${why ? `: ${why}` : ''}`);
    }
  } finally {
    if (!done) {
      child.kill('SIGTERM');
      await exited;
    }
  }
}
