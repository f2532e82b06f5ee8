/**
 * The reader stage of the importer: the lines of a trace, from bytes.
 *
 * - Lines are split on 0x0A in the bytes, never in decoded text, so every line's byte offsets
 *   are exact whatever the bytes are (invalid UTF-8 included); each line is decoded on its own
 *   (UTF-8, bad bytes become U+FFFD), one trailing CR is dropped, and so is a UTF-8 BOM at the
 *   very start of the stream (the offsets still count its 3 bytes).
 * - A line over 1 MiB is one line all the same: its text is cut to 1 MiB (at a character
 *   boundary) and flagged `overlong`; the rest of it is skipped, not kept (memory stays under
 *   1 MiB plus one chunk whatever the input).
 * - gzip, zstd and xz are decompressed on the fly, told by their magic bytes (not by the file
 *   name); offsets and identity are those of the decompressed content, so `x.trace` and
 *   `x.trace.gz` are the same source. A trace-cmd binary file (trace.dat) is read through
 *   `trace-cmd report -i FILE` when trace-cmd is on PATH.
 * - A named pipe, standard input and a file that cannot seek (/sys/kernel/tracing/trace_pipe)
 *   are streamed: a line is yielded as soon as its newline arrives.
 *
 * src/import does not depend on src/cli: errors are ReadError (exit code 2), for the CLI to map.
 */
import { isAscii } from 'node:buffer';
import { spawnSync } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, fstatSync, open as openCallback } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { LedgerFault } from '../core/errors.js';
import {
  decode,
  decompressCommand,
  DecodeError,
  filterThrough,
  findCommand,
  MAGIC_BYTES,
  shellQuote,
  sniff,
  xzCheckSupported,
  type Compression,
  type Decoder,
} from './decompress.js';

export type { Compression, Decoder } from './decompress.js';

/** The bytes of content that make a stream's head key. */
export const HEAD_BYTES = 4096;
/** Longest line kept whole; a longer one is cut to this many bytes and flagged `overlong`. */
export const MAX_LINE_BYTES = 1 << 20;
/** Bytes per read. */
const CHUNK_BYTES = 64 * 1024;

/** A source that cannot be read (missing, a directory, no permission, damaged, a format that needs a tool): exit code 2. */
export class ReadError extends LedgerFault {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'ReadError';
  }
}

/**
 * - `file`: a regular file (or a block device). One that cannot seek, such as tracefs's
 *   `trace_pipe` (a regular file to stat, but reads consume it), is `file` with `seekable: false`.
 * - `fifo`: a named pipe; `stdin`: `-`; `char-device`: /dev/kmsg and the like.
 */
export type SourceKind = 'file' | 'fifo' | 'stdin' | 'char-device';

export interface SourceInfo {
  /** As given: a path, or `-`. */
  file: string;
  /** For messages: the path, or `<stdin>`. */
  name: string;
  kind: SourceKind;
  /**
   * Can be read again from the start: `digest()` and `lines({ start })` work at any time. A
   * plain file resumes by seeking; a compressed one (or trace-cmd's output) is decoded again and
   * the bytes before `start` skipped. A stream (`seekable: false`) is read once.
   */
  seekable: boolean;
  compressed?: Compression;
  /** A trace-cmd `trace.dat`: the kernel release its recorder saved (`trace-cmd report --uname`), when it did. */
  kernel?: string;
  /** What decompresses it: node:zlib (gzip), fzstd (zstd), xz-decompress, or the system's `xz -dc`. */
  decoder?: Decoder;
  /** A trace-cmd binary file: the lines are `trace-cmd report`'s output. */
  via?: 'trace-cmd report';
}

export interface Line {
  /** 1-based line number. */
  no: number;
  /** The line, decoded, without its newline, its CR and (line 1) a BOM. */
  text: string;
  /** Byte offset of the line's first byte in the (decompressed) stream. */
  start: number;
  /** Byte offset just after the line's newline (after its last byte when `unterminated`). */
  end: number;
  /** The last line, with no newline after it (it may have been cut short). */
  unterminated: boolean;
  /** The line had more than MAX_LINE_BYTES bytes: `text` holds only the first ones. */
  overlong?: true;
}

