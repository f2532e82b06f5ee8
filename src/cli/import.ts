/**
 * `iommu-ledger import FILE|-`: kernel output into the ledger, streaming with constant memory.
 *
 * Tracepoints carry no domain, so records are separated into inferred address spaces: an unmap
 * goes to the space whose live mapping it matches, a map that collides with every space's live
 * mappings opens a new one. Records of one timestamp printed in an order that contradicts cause
 * and effect (an unmap before the map it undoes) are put back in order. See docs/import.md.
 */
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { formatSize, hex } from '../core/address.js';
import { Domain } from '../core/domain.js';
import { BUILTIN_PROFILES, resolveProfile, type Semantics } from '../core/profile.js';
import { splitRegion } from '../core/split.js';
import type { Command } from '../events/schema.js';
import { parseTraceLine, type TraceRecord } from '../import/parse.js';
import type { Ledger, Outcome } from '../projections/ledger.js';
import { digestOf, InputError, materialize, recordSource, Tally } from './apply.js';
import { collectGarbage } from './gc.js';
import type { Tick } from './progress.js';

export interface ImportOptions {
  profile?: string;
  semantics?: Semantics;
  domain?: string;
  domainBy?: 'infer' | 'dev';
  strict?: boolean;
  follow?: boolean;
  caller?: string;
  onProgress?: Tick;
}

export interface ImportSummary {
  source: string;
  lines: number;
  records: number;
  stored: number;
  duplicates: number;
  skipped: number;
  malformed: number;
  malformedExamples: string[];
  profile: string;
  profileWhy: string;
  spaces: string[];
  reordered: number;
  neverSeenMapped: number;
  /** Commands the domain refused (stored with their errno), as `rejected` in apply's summary. */
  rejected: number;
  divergences: number;
  overUnmaps: number;
  splitMismatches: number;
  splitExamples: string[];
  /** When the trace disagrees with the profile: how many unmaps each built-in profile would get wrong. */
  profileFit?: Array<{ profile: string; divergences: number }>;
  report: string[];
}

/** Above this many events, the profile check is skipped (it replays every profile in memory). */
const FIT_LIMIT = 50_000;

/**
 * Replays the imported domains' maps and unmaps under every built-in profile, in memory, and
 * counts the unmaps whose observed unmapped_size each would predict wrongly: the best fit is
 * usually the real hardware.
 */
export function profileFit(ledger: Ledger, spaces: string[]): Array<{ profile: string; divergences: number }> | undefined {
  if (ledger.lastPosition > FIT_LIMIT) return undefined;
  const wanted = new Set(spaces);
  const fits = BUILTIN_PROFILES.map((p) => ({ profile: p, domains: new Map<string, Domain>(), divergences: 0 }));
  for (const ev of ledger.store.read()) {
    if (!wanted.has(ev.stream) || (ev.type !== 'map' && ev.type !== 'unmap')) continue;
    const b = (JSON.parse(ev.data) as { body: Record<string, unknown> }).body;
    for (const f of fits) {
      let d = f.domains.get(ev.stream);
      if (!d) {
        d = new Domain(f.profile);
        f.domains.set(ev.stream, d);
      }
      if (ev.type === 'map') {
        d.map({ iova: BigInt(b.iova as string), paddr: BigInt(b.paddr as string), size: BigInt(b.size as string), ref: ev.position });
      } else {
        const r = d.unmap({ iova: BigInt(b.iova as string), size: BigInt(b.size as string) });
        if (b.observed === true && BigInt(b.unmapped as string) !== r.unmappedSize) f.divergences++;
      }
    }
  }
  return fits.map((f) => ({ profile: f.profile.name, divergences: f.divergences })).sort((a, b) => a.divergences - b.divergences);
}

/** Lines of a file with their numbers and end offsets, streaming; `unterminated` marks a final line without a newline. */
async function* readLines(path: string, start = 0, startLine = 0): AsyncGenerator<{ no: number; text: string; unterminated: boolean; end: number }> {
  const dec = new StringDecoder('utf8');
  let carry = '';
  let no = startLine;
  let offset = start;
  for await (const chunk of createReadStream(path, { start }) as AsyncIterable<Buffer>) {
    const text = carry + dec.write(chunk);
    let from = 0;
    for (;;) {
      const nl = text.indexOf('\n', from);
      if (nl < 0) break;
      no++;
      const line = text.slice(from, nl);
      offset += Buffer.byteLength(line, 'utf8') + 1;
      yield { no, text: line, unterminated: false, end: offset };
      from = nl + 1;
      // A pathological line without newlines is cut by the parser's length limit anyway.
    }
    carry = text.slice(from);
    if (carry.length > 1 << 20) {
      // A megabyte without a newline: report it as one line and move on (constant memory).
      no++;
      offset += Buffer.byteLength(carry, 'utf8');
      yield { no, text: carry, unterminated: false, end: offset };
      carry = '';
    }
  }
  carry += dec.end();
  if (carry.length) {
    no++;
    yield { no, text: carry, unterminated: true, end: offset + Buffer.byteLength(carry, 'utf8') };
  }
}