export interface OpenOptions {
  /** The PATH searched for trace-cmd (and xz, for an xz file with a SHA-256 check); default process.env.PATH. */
  path?: string;
  /** What `-` reads; default process.stdin. */
  stdin?: Readable | NodeJS.ReadableStream;
  /** Bytes per read (default 64 KiB). */
  chunkSize?: number;
  /** Longest line kept whole (default MAX_LINE_BYTES). */
  maxLine?: number;
}

export interface LineOptions {
  /** Byte offset to start at: the `end` of the last line already read (a resume). */
  start?: number;
  /** The number of that line (lines are numbered from startLine + 1). */
  startLine?: number;
}

/**
 * The lines of a source, streaming: openSource(file) and its lines(), opened on the first next()
 * (without a generator around lines(): each layer of async generator costs ~25% of the rate).
 */
export function readLines(file: string, opts: OpenOptions & LineOptions = {}): AsyncIterableIterator<Line> {
  let inner: AsyncGenerator<Line> | undefined;
  let opening: Promise<AsyncGenerator<Line>> | undefined;
  const open = () => (opening ??= openSource(file, opts).then((s) => (inner = s.lines(opts))));
  const it: AsyncIterableIterator<Line> = {
    next: () => (inner ? inner.next() : open().then((g) => g.next())),
    return: async (value?: unknown) => {
      if (opening) return (await opening).return(value as undefined);
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator]: () => it,
  };
  return it;
}

/** SHA-256 (hex) of a seekable source's (decompressed) content: what `sources.digest` holds. */
export async function contentDigest(file: string, opts: OpenOptions = {}): Promise<string> {
  const src = await openSource(file, opts);
  try {
    return await src.digest();
  } finally {
    await src.close();
  }
}

/** The key a stream (or a followed file) is known by: `head-` and the SHA-256 of its first 4096 bytes of content. */
export function headKeyOf(head: Uint8Array): string {
  return `head-${createHash('sha256').update(head).digest('hex')}`;
}

interface Impl {
  head(): Promise<Buffer>;
  digest(): Promise<string>;
  /** A stream's SHA-256 once it was read to its end (undefined before, and for seekable sources). */
  streamDigest?(): string | undefined;
  lines(o: LineOptions): AsyncGenerator<Line>;
  close(): Promise<void>;
}

/** An opened source: what it is, its identity, its lines. */
export class Source {
  private headBytes: Promise<Buffer> | undefined;

  /** @internal use openSource() */
  constructor(
    readonly info: SourceInfo,
    private readonly impl: Impl,
  ) {}

  /**
   * The first HEAD_BYTES bytes of content (fewer if it is shorter). On a stream this reads (and
   * keeps) up to 4096 bytes, waiting for them or for the end, so it is called before lines().
   */
  head(): Promise<Buffer> {
    this.headBytes ??= this.impl.head();
    return this.headBytes;
  }

  /** `head-` + SHA-256 of head(): the key of a stream or a followed file. */
  async headKey(): Promise<string> {
    return headKeyOf(await this.head());
  }

  /** SHA-256 (hex) of the whole (decompressed) content, streaming. Seekable sources only. */
  digest(): Promise<string> {
    return this.impl.digest();
  }

  /** A stream's SHA-256, known once its lines were read to the end (what digest() is for a file). */
  streamDigest(): string | undefined {
    return this.impl.streamDigest?.();
  }

  /** The lines, from `start` (a byte offset that ends a line) numbered after `startLine`. A stream's can be read once. */
  lines(o: LineOptions = {}): AsyncGenerator<Line> {
    if ((o.start ?? 0) < 0 || !Number.isSafeInteger(o.start ?? 0)) throw new RangeError(`start ${o.start} is not a byte offset`);
    return this.impl.lines(o);
  }

  /** Releases a stream that was not read to its end (a seekable source holds nothing open between calls). */
  close(): Promise<void> {
    return this.impl.close();
  }
}

/**
 * Opens a source: `-` (standard input), a regular file, a named pipe, a character device.
 * What it is (compression, trace.dat) is told by its first bytes, so on a stream this waits for
 * the first byte (or up to 10 while they could start a magic number) or the end.
 */