/** Guesses the hardware from the start of a trace: driver names, address widths, page sizes. */
export function inferProfile(sample: TraceRecord[]): { name: string; why: string } {
  const drivers = new Set(sample.filter((r) => r.driver).map((r) => r.driver!.toLowerCase()));
  const has = (re: RegExp) => [...drivers].some((d) => re.test(d));
  if (has(/omap/)) return { name: 'omap', why: 'fault records name the omap-iommu driver' };
  if (has(/dmar|intel/)) return { name: 'intel-vtd', why: 'fault records name the Intel DMAR driver' };
  if (has(/amd/)) return { name: 'amd-v1', why: 'fault records name the AMD-Vi driver' };
  if (has(/smmu|arm/)) return { name: 'arm-lpae-4k', why: 'fault records name an ARM SMMU driver' };
  const addrs = sample.filter((r) => r.iova !== undefined);
  const wide = addrs.some((r) => r.iova! + (r.size ?? 0n) > 1n << 32n);
  const overUnmap = sample.some((r) => r.event === 'unmap' && r.unmappedSize !== undefined && r.size !== undefined && r.unmappedSize > r.size);
  const devs = sample.map((r) => r.device ?? r.dev ?? '').join(' ');
  if (!wide && /\b[0-9a-f]{8}\.(?:isp|mmu|dsp|iva)/i.test(devs)) {
    return { name: 'omap', why: 'platform devices with 32-bit IOVAs (OMAP-style names)' };
  }
  if (overUnmap) {
    return { name: 'intel-vtd', why: 'the trace shows unmaps that removed whole large pages (unmapped_size > size), as x86 drivers do; pass --profile to choose another' };
  }
  return { name: 'intel-vtd', why: 'no driver named in the trace; the most common x86 IOMMU is assumed (pass --profile to choose)' };
}

interface Space {
  name: string;
  devices: Set<string>;
  /** The domain was in the ledger before this import opened it (it keeps its stored profile). */
  existed: boolean;
}

/** Separates records into address spaces and turns them into commands. */
class Router {
  spaces: Space[] = [];
  private byDevice = new Map<string, Space>();
  private pendingDevices: Array<{ device: string; rec: TraceRecord; line: number }> = [];
  neverSeen = 0;

  constructor(
    private readonly ledger: Ledger,
    private readonly opts: ImportOptions,
    private readonly profileName: string,
    private readonly semantics: Semantics | undefined,
    private readonly emit: (cmd: Command, line: number) => void,
    private readonly sourceKey: string,
    private readonly sourceName: string,
  ) {}

  private core(s: Space): Domain | undefined {
    return this.ledger.peek(s.name);
  }

  private open(name: string, line: number): Space {
    const existing = this.spaces.find((s) => s.name === name);
    if (existing) return existing;
    const existed = this.ledger.peek(name) !== undefined;
    if (!existed && this.ledger.domains().some((d) => d.name === name && d.destroyed)) {
      throw new InputError(`${this.sourceName}:${line}: domain: ${JSON.stringify(name)} was destroyed, so this import cannot put records in it (import into another ledger, or give --domain NAME)`);
    }
    const s: Space = { name, devices: new Set(), existed };
    this.spaces.push(s);
    if (!existed) {
      const cmd = { op: 'domain', domain: name, profile: this.profileName, id: `${this.sourceKey}:domain:${name}` } as Command;
      if (this.semantics) (cmd as { semantics?: Semantics }).semantics = this.semantics;
      this.emit(cmd, line);
    }
    // Devices attached before this space existed belong to the first space opened after them.
    for (const p of this.pendingDevices.splice(0)) this.attach(s, p.device, p.rec, p.line);
    return s;
  }

  private attach(s: Space, device: string, rec: TraceRecord, line: number): void {
    s.devices.add(device);
    this.byDevice.set(device, s);
    this.emit(this.base('attach', s, rec, { device: device.slice(0, 200), ...(rec.groupId !== undefined ? { groupId: rec.groupId } : {}) }), line);
  }

  private base(op: string, s: Space, rec: TraceRecord, extra: Record<string, unknown>): Command {
    const c: Record<string, unknown> = { op, domain: s.name, ...extra };
    // Names from a trace are clipped to what the command schema takes (a kernel comm has 15).
    const origin = rec.prefix !== undefined ? debugOrigin(rec.prefix) : undefined;
    const caller = this.opts.caller ?? rec.task ?? origin?.caller;
    if (caller !== undefined) c.caller = caller.slice(0, 200);
    if (origin?.site !== undefined) c.site = origin.site.slice(0, 500);
    if (rec.task !== undefined) c.task = rec.task.slice(0, 200);
    if (rec.pid !== undefined) c.pid = rec.pid;
    if (rec.tgid !== undefined) c.tgid = rec.tgid;
    if (rec.cpu !== undefined) c.cpu = rec.cpu;
    if (rec.timestamp !== undefined) c.time = rec.timestamp;
    return c as unknown as Command;
  }

  private fixed(): Space | undefined {
    if (this.opts.domain !== undefined) return this.open(this.opts.domain, 0);
    return undefined;
  }

  private first(line: number): Space {
    return this.spaces[0] ?? this.open(this.nextName(), line);
  }

  private nextName(): string {
    return `as${this.spaces.length + 1}`;
  }

  /** The space for a map: by dev=, else the first whose live mappings it does not collide with. */
  private spaceForMap(rec: TraceRecord, line: number): Space {
    const f = this.fixed();
    if (f) return f;
    if (this.opts.domainBy === 'dev' && rec.dev) return this.open(devDomain(rec.dev), line);
    const start = rec.iova!;
    const end = start + rec.size!;
    for (const s of this.spaces) {
      const core = this.core(s);
      if (!core) continue;
      let hit = false;
      for (const _ of core.runs(start, end)) {
        hit = true;
        break;
      }
      if (!hit) return s;
    }
    return this.open(this.nextName(), line);
  }

  /** The space for an unmap: the one whose live mapping it matches best. */
  spaceForUnmap(rec: TraceRecord, line: number, count = true): Space | undefined {
    const f = this.fixed();
    if (f) return f;
    if (this.opts.domainBy === 'dev' && rec.dev) return this.open(devDomain(rec.dev), line);
    const start = rec.iova!;
    const end = start + (rec.size ?? 0n);
    let overlap: Space | undefined;
    for (const s of this.spaces) {
      const core = this.core(s);
      if (!core) continue;
      for (const r of core.runs(start, end > start ? end : start + 1n)) {
        if (r.origin.iova === start && r.origin.size === rec.size) return s;
        overlap ??= s;
        break;
      }
    }
    if (overlap || !count) return overlap;
    this.neverSeen++;
    return undefined;
  }

  /** Would this unmap find nothing mapped (in its fixed domain, or in any space) right now? */
  hitsNothing(rec: TraceRecord): boolean {
    if (this.opts.domain !== undefined) {
      const core = this.ledger.peek(this.opts.domain);
      if (!core) return true;
      const start = rec.iova!;
      const end = start + (rec.size ?? 0n);
      for (const _ of core.runs(start, end > start ? end : start + 1n)) return false;
      return true;
    }
    return this.spaceForUnmap(rec, 0, false) === undefined;
  }

  route(rec: TraceRecord, line: number): void {
    switch (rec.event) {
      case 'map':
      case 'debug_map': {
        const s = this.spaceForMap(rec, line);
        // Devices attached since the last map belong to the space this map lands in.
        for (const p of this.pendingDevices.splice(0)) this.attach(s, p.device, p.rec, p.line);
        this.emit(this.base('map', s, rec, { iova: rec.iova, paddr: rec.paddr, size: rec.size }), line);
        return;
      }
      case 'unmap':
      case 'debug_unmap': {
        const s = this.spaceForUnmap(rec, line) ?? this.first(line);
        const extra: Record<string, unknown> = { iova: rec.iova, size: rec.size };
        if (rec.unmappedSize !== undefined) extra.observedUnmapped = rec.unmappedSize;
        this.emit(this.base('unmap', s, rec, extra), line);
        return;
      }
      case 'io_page_fault': {
        let s = (rec.device && this.byDevice.get(rec.device)) || undefined;
        if (!s && this.opts.domain === undefined) {
          for (const sp of this.spaces) if (this.core(sp)?.find(rec.iova!)) s ??= sp;
        }
        s ??= this.fixed() ?? this.first(line);
        const extra: Record<string, unknown> = { iova: rec.iova };
        if (rec.device) extra.device = rec.device.slice(0, 200);
        if (rec.driver) extra.driver = rec.driver.slice(0, 200);
        if (rec.faultFlags !== undefined) extra.flags = rec.faultFlags;
        this.emit(this.base('fault', s, rec, extra), line);
        return;
      }
      case 'attach':
      case 'add_to_group': {
        const dev = rec.device!;
        if (this.byDevice.has(dev)) return;
        const f = this.fixed();
        if (f) this.attach(f, dev, rec, line);
        else this.pendingDevices.push({ device: dev, rec, line });
        return;
      }
      case 'detach':
      case 'remove_from_group': {
        const waiting = this.pendingDevices.findIndex((p) => p.device === rec.device);
        if (waiting >= 0) {
          this.pendingDevices.splice(waiting, 1);
          return;
        }
        const s = this.byDevice.get(rec.device!);
        if (!s) return;
        this.byDevice.delete(rec.device!);
        this.emit(this.base('detach', s, rec, { device: rec.device!.slice(0, 200) }), line);
        return;
      }
      default:
        return;
    }
  }
}