export async function openSource(file: string, opts: OpenOptions = {}): Promise<Source> {
  const name = file === '-' ? '<stdin>' : file;
  const chunkSize = opts.chunkSize ?? CHUNK_BYTES;
  if (file === '-') {
    // Standard input redirected from a regular file (`< trace`) is that file: seekable, known
    // by its digest like the file itself. A pipe or a terminal is a stream.
    if (!opts.stdin && isRegularFd(0)) {
      const src = await openSource('/dev/stdin', opts);
      src.info.file = '-';
      src.info.name = name;
      return src;
    }
    const stdin = (opts.stdin ?? process.stdin) as Readable;
    return openStream({ file, name, kind: 'stdin', seekable: false }, stdin, opts);
  }
  const st = await stat(file).catch((e: Error) => {
    throw new ReadError(`cannot read ${name}: ${e.message}`);
  });
  if (st.isDirectory()) throw new ReadError(`cannot read ${name}: EISDIR: illegal operation on a directory, read`);
  if (st.isSocket()) throw new ReadError(`cannot read ${name}: it is a socket, not a file (read it with a client such as socat and pipe the text to '-')`);
  if (st.isFIFO()) {
    // Blocking open (in the thread pool) waits for a writer, as `cat` does; the pipe is then
    // read through the event loop (epoll), not by blocking reads.
    const fd = await new Promise<number>((resolve, reject) =>
      openCallback(file, 'r', (e, fd) => (e ? reject(new ReadError(`cannot read ${name}: ${e.message}`)) : resolve(fd))),
    );
    const sock = new Socket({ fd, readable: true, writable: false });
    return openStream({ file, name, kind: 'fifo', seekable: false }, sock, opts);
  }
  const fh: FileHandle = await open(file, 'r').catch((e: Error) => {
    throw new ReadError(`cannot read ${name}: ${e.message}`);
  });
  if (st.isCharacterDevice()) {
    return openStream({ file, name, kind: 'char-device', seekable: false }, createReadStream('', { fd: fh, highWaterMark: chunkSize }), opts);
  }
  // A regular file (or a block device). A positional read tells one that cannot seek
  // (trace_pipe: ESPIPE, and nothing consumed) from the rest.
  const prefix = Buffer.alloc(16);
  let got: number;
  try {
    got = (await fh.read(prefix, 0, prefix.length, 0)).bytesRead;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESPIPE') {
      return openStream({ file, name, kind: 'file', seekable: false }, createReadStream('', { fd: fh, highWaterMark: chunkSize }), opts);
    }
    await fh.close();
    throw new ReadError(`cannot read ${name}: ${(e as Error).message}`);
  }
  await fh.close();
  const info: SourceInfo = { file, name, kind: 'file', seekable: true };
  const magic = sniff(prefix.subarray(0, got), true);
  const fromFile = (start: number) => fileChunks(file, start, chunkSize);
  let content: (start: number) => { chunks: AsyncIterable<Buffer>; base: number };
  if (magic === 'trace-cmd') {
    const traceCmd = findCommand('trace-cmd', opts.path ?? process.env.PATH);
    if (!traceCmd) throw new ReadError(traceCmdMissing(name));
    info.via = 'trace-cmd report';
    const kernel = traceDatRelease(traceCmd, file);
    if (kernel !== undefined) info.kernel = kernel;
    content = () => ({ chunks: notEmpty(filterThrough(traceCmd, ['report', '-i', file], undefined, 'trace-cmd report')), base: 0 });
  } else if (magic === 'bzip2' || magic === 'lz4') {
    throw new ReadError(
      `cannot read ${name}: it is ${magic}-compressed, which is not read directly: decompress it with '${decompressCommand(magic, file)}' and import that`,
    );
  } else if (magic === 'gzip' || magic === 'zstd' || magic === 'xz') {
    const decoder = pickDecoder(magic, prefix.subarray(0, got), name, file, opts);
    info.compressed = magic;
    info.decoder = decoder.decoder;
    content = () => ({ chunks: refuseInnerTraceDat(decode(fromFile(0), decoder.decoder, decoder.tools), info), base: 0 });
  } else {
    content = (start) => ({ chunks: fromFile(start), base: start });
  }
  const maxLine = opts.maxLine ?? MAX_LINE_BYTES;
  const hint = decodeHint(info);
  const read = (start: number) => {
    const c = content(start);
    return { chunks: guard(c.chunks, name, hint), base: c.base };
  };
  const impl: Impl = {
    async head() {
      const bufs: Buffer[] = [];
      let n = 0;
      for await (const c of read(0).chunks) {
        bufs.push(c);
        n += c.length;
        if (n >= HEAD_BYTES) break;
      }
      return Buffer.from(Buffer.concat(bufs, n).subarray(0, HEAD_BYTES));
    },
    async digest() {
      const h = createHash('sha256');
      for await (const c of read(0).chunks) h.update(c);
      return h.digest('hex');
    },
    lines(o) {
      const start = o.start ?? 0;
      const c = read(start);
      return splitLines(c.chunks, { base: c.base, start, startLine: o.startLine ?? 0, maxLine });
    },
    async close() {},
  };
  return new Source(info, impl);
}