/**
 * Holds the records of one timestamp and releases them in an order consistent with cause and
 * effect: an unmap that would hit nothing is moved after a map of the same timestamp that
 * creates what it unmaps.
 */
class TieBuffer {
  private group: Array<{ rec: TraceRecord; line: number }> = [];
  private ts: string | undefined;
  reordered = 0;

  constructor(
    private readonly router: Router,
    private readonly release: (rec: TraceRecord, line: number) => void,
  ) {}

  push(rec: TraceRecord, line: number): void {
    if (rec.timestamp === undefined || rec.timestamp !== this.ts) this.flush();
    this.ts = rec.timestamp;
    this.group.push({ rec, line });
    if (rec.timestamp === undefined) this.flush();
  }

  flush(): void {
    const g = this.group;
    this.group = [];
    for (let i = 0; i < g.length; i++) {
      const cur = g[i]!;
      if ((cur.rec.event === 'unmap' || cur.rec.event === 'debug_unmap') && this.router.hitsNothing(cur.rec)) {
        const s = cur.rec.iova!;
        const e = s + (cur.rec.size ?? 1n);
        const j = g.findIndex((x, k) => k > i && (x.rec.event === 'map' || x.rec.event === 'debug_map') && x.rec.iova! < e && x.rec.iova! + x.rec.size! > s);
        if (j > i) {
          const [m] = g.splice(j, 1);
          g.splice(i, 0, m!);
          this.reordered++;
        }
      }
      const r = g[i]!;
      this.release(r.rec, r.line);
    }
  }
}

const SAMPLE_BYTES = 2 << 20;
/** A full collection this often keeps a big import's memory flat (see gc.ts). */
const GC_EVERY_LINES = Number(process.env.IOMMU_LEDGER_GC_LINES ?? 32768);
/** Lines per transaction of a non-strict import. */
const CHUNK_LINES = 20_000;

export async function importFile(ledger: Ledger, file: string, opts: ImportOptions): Promise<ImportSummary> {
  const src = await materialize(file);
  try {
    if (opts.profile) resolveProfile(opts.profile); // unknown names fail before anything is read
    // The names an import gives must pass the command schema too (replay re-validates them).
    if (opts.domain !== undefined && !/^[^\s]{1,200}$/.test(opts.domain)) throw new InputError(`--domain ${JSON.stringify(opts.domain)}: a domain name has 1 to 200 characters and no spaces`);
    if (opts.caller !== undefined && (opts.caller.length === 0 || opts.caller.length > 200)) throw new InputError('--caller: a caller name has 1 to 200 characters');
    let size = 0;
    try {
      size = statSync(src.path).size;
    } catch (e) {
      throw new InputError(`cannot read ${src.name}: ${(e as Error).message}`);
    }
    // Identity of the source: its digest (so importing it again stores nothing new); a followed,
    // growing file is identified by its path and first bytes instead.
    // A followed (growing) file has no final digest: it is known by its first 4 KiB ("head key"),
    // and a later plain import of the same file continues under that key, so its lines are
    // recognised instead of stored twice.
    const head = await new Promise<Buffer>((res, rej) => {
      const bufs: Buffer[] = [];
      createReadStream(src.path, { start: 0, end: 4095 })
        .on('data', (c) => bufs.push(c as Buffer))
        .on('end', () => res(Buffer.concat(bufs)))
        .on('error', (e) => rej(new InputError(`cannot read ${src.name}: ${e.message}`)));
    });
    const headKey = `head-${createHash('sha256').update(head).digest('hex')}`;
    const known = (key: string) => ledger.db.prepare('SELECT name, imported_at FROM sources WHERE digest = ?').get(key) as { name: string; imported_at: string } | undefined;
    let digest: string;
    let continues = false;
    // The whole file's digest, kept when a plain import continues under a followed file's head key.
    let fileDigest: string | undefined;
    if (opts.follow) {
      digest = headKey;
    } else {
      digest = await digestOf(src.path);
      fileDigest = digest;
      if (!known(digest) && known(headKey)) {
        digest = headKey;
        continues = true;
      }
    }
    const sourceKey = digest.slice(0, 24);
    // Every event of it is stored already (ids are digest:line): say so rather than route it again.
    const alreadyImported = (seen: { name: string; imported_at: string }): ImportSummary => {
      const s0 = emptySummary(src.name, opts.profile ?? '(as before)', 'unchanged');
      s0.report = [
        `${src.name}: already imported into ${ledger.store.path} (as ${seen.name}, ${seen.imported_at}); nothing new stored.`,
        'To see it under another profile, use replay: iommu-ledger replay --profile NAME --out other.db',
      ];
      return s0;
    };
    const seen = continues ? undefined : known(digest);
    if (seen && !opts.follow) return alreadyImported(seen);
    if (opts.domain !== undefined && ledger.peek(opts.domain) === undefined && ledger.domains().some((d) => d.name === opts.domain && d.destroyed)) {
      throw new InputError(`--domain ${JSON.stringify(opts.domain)}: domain: ${JSON.stringify(opts.domain)} was destroyed, so it takes no more commands; nothing of ${src.name} was stored (give another --domain)`);
    }
    // The profile: as given, or inferred from the first records.
    let profileName = opts.profile;
    let profileWhy = 'given with --profile';
    if (!profileName) {
      const sample: TraceRecord[] = [];
      for await (const l of readLines(src.path)) {
        const p = parseTraceLine(l.text);
        if (p.kind === 'record') sample.push(p.record);
        if (l.end > SAMPLE_BYTES || sample.length > 20000) break;
      }
      const g = inferProfile(sample);
      profileName = g.name;
      profileWhy = `inferred: ${g.why}`;
    }
    const s = emptySummary(src.name, profileName, profileWhy);
    if (continues) s.report.push('continues an earlier --follow import of this file: lines already stored are recognised');
    const name = file === '-' ? '<stdin>' : basename(file);
    // The kernel's split is compared with the split of the profile the maps run under: an
    // existing --domain keeps its stored profile.
    const splitProfile = (opts.domain !== undefined ? ledger.peek(opts.domain)?.profile : undefined) ?? resolveProfile(profileName);
    const bitmap = splitProfile.pgsizeBitmap;
    let offset = 0;
    let lineNo = 0;
    // One router for the whole import (its spaces and pending attaches carry over between the
    // chunks of a followed file); it emits into the session of the current chunk.
    let add: ((inp: { cmd: Command; from: { source: string; digest: string; line: number } }) => Outcome) | undefined;
    const tally = new Tally();
    const emit = (cmd: Command, line: number) => {
      const o = add!({ cmd, from: { source: name, digest, line } });
      tally.add(o);
    };
    // Without --strict (and without --follow), a big file is stored in transactions of
    // CHUNK_LINES lines: memory stays bounded, and an interrupted import resumes when run again
    // (ids are digest:line; the source is recorded as imported only after its last line).
    const chunked = !opts.strict && !opts.follow;
    let eof = false;
    // Lines of this source stored before (an interrupted import, or a followed file) are skipped
    // before routing, so routing them again cannot open spurious address spaces.
    const storedBefore = () => ledger.db.prepare('SELECT 1 FROM events WHERE event_id >= ? AND event_id < ? LIMIT 1').get(`${sourceKey}:`, `${sourceKey};`) !== undefined;
    let resuming = storedBefore();
    // Set when another process imported the whole source while this one waited for the write lock.
    let importedMeanwhile: { name: string; imported_at: string } | undefined;
    const router = new Router(ledger, opts, profileName, opts.semantics, emit, sourceKey, src.name);
    const runChunk = async (): Promise<void> => {
      await ledger.sessionAsync(async (sessionAdd) => {
        add = sessionAdd;
        const chunkStart = lineNo;
        eof = true;
        // The checks above ran before the write lock was taken: another import of the same source
        // may have stored it, or some of its lines, meanwhile. Now that the lock is held, again.
        if (lineNo === 0 && !continues && !opts.follow && (importedMeanwhile = known(digest))) return;
        if (!resuming) resuming = storedBefore();
        // iommu.c debug lines: `unmapped:` lines after an `unmap this:` add up to what the unmap
        // returned; `mapping:` lines after a `map:` show the kernel's split.
        let pendingUnmap: { rec: TraceRecord; line: number; got: bigint } | undefined;
        let pendingMap: { rec: TraceRecord; line: number; chunks: Array<{ iova: bigint; pgsize: bigint; count: bigint }> } | undefined;
        let lastDebug: { event: string; iova: bigint; size: bigint; line: number } | undefined;
        const ties = new TieBuffer(router, (rec, line) => router.route(rec, line));
        const flushDebug = () => {
          if (pendingUnmap) {
            const r = { ...pendingUnmap.rec, unmappedSize: pendingUnmap.got };
            ties.push(r, pendingUnmap.line);
            pendingUnmap = undefined;
          }
          if (pendingMap) {
            const m = pendingMap;
            pendingMap = undefined;
            if (m.chunks.length) {
              const ours = splitRegion(m.rec.iova!, m.rec.paddr!, m.rec.size!, bitmap);
              const theirs = coalesce(m.chunks);
              const same = ours.length === theirs.length && ours.every((o, i) => o.iova === theirs[i]!.iova && o.pageSize === theirs[i]!.pgsize && o.count === theirs[i]!.count);
              if (!same) {
                s.splitMismatches++;
                if (s.splitExamples.length < 3) {
                  s.splitExamples.push(
                    `${name}:${m.line}: map ${hex(m.rec.iova!)}+${formatSize(m.rec.size!)}: kernel ${theirs.map((c) => `${c.count}x${formatSize(c.pgsize)}`).join(' ')}, ${splitProfile.name} ${ours.map((c) => `${c.count}x${formatSize(c.pageSize)}`).join(' ')}`,
                  );
                }
              }
            }
            ties.push(m.rec, m.line);
          }
        };
        for await (const l of readLines(src.path, offset, lineNo)) {
          s.lines = l.no;
          lineNo = l.no;
          offset = l.end;
          if (l.unterminated && opts.follow) {
            // A line still being written: read it again next time.
            s.lines = l.no - 1;
            lineNo = l.no - 1;
            offset = l.end - Buffer.byteLength(l.text, 'utf8');
            break;
          }
          const p = parseTraceLine(l.text, { unterminated: l.unterminated });
          if (p.kind === 'skip') {
            s.skipped++;
            continue;
          }
          if (p.kind === 'error') {
            const msg = `${src.name}:${l.no}: ${p.reason}: ${JSON.stringify(l.text.length > 160 ? `${l.text.slice(0, 160)}...` : l.text)}`;
            if (opts.strict) throw new InputError(`${msg} (--strict: nothing of this import was stored)`);
            s.malformed++;
            if (s.malformedExamples.length < 5) s.malformedExamples.push(msg);
            continue;
          }
          s.records++;
          const rec = p.record;
          if (resuming && ledger.store.positionOf(`${sourceKey}:${l.no}`) !== undefined) {
            tally.duplicates++;
            // Stored before, so skipped; but a debug line still marks its call, so that the
            // tracepoint copy of the same call (dropped when it was stored, so without an event
            // of its own) is dropped again instead of stored as a second map or unmap.
            if (rec.event === 'debug_unmap' || rec.event === 'debug_map') {
              flushDebug();
              lastDebug = { event: rec.event === 'debug_unmap' ? 'unmap' : 'map', iova: rec.iova!, size: rec.size!, line: l.no };
            }
            continue;
          }
          if (rec.event === 'debug_unmapped') {
            if (pendingUnmap) pendingUnmap.got += rec.unmappedSize ?? 0n;
            continue;
          }
          if (rec.event === 'debug_mapping') {
            if (pendingMap) pendingMap.chunks.push({ iova: rec.iova!, pgsize: rec.pgsize!, count: rec.count ?? 1n });
            continue;
          }
          flushDebug();
          // A tracepoint printed with tp_printk next to the debug line of the same call: one call.
          if ((rec.event === 'map' || rec.event === 'unmap') && lastDebug && lastDebug.event === rec.event && lastDebug.iova === rec.iova && lastDebug.size === rec.size && l.no - lastDebug.line < 16) {
            lastDebug = undefined;
            continue;
          }
          if (rec.event === 'debug_unmap') {
            pendingUnmap = { rec, line: l.no, got: 0n };
            lastDebug = { event: 'unmap', iova: rec.iova!, size: rec.size!, line: l.no };
            continue;
          }
          if (rec.event === 'debug_map') {
            pendingMap = { rec, line: l.no, chunks: [] };
            lastDebug = { event: 'map', iova: rec.iova!, size: rec.size!, line: l.no };
            continue;
          }
          ties.push(rec, l.no);
          if (l.no % 4096 === 0) {
            opts.onProgress?.(l.end, Math.max(size, l.end));
            if (l.no % GC_EVERY_LINES === 0) collectGarbage();
          }
          if (chunked && l.no - chunkStart >= CHUNK_LINES) {
            eof = false;
            break;
          }
        }
        flushDebug();
        ties.flush();
        s.reordered += ties.reordered;
        s.neverSeenMapped = router.neverSeen;
        for (const sp of router.spaces) if (!s.spaces.includes(sp.name)) s.spaces.push(sp.name);
        if (eof || opts.follow) recordSource(ledger, digest, name, lineNo, tally);
        // A plain import that finished a followed file: the file as it is now is imported, and
        // the next plain import of the same bytes says so instead of reading it all again.
        if (eof && continues && fileDigest !== undefined) {
          ledger.db
            .prepare(
              `INSERT OR IGNORE INTO sources (digest, name, lines, first_position, last_position, imported_at)
               SELECT ?, ?, ?, first_position, last_position, ? FROM sources WHERE digest = ?`,
            )
            .run(fileDigest, name, lineNo, new Date().toISOString(), headKey);
        }
        s.stored = tally.stored;
        s.duplicates = tally.duplicates;
        s.divergences = tally.divergences;
        s.rejected = tally.rejected;
        s.overUnmaps = tally.overUnmaps;
      });
    };
    do await runChunk();
    while (chunked && !eof && !importedMeanwhile);
    if (importedMeanwhile) return alreadyImported(importedMeanwhile);
    if (opts.follow) {
      process.stderr.write(`following ${src.name} (Ctrl-C to stop)\n`);
      let stop = false;
      const onInterrupt = () => {
        stop = true;
      };
      process.once('SIGINT', onInterrupt);
      try {
        while (!stop) {
          await new Promise((r) => setTimeout(r, 500));
          let now = 0;
          try {
            now = statSync(src.path).size;
          } catch {
            break;
          }
          if (now < offset) {
            // Truncated or rotated: its lines are known by number under the first 4 KiB's key, so
            // what is written now would read as lines already stored. Stop instead of skipping them.
            throw new InputError(
              `${src.name} shrank from ${offset} to ${now} bytes while it was followed (truncated or rotated): following stopped; the ${s.stored} event(s) stored so far stay (lines 1-${lineNo}); a rotated trace is a new file: import it with its own run`,
            );
          }
          if (now > offset) await runChunk();
        }
      } finally {
        process.off('SIGINT', onInterrupt);
      }
    }
    if (s.divergences > 0) {
      const fit = profileFit(ledger, s.spaces);
      if (fit) s.profileFit = fit;
    }
    // Records routed to an existing domain ran under its stored profile, not this import's.
    const profileOfSpace = (n: string) => ledger.peek(n)?.profile.name ?? profileName;
    const kept = router.spaces.filter((sp) => sp.existed && profileOfSpace(sp.name) !== profileName).map((sp) => ({ domain: sp.name, profile: profileOfSpace(sp.name) }));
    const used = [...new Set(s.spaces.map(profileOfSpace))];
    s.report = [...s.report, ...report(s, ledger, { used, kept, splitProfile: splitProfile.name })];
    return s;
  } finally {
    src.cleanup();
  }
}