/** Is this file descriptor a regular file (standard input redirected from one)? */
function isRegularFd(fd: number): boolean {
  try {
    return fstatSync(fd).isFile();
  } catch {
    return false;
  }
}

function traceCmdMissing(name: string): string {
  const q = shellQuote(name);
  return (
    `cannot read ${name}: it is a trace-cmd binary file (trace.dat), and trace-cmd is not on PATH to read it: ` +
    `convert it to text with 'trace-cmd report -i ${q} > ${shellQuote(`${name}.txt`)}' (Debian package trace-cmd: apt-get install trace-cmd), then import the .txt file`
  );
}

function pickDecoder(magic: Compression, prefix: Buffer, name: string, file: string, opts: OpenOptions): { decoder: Decoder; tools?: { xz?: string } } {
  if (magic === 'gzip') return { decoder: 'node:zlib' };
  if (magic === 'zstd') return { decoder: 'fzstd' };
  const xz = findCommand('xz', opts.path ?? process.env.PATH);
  // The system xz, when there is one, also reads a second xz stream while one is open (see decompress.ts).
  if (xzCheckSupported(prefix)) return { decoder: 'xz-decompress', tools: { xz } };
  if (!xz) {
    throw new ReadError(
      `cannot read ${name}: its xz integrity check (SHA-256, or another than CRC32/CRC64) needs the xz tool, which is not on PATH: ` +
        `decompress it with '${decompressCommand('xz', file)}' (Debian package xz-utils) and import that`,
    );
  }
  return { decoder: 'xz -dc', tools: { xz } };
}

/** What an error while decoding adds: how to decompress by hand. */
function decodeHint(info: SourceInfo): string {
  if (info.via) return '';
  if (!info.compressed) return '';
  return ` (to decompress it by hand: ${decompressCommand(info.compressed, info.file)})`;
}

/** Errors of a source's bytes (I/O, decoding) as ReadError `cannot read NAME: …`. */
async function* guard(chunks: AsyncIterable<Buffer>, name: string, hint: string): AsyncGenerator<Buffer> {
  try {
    yield* chunks;
  } catch (e) {
    if (e instanceof ReadError) throw e;
    throw new ReadError(`cannot read ${name}: ${(e as Error).message ?? String(e)}${e instanceof DecodeError ? hint : ''}`);
  }
}

async function* fileChunks(path: string, start: number, chunkSize: number): AsyncGenerator<Buffer> {
  // createReadStream's iterator destroys (closes) the file when left early.
  yield* createReadStream(path, { start, highWaterMark: chunkSize }) as AsyncIterable<Buffer>;
}

/** trace-cmd report prints at least its `cpus=N` line: nothing at all (with exit code 0) is a file it could not read. */
async function* notEmpty(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let any = false;
  for await (const c of chunks) {
    any ||= c.length > 0;
    yield c;
  }
  if (!any) throw new DecodeError('trace-cmd report printed nothing (the file is cut short or damaged)');
}

/** A compressed trace.dat is refused (trace-cmd reads only a file of its own). */
async function* refuseInnerTraceDat(chunks: AsyncIterable<Buffer>, info: SourceInfo): AsyncGenerator<Buffer> {
  const it = chunks[Symbol.asyncIterator]();
  try {
    const held: Buffer[] = [];
    let n = 0;
    let ended = false;
    while (n < MAGIC_BYTES) {
      const r = await it.next();
      if (r.done) {
        ended = true;
        break;
      }
      held.push(r.value);
      n += r.value.length;
    }
    if (sniff(Buffer.concat(held, n), true) === 'trace-cmd') {
      throw new ReadError(
        `cannot read ${info.name}: it is a ${info.compressed}-compressed trace-cmd binary file (trace.dat): decompress it (${decompressCommand(info.compressed!, info.file)}), ` +
          `then convert it with 'trace-cmd report -i FILE > FILE.txt' (Debian package trace-cmd) and import the .txt file`,
      );
    }
    yield* held;
    if (ended) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  } finally {
    await it.return?.();
  }
}

/**
 * A stream with the bytes read ahead of its consumer kept: the first bytes (to tell the format)
 * and the head (4096 bytes of content) are read before the lines, and given to them first.
 */
class Lookahead {
  private bufs: Buffer[] = [];
  private size = 0;
  private ended = false;
  private taken = false;
  private closed = false;

  constructor(private readonly it: AsyncIterator<Buffer>) {}

  get eof(): boolean {
    return this.ended;
  }

  /** The first n bytes read so far (fewer if fewer are). */
  peek(n: number): Buffer {
    const all = this.bufs.length === 1 ? this.bufs[0]! : Buffer.concat(this.bufs, this.size);
    return all.subarray(0, n);
  }

  /** Reads until at least n bytes are kept, or the end. */
  async fill(n: number): Promise<void> {
    while (this.size < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        break;
      }
      if (r.value.length) {
        this.bufs.push(r.value);
        this.size += r.value.length;
      }
    }
  }

  /** Reads one more chunk; false at the end. */
  async more(): Promise<boolean> {
    const before = this.size;
    await this.fill(this.size + 1);
    return this.size > before;
  }

  get started(): boolean {
    return this.taken;
  }

  /** The kept bytes, then the rest of the stream (once). */
  async *take(): AsyncGenerator<Buffer> {
    if (this.taken) throw new Error('a stream is read once: lines() was called twice');
    this.taken = true;
    try {
      while (this.bufs.length) {
        const b = this.bufs.shift()!;
        this.size -= b.length;
        yield b;
      }
      if (this.ended) return;
      for (;;) {
        const r = await this.it.next();
        if (r.done) return;
        yield r.value;
      }
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.bufs = [];
    await this.it.return?.();
  }
}

async function* readableChunks(r: Readable): AsyncGenerator<Buffer> {
  // The iterator destroys the stream when left early (closing the pipe or the file).
  for await (const c of r as AsyncIterable<Buffer | string>) yield typeof c === 'string' ? Buffer.from(c) : c;
}