const SOURCE_FILE_RE = /^[\w./+-]+\.[chS]$/;
const IDENTIFIER_RE = /^[A-Za-z_]\w*$/;
const LINE_NO_RE = /^\d+$/;

/**
 * The caller and call site of an iommu.c debug line, from its log prefix (TraceRecord.prefix).
 * A dynamic-debug prefix (`[TID] MODULE:FUNCTION:FILE:LINE: `, each part optional, also after a
 * `FILE:LINE: ` part) names the function: it is the caller, and `FILE:LINE` the site (without a
 * file, the dynamic-debug part as printed, e.g. `iommu:__iommu_map:2461`). The `: `-separated
 * parts of the prefix that hold a `:` and no space, with a line number or a source file, are
 * read as dynamic debug; the function is the last C identifier among them. Without a function,
 * the caller is the rest of the prefix (the pr_fmt `iommu`, a device), or all of it.
 */
export function debugOrigin(prefix: string): { caller: string; site?: string } {
  let fn: string | undefined;
  let file: string | undefined;
  let line: string | undefined;
  let dyn: string | undefined;
  const rest: string[] = [];
  for (const seg of prefix.replace(/^(?:\[\d+\]|<intr>) /, '').split(': ')) {
    const parts = seg.split(':');
    if (parts.length < 2 || /\s/.test(seg) || !parts.some((p) => LINE_NO_RE.test(p) || SOURCE_FILE_RE.test(p))) {
      rest.push(seg);
      continue;
    }
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (SOURCE_FILE_RE.test(p)) {
        if (file === undefined && LINE_NO_RE.test(parts[i + 1] ?? '')) {
          file = p;
          line = parts[i + 1];
        }
        i++;
      } else if (IDENTIFIER_RE.test(p)) {
        fn = p;
        dyn = seg;
      }
    }
  }
  const site = file !== undefined ? `${file}:${line}` : dyn;
  if (fn !== undefined) return { caller: fn, site: site! };
  if (site === undefined) return { caller: prefix };
  return { caller: rest.join(': ') || prefix, site };
}