async function openStream(info: SourceInfo, stream: Readable, opts: OpenOptions): Promise<Source> {
  const { name } = info;
  const maxLine = opts.maxLine ?? MAX_LINE_BYTES;
  const raw = new Lookahead(guard(readableChunks(stream), name, '')[Symbol.asyncIterator]());
  let magic: ReturnType<typeof sniff>;
  try {
    for (;;) {
      magic = sniff(raw.peek(MAGIC_BYTES), raw.eof);
      if (magic !== 'more') break;
      await raw.more();
    }
  } catch (e) {
    await raw.close();
    throw e;
  }
  let content = raw;
  try {
    if (magic === 'trace-cmd') {
      throw new ReadError(
        `cannot read ${name}: it is a trace-cmd binary file (trace.dat), and trace-cmd reads only a file: save it to a file ` +
          `and convert it with 'trace-cmd report -i FILE > FILE.txt' (Debian package trace-cmd), then import the .txt file`,
      );
    }
    if (magic === 'bzip2' || magic === 'lz4') {
      throw new ReadError(
        `cannot read ${name}: it is ${magic}-compressed, which is not read directly: decompress it first (${decompressCommand(magic, info.file)})`,
      );
    }
    if (magic === 'gzip' || magic === 'zstd' || magic === 'xz') {
      const d = pickDecoder(magic, raw.peek(MAGIC_BYTES), name, info.file, opts);
      info.compressed = magic;
      info.decoder = d.decoder;
      const decoded = refuseInnerTraceDat(decode(raw.take(), d.decoder, d.tools), info);
      content = new Lookahead(guard(decoded, name, decodeHint(info))[Symbol.asyncIterator]());
    }
  } catch (e) {
    await raw.close();
    throw e;
  }
  // The SHA-256 of what the stream held, known once it has been read to its end.
  const hash = createHash('sha256');
  const done: { value: string | undefined } = { value: undefined };
  async function* hashed(chunks: AsyncIterable<Buffer>, h: Hash): AsyncGenerator<Buffer> {
    for await (const c of chunks) {
      h.update(c);
      yield c;
    }
    done.value = h.digest('hex');
  }
  const impl: Impl = {
    async head() {
      if (content.started) throw new Error(`${name}: head() of a stream is read before its lines`);
      await content.fill(HEAD_BYTES);
      return Buffer.from(content.peek(HEAD_BYTES));
    },
    async digest() {
      throw new Error(
        `${name}: a ${info.kind === 'stdin' ? 'standard input' : info.kind} stream is read once, so its digest is not known before it is read: use headKey()`,
      );
    },
    lines(o) {
      const start = o.start ?? 0;
      return splitLines(hashed(content.take(), hash), { base: 0, start, startLine: o.startLine ?? 0, maxLine });
    },
    streamDigest() {
      return done.value;
    },
    async close() {
      // A read may still be waiting on a pipe whose writer stays open (a stop with Ctrl-C):
      // the generators' return() would wait behind it, so the stream is destroyed first.
      if (!stream.destroyed) stream.destroy();
      await Promise.race([Promise.all([content.close(), content !== raw ? raw.close() : undefined]), new Promise((r) => setTimeout(r, 200).unref())]);
    },
  };
  return new Source(info, impl);
}

export interface SplitOptions {
  /** Stream offset of the first byte of `chunks` (default 0). */
  base?: number;
  /** Bytes before this offset are skipped (a resume in a stream that cannot seek). */
  start?: number;
  /** Lines are numbered from startLine + 1. */
  startLine?: number;
  maxLine?: number;
}

/**
 * Splits chunks of bytes into lines (see the file comment). Exported for the tests and the bench;
 * Source.lines() is what the importer calls.
 */
export async function* splitLines(chunks: AsyncIterable<Uint8Array>, o: SplitOptions = {}): AsyncGenerator<Line> {
  const maxLine = o.maxLine ?? MAX_LINE_BYTES;
  const start = o.start ?? 0;
  let pos = o.base ?? 0; // stream offset of the next chunk's first byte
  let no = o.startLine ?? 0;
  const bomAllowed = start === 0;
  // The line being put together across chunks: its first `cap` bytes, its length and last byte.
  const cap = maxLine + 4; // room for a BOM and a CR beyond maxLine
  let parts: Buffer[] = [];
  let kept = 0;
  let len = 0;
  let last = -1;
  let lineStart = start;

  const make = (bytes: Buffer, total: number, lastByte: number, s: number, end: number, unterminated: boolean): Line => {
    let from = 0;
    if (s === 0 && bomAllowed && bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) from = 3;
    const n = total - (lastByte === 13 && total > from ? 1 : 0);
    if (n - from <= maxLine) return { no, text: bytes.toString('utf8', from, n), start: s, end, unterminated };
    let cut = from + maxLine;
    // Not inside a character: back off over continuation bytes (at most 3).
    for (let k = 0; k < 3 && cut > from && (bytes[cut]! & 0xc0) === 0x80; k++) cut--;
    return { no, text: bytes.toString('utf8', from, cut), start: s, end, unterminated, overlong: true };
  };
  const keep = (c: Buffer, s: number, e: number) => {
    if (e <= s) return;
    len += e - s;
    last = c[e - 1]!;
    const room = cap - kept;
    if (room > 0) {
      const t = Math.min(e, s + room);
      parts.push(c.subarray(s, t));
      kept += t - s;
    }
  };
  const joined = (): Buffer => (parts.length === 1 ? parts[0]! : Buffer.concat(parts, kept));

  for await (const u of chunks) {
    let c = Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
    if (pos < start) {
      if (pos + c.length <= start) {
        pos += c.length;
        continue;
      }
      c = c.subarray(start - pos);
      pos = start;
    }
    const size = c.length;
    let i = 0;
    if (len > 0) {
      // Finish the line carried over from earlier chunks.
      const nl = c.indexOf(10);
      if (nl < 0) {
        keep(c, 0, size);
        pos += size;
        continue;
      }
      keep(c, 0, nl);
      const lastByte = nl > 0 ? c[nl - 1]! : last;
      no++;
      yield make(joined(), len, lastByte, lineStart, pos + nl + 1, false);
      parts = [];
      kept = 0;
      len = 0;
      last = -1;
      i = nl + 1;
    }
    const lastNl = c.lastIndexOf(10);
    if (lastNl >= i) {
      if (lastNl - i <= maxLine && isAscii(c.subarray(i, lastNl))) {
        // The common case: ASCII, decoded once (one byte per character, so offsets are indexes).
        const text = c.toString('latin1', i, lastNl + 1);
        const off = pos + i;
        let p = 0;
        for (;;) {
          const nl = text.indexOf('\n', p);
          if (nl < 0) break;
          no++;
          yield { no, text: text.slice(p, nl > p && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl), start: off + p, end: off + nl + 1, unterminated: false };
          p = nl + 1;
        }
      } else if (lastNl - i <= maxLine) {
        // Not ASCII: decoded once all the same. The UTF-8 decoder ends a bad or cut sequence at
        // the next ASCII byte and never takes a 0x0A into one, so the n-th '\n' of the text is
        // the n-th 0x0A of the bytes (and each line decodes as it would alone): byte offsets come
        // from the bytes, text from the string.
        const text = c.toString('utf8', i, lastNl + 1);
        let p = i;
        let q = 0;
        while (p <= lastNl) {
          const nl = c.indexOf(10, p);
          const tnl = text.indexOf('\n', q);
          let from = q;
          if (p === 0 && pos === 0 && bomAllowed && text.charCodeAt(q) === 0xfeff && c[0] === 0xef && c[1] === 0xbb && c[2] === 0xbf) from++;
          no++;
          yield {
            no,
            text: text.slice(from, tnl > from && text.charCodeAt(tnl - 1) === 13 ? tnl - 1 : tnl),
            start: pos + p,
            end: pos + nl + 1,
            unterminated: false,
          };
          p = nl + 1;
          q = tnl + 1;
        }
      } else {
        let p = i;
        while (p <= lastNl) {
          const nl = c.indexOf(10, p);
          no++;
          yield make(c.subarray(p, nl), nl - p, nl > p ? c[nl - 1]! : -1, pos + p, pos + nl + 1, false);
          p = nl + 1;
        }
      }
      i = lastNl + 1;
    }
    if (i < size) {
      lineStart = pos + i;
      keep(c, i, size);
    }
    pos += size;
  }
  if (len > 0) {
    no++;
    yield make(joined(), len, last, lineStart, pos, true);
  }
}

/**
 * The kernel release a trace.dat's recorder saved: `trace-cmd report --uname` prints the
 * recording machine's `uname` ("Linux HOST 6.1.0-57-amd64 x86_64") and nothing else. Undefined when
 * the file has none (an old trace-cmd) or the command fails: the release is a hint, never an error.
 */
function traceDatRelease(traceCmd: string, file: string): string | undefined {
  const r = spawnSync(traceCmd, ['report', '--uname', '-i', file], { encoding: 'latin1', timeout: 10_000, maxBuffer: 1 << 20 });
  if (r.status !== 0 || typeof r.stdout !== 'string') return undefined;
  for (const line of r.stdout.split('\n')) {
    const m = /^Linux \S+ (\d+\.\d+[\w.+~-]*) \S+$/.exec(line.trim());
    if (m) return m[1];
  }
  return undefined;
}