/** A `dev=` name as a domain name (no spaces, at most 200 characters). */
function devDomain(dev: string): string {
  return dev.replace(/\s+/g, '_').slice(0, 200) || 'dev';
}

function emptySummary(source: string, profile: string, profileWhy: string): ImportSummary {
  return {
    source,
    lines: 0,
    records: 0,
    stored: 0,
    duplicates: 0,
    skipped: 0,
    malformed: 0,
    malformedExamples: [],
    profile,
    profileWhy,
    spaces: [],
    reordered: 0,
    neverSeenMapped: 0,
    rejected: 0,
    divergences: 0,
    overUnmaps: 0,
    splitMismatches: 0,
    splitExamples: [],
    report: [],
  };
}

function coalesce(chunks: Array<{ iova: bigint; pgsize: bigint; count: bigint }>): Array<{ iova: bigint; pgsize: bigint; count: bigint }> {
  const out: Array<{ iova: bigint; pgsize: bigint; count: bigint }> = [];
  for (const c of chunks) {
    const last = out[out.length - 1];
    if (last && last.pgsize === c.pgsize && last.iova + last.pgsize * last.count === c.iova) last.count += c.count;
    else out.push({ ...c });
  }
  return out;
}

/** What the report says about profiles: those the touched domains run under, the existing domains that kept another one, the one the page split was checked against. */
interface ProfilesInUse {
  used: string[];
  kept: Array<{ domain: string; profile: string }>;
  splitProfile: string;
}

function report(s: ImportSummary, ledger: Ledger, p: ProfilesInUse): string[] {
  const lines = [
    `${s.source}: ${s.lines} lines, ${s.records} IOMMU records, ${s.stored} events stored${s.duplicates ? `, ${s.duplicates} already in the ledger (nothing new stored for them)` : ''}; ${s.skipped} other lines skipped`,
    `profile: ${s.profile} (${s.profileWhy})`,
  ];
  if (p.kept.length) {
    lines.push(`existing domains keep their own profile: ${p.kept.map((k) => `${k.domain} ${k.profile}`).join(', ')} (--profile and --semantics apply only to the domains an import creates)`);
  }
  lines.push(
    `address spaces: ${s.spaces.length} (${s.spaces.join(', ') || 'none'})${s.spaces.length > 1 ? ' inferred: the same IOVAs were live in several domains at once' : ''}`,
  );
  if (s.malformed) {
    lines.push(`malformed lines skipped: ${s.malformed} (use --strict to fail instead)`);
    for (const m of s.malformedExamples) lines.push(`  ${m}`);
  }
  if (s.reordered) lines.push(`reordered: ${s.reordered} record(s) with equal timestamps put back in cause-and-effect order (an unmap printed before the map it undoes)`);
  if (s.neverSeenMapped) {
    lines.push(
      `nothing mapped: ${s.neverSeenMapped} unmap(s) found nothing mapped in any address space — mapped before the trace began (a trace that starts mid-stream), or already removed (by an over-unmap, say); their divergences are expected`,
    );
  }
  if (s.rejected) lines.push(`refused: ${s.rejected} command(s) refused by the domain (stored with their errno, as 'iommu-ledger history' shows)`);
  if (s.divergences) {
    const used = p.used.length ? p.used : [s.profile];
    const whose = used.length === 1 ? `${used[0]}'s prediction` : `the prediction of each domain's profile (${used.join(', ')})`;
    lines.push(`divergences: ${s.divergences} unmap(s) where the trace's unmapped_size differs from ${whose} — see 'iommu-ledger audit divergences'`);
    if (s.profileFit?.length) {
      const best = s.profileFit[0]!;
      const mine = used.map((u) => s.profileFit!.find((f) => f.profile === u));
      const better = !used.includes(best.profile) && mine.every((m) => m !== undefined && best.divergences < m.divergences);
      // --profile does not change a domain that exists already: replay does.
      const only = s.spaces.length === 1 ? ` --domain ${s.spaces[0]}` : '';
      const how = p.kept.length
        ? `try 'iommu-ledger replay --profile ${best.profile}${only} --out other.db'`
        : `try --profile ${best.profile} (or 'iommu-ledger replay --profile ${best.profile} --out other.db')`;
      lines.push(
        `profile check: replaying these domains under each built-in profile, ${s.profileFit.slice(0, 4).map((f) => `${f.profile} ${f.divergences}`).join(', ')} divergence(s)` +
          (better ? ` — ${best.profile} fits the trace better: ${how}` : ''),
      );
    }
  }
  if (s.splitMismatches) {
    lines.push(`page split: ${s.splitMismatches} map(s) where the kernel's 'mapping:' lines differ from ${p.splitProfile}'s split (a sign of another page-size bitmap):`);
    for (const e of s.splitExamples) lines.push(`  ${e}`);
  }
  lines.push(`over-unmaps: ${s.overUnmaps} — see 'iommu-ledger audit over-unmaps'. Ledger: ${ledger.store.path}`);
  return lines;
}

