/**
 * The ledger stage: runs a trace through the pipeline (pipeline.ts) and stores the commands it
 * decides, in transactions of CHUNK_LINES lines (or one, with strict), following a growing file
 * if asked. Also what makes an import safe to repeat: a source is known by its digest (or, for a
 * followed file or a stream, by its first 4 KiB), every command's id is derived from the source
 * and line, and an import that stopped half-way runs the whole trace through the pipeline again:
 * the commands stored before are recognised by id, so the ledger ends up exactly as one
 * uninterrupted import would have made it. See docs/import.md.
 */
import { statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { Domain } from '../core/domain.js';
import { LedgerFault } from '../core/errors.js';
import { BUILTIN_PROFILES, familyOf, profileForKernel, ProfileError, resolveProfile, type Semantics } from '../core/profile.js';
import { DomainReplay } from '../events/replay.js';
import type { Command } from '../events/schema.js';
import type { Ledger } from '../projections/ledger.js';
import { overUnmapVerdicts, type VerdictCounts } from '../projections/verdicts.js';
import { domainsCreatedBy, firstPositionIn, knownSource, recordSource, recordWholeFile, sourceHasEvents, Tally } from '../projections/sources.js';
import { ImportPipeline } from './pipeline.js';
import { parseTraceLine } from './parse.js';
import { guessProfileFromFile, kernelOfLogLine, ProfileEvidence } from './profile-guess.js';
import { openSource, ReadError, type Line } from './read.js';
import { DestroyedDomainError, type SpaceHost } from './spaces.js';

/** Errors of the input or the options (exit code 2). */
export class TraceInputError extends LedgerFault {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'TraceInputError';
  }
}

export interface ImportOptions {
  profile?: string;
  /** A kernel release ("6.13"): the profile (given or inferred) behaves as that release's driver (core/profile.ts LATER_PROFILES). */
  kernel?: string;
  semantics?: Semantics;
  domain?: string;
  domainBy?: 'infer' | 'dev';
  strict?: boolean;
  follow?: boolean;
  caller?: string;
  /** Clock skew between CPUs to allow for when ordering records, in microseconds (default SKEW_US); text as given on a command line. */
  skewUs?: number | string;
  /** Bytes read so far and the total, now and then. */
  onProgress?: (done: number, total: number) => void;
  /** A full garbage collection, called every GC_EVERY_LINES lines (keeps a long import's memory flat). */
  collectGarbage?: () => void;
  /** Lines per committed transaction (default CHUNK_LINES): what a crash can lose, at most. */
  chunkLines?: number;
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
  /** Spaces that existed before this import, with the profile they keep. */
  kept: Array<{ domain: string; profile: string }>;
  /** The profiles the spaces run under (an existing domain keeps its own). */
  profilesUsed: string[];
  reordered: number;
  /** Mappings inferred to have existed before the trace began (from later unmaps), and their bytes. */
  beforeTrace: number;
  beforeTraceBytes: bigint;
  /** Unmaps whose unmapped_size no space explained, and of them those that found nothing mapped. */
  unexplained: number;
  neverSeenMapped: number;
  /** Commands the domain refused (stored with their errno), as `rejected` in apply's summary. */
  rejected: number;
  divergences: number;
  overUnmaps: number;
  /** The over-unmaps this import stored, stepped or harmful (core/stepping.ts). */
  verdicts: VerdictCounts;
  splitMismatches: number;
  splitExamples: string[];
  /** The profile the debug lines' page split was compared with. */
  splitProfile: string;
  /** When the trace disagrees with the profile: how many unmaps each built-in profile would get wrong. */
  profileFit?: Array<{ profile: string; divergences: number }>;
  /** The profile check replayed only the first this many maps and unmaps (a big import). */
  profileFitSampled?: number;
  /** The source continues an earlier --follow import of the same file. */
  continues: boolean;
  /** Read through `trace-cmd report` (a trace.dat), or decompressed. */
  via?: 'trace-cmd report';
  compressed?: string;
  /** Set when nothing was done because the source is in the ledger already. */
  alreadyImported?: { name: string; importedAt: string };
}

/** Default allowance for clock skew between CPUs (µs): see window.ts and docs/import.md. */
export const SKEW_US = 20;
/** Lines per transaction of a non-strict import. */
const CHUNK_LINES = 20_000;
/** A stream commits what it has read after this long without a new line (ms). */
const IDLE_MS = 500;
/** A stream is held up to this many bytes until it pauses: one that ends before is a whole file. */
const STREAM_HOLD = 64 << 20;
/** Lines of a stream (or compressed file) the profile is judged from, at most, and their bytes. */
const PROFILE_LINES = 20_000;
const PROFILE_BYTES = 2 << 20;
/** A full collection this often keeps a big import's memory flat. */
const GC_EVERY_LINES = Number(process.env.IOMMU_LEDGER_GC_LINES ?? 32768);
/** The profile check replays at most this many maps and unmaps (every profile in memory). */
const FIT_EVENTS = 50_000;

/** Checks --domain and --skew (import and reroute): the skew in microseconds, or a TraceInputError (exit 2). */
export function checkRouteOptions(opts: { domain?: string; skewUs?: number | string }): number {
  if (opts.domain !== undefined && !/^[^\s]{1,200}$/.test(opts.domain))
    throw new TraceInputError(`--domain ${JSON.stringify(opts.domain)}: a domain name has 1 to 200 characters and no spaces`);
  const skewUs = opts.skewUs === undefined ? SKEW_US : Number(opts.skewUs);
  if (!Number.isFinite(skewUs) || skewUs < 0 || (typeof opts.skewUs === 'string' && !/^\s*\d+(\.\d+)?\s*$/.test(opts.skewUs))) {
    throw new TraceInputError(
      `--skew ${JSON.stringify(String(opts.skewUs))}: give the clock skew between CPUs in microseconds, a number 0 or more (default ${SKEW_US})`,
    );
  }
  return skewUs;
}

export async function importTrace(ledger: Ledger, file: string, opts: ImportOptions): Promise<ImportSummary> {
  if (opts.profile) resolveProfile(opts.profile); // unknown names fail before anything is read
  if (opts.kernel !== undefined) profileForKernel(familyOf(opts.profile ?? 'omap'), opts.kernel); // so does a release that is not one
  if (opts.caller !== undefined && (opts.caller.length === 0 || opts.caller.length > 200))
    throw new TraceInputError('--caller: a caller name has 1 to 200 characters');
  const skewUs = checkRouteOptions(opts);
  const src = await openSource(file);
  const startedAt = ledger.lastPosition;
  let interrupt: (() => void) | undefined;
  try {
    const info = src.info;
    if (opts.follow && info.seekable && (info.compressed || info.via)) {
      throw new TraceInputError(
        `--follow reads a growing text file or a stream; ${info.name} is ${info.via ? 'a trace-cmd binary file' : `${info.compressed}-compressed`}: import it without --follow`,
      );
    }
    // Standard input redirected from a file is that file (read.ts).
    const path = file === '-' ? '/dev/stdin' : file;
    const size = info.seekable && !info.compressed && !info.via ? statSync(path).size : 0;
    const headKey = await src.headKey();
    // The lines, and the first of them held back (a stream's, or those the profile is judged from).
    const first: Line[] = [];
    let lines: AsyncGenerator<Line> = src.lines();
    // A stream (standard input, a pipe, trace_pipe) is read once, as it comes. Until it pauses
    // (IDLE_MS without a line) it is held, up to STREAM_HOLD bytes: one that ends before then
    // (`cat trace | iommu-ledger import -`) is a whole file, known by its digest like the file;
    // one that goes on is live, known by its first 4 KiB (its "head key", like a followed file),
    // commits what it has at each pause, and Ctrl-C ends it (what was read is stored).
    let stream = !info.seekable;
    let waiting: Promise<IteratorResult<Line>> | undefined;
    let stop = false;
    interrupt = () => {
      stop = true;
    };
    if (stream) process.once('SIGINT', interrupt);
    const nextLine = async (): Promise<IteratorResult<Line> | 'idle'> => {
      const held = first.shift();
      if (held) return { done: false, value: held };
      waiting ??= lines.next();
      if (!stream) {
        const r = await waiting;
        waiting = undefined;
        return r;
      }
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<'idle'>((res) => (timer = setTimeout(() => res('idle'), IDLE_MS)));
      const r = await Promise.race([waiting, idle]);
      clearTimeout(timer);
      if (r === 'idle') return r;
      waiting = undefined;
      return r;
    };
    let streamDigest: string | undefined;
    if (stream && !opts.follow) {
      let bytes = 0;
      const pre: Line[] = [];
      while (bytes < STREAM_HOLD && !stop) {
        const n = await nextLine();
        if (n === 'idle') break;
        if (n.done) {
          streamDigest = src.streamDigest();
          break;
        }
        pre.push(n.value);
        bytes += n.value.end - n.value.start;
      }
      first.push(...pre);
      if (streamDigest !== undefined) stream = false; // read to its end: a whole file
    }
    let digest: string;
    let continues = false;
    let fileDigest: string | undefined;
    if (opts.follow || stream) digest = headKey;
    else {
      digest = streamDigest ?? (await src.digest());
      fileDigest = digest;
      if (!knownSource(ledger, digest) && knownSource(ledger, headKey)) {
        digest = headKey;
        continues = true;
      }
    }
    const sourceKey = digest.slice(0, 24);
    const name = file === '-' ? '<stdin>' : basename(file);
    const already = (seen: { name: string; imported_at: string }): ImportSummary => ({
      ...emptySummary(info.name, opts.profile ?? '(as before)', 'unchanged'),
      alreadyImported: { name: seen.name, importedAt: seen.imported_at },
    });
    const seen = continues ? undefined : knownSource(ledger, digest);
    if (seen && !opts.follow && !stream) return already(seen);
    if (opts.domain !== undefined && ledger.peek(opts.domain) === undefined && ledger.domains().some((d) => d.name === opts.domain && d.destroyed)) {
      throw new TraceInputError(
        `--domain ${JSON.stringify(opts.domain)}: domain: ${JSON.stringify(opts.domain)} was destroyed, so it takes no more commands; nothing of ${info.name} was stored (give another --domain)`,
      );
    }
    // The profile: as given, or inferred from evidence sampled over the whole file (from the
    // first lines of a stream, a compressed file or trace-cmd's output).
    let profileName = opts.profile;
    let profileWhy = 'given with --profile';
    /** The release a `Linux version` line of the input names (seen while inferring the profile, or in the first 64 KiB of a plain file). */
    let detectedKernel: string | undefined = info.kernel;
    let detectedFrom = detectedKernel !== undefined ? `the trace.dat's uname (trace-cmd report --uname)` : '';
    if (profileName && size > 0 && !info.compressed && !info.via) detectedKernel = await kernelInHead(path);
    if (!profileName) {
      let g: { name: string; why: string; kernel?: string };
      if (size > 0) g = await guessProfileFromFile(path);
      else {
        const ev = new ProfileEvidence();
        let bytes = 0;
        // The first lines (of a stream: those that come before it pauses or is stopped).
        const take = (l: Line) => {
          bytes += l.end - l.start;
          const p = parseTraceLine(l.text);
          if (p.kind === 'record') ev.add(p.record);
          else if (p.kind === 'skip' && p.why === 'other-text') ev.addLogLine(l.text);
        };
        const held = first.splice(0);
        for (const l of held) {
          if (bytes >= PROFILE_BYTES) break;
          take(l);
        }
        const seen: Line[] = [];
        while (held.length + seen.length < PROFILE_LINES && bytes < PROFILE_BYTES && !stop && !streamDigest) {
          const n = await nextLine();
          if (n === 'idle' || n.done) break;
          seen.push(n.value);
          take(n.value);
        }
        first.push(...held, ...seen);
        g = ev.result();
      }
      profileName = g.name;
      profileWhy = `inferred: ${g.why}`;
      detectedKernel ??= g.kernel;
    }
    if (opts.kernel !== undefined) {
      const k = profileForKernel(familyOf(profileName), opts.kernel);
      if (k.name !== profileName) profileWhy += `; ${k.name} for kernel ${opts.kernel} (--kernel)`;
      else profileWhy += `; the behaviour of kernel ${opts.kernel} (--kernel)`;
      profileName = k.name;
    } else if (detectedKernel !== undefined) {
      // The input says which kernel wrote it: its release picks the behaviour, unless no member
      // of the family models that release (then the profile stays, and the report says so).
      const said = detectedFrom || `the input's 'Linux version ${detectedKernel}' line`;
      try {
        const k = profileForKernel(familyOf(profileName), detectedKernel);
        profileWhy +=
          k.name !== profileName
            ? `; ${k.name} for kernel ${detectedKernel} (${said}; --kernel overrides)`
            : `; the behaviour of kernel ${detectedKernel} (${said})`;
        profileName = k.name;
      } catch (e) {
        if (!(e instanceof ProfileError)) throw e;
        profileWhy += `; ${said}: ${e.message}, so ${profileName} is kept (--kernel overrides)`;
      }
    }
    const profile = resolveProfile(profileName, opts.semantics);
    const s = emptySummary(info.name, profileName, profileWhy);
    s.continues = continues;
    if (info.via) s.via = info.via;
    if (info.compressed) s.compressed = info.compressed;
    // The kernel's split is compared with the split of the profile the maps run under: an
    // existing --domain keeps its stored profile.
    const splitProfile = (opts.domain !== undefined ? ledger.peek(opts.domain)?.profile : undefined) ?? profile;
    s.splitProfile = splitProfile.name;

    let add: ((inp: { cmd: Command; from: { source: string; digest: string; line: number } }) => ReturnType<Ledger['append']>[number]) | undefined;
    const tally = new Tally();
    let pipeline: ImportPipeline | undefined;
    const start = () =>
      new ImportPipeline(
        spaceHost(ledger, sourceKey),
        {
          profile,
          profileName: profileName!,
          semantics: opts.semantics,
          domain: opts.domain,
          domainBy: opts.domainBy,
          caller: opts.caller,
          skewNs: BigInt(Math.round(skewUs * 1000)),
          sourceKey,
          sourceName: info.name,
          split: { bitmap: splitProfile.pgsizeBitmap, name: splitProfile.name },
        },
        (cmd, line) => tally.add(add!({ cmd, from: { source: name, digest, line } })),
      );

    // One reader for the whole import: chunks continue where the last one stopped.
    let offset = 0;
    let lineNo = 0;
    const chunked = !opts.strict;
    const chunkLines = opts.chunkLines ?? CHUNK_LINES;
    if (!Number.isInteger(chunkLines) || chunkLines < 1) throw new RangeError(`chunkLines: ${opts.chunkLines} is not a whole number of lines, 1 or more`);
    let eof = false;
    let importedMeanwhile: { name: string; imported_at: string } | undefined;
    /** The ledger's last position when this import's last chunk committed. */
    let endedAt = -1;
    const runChunk = async (final: boolean): Promise<void> => {
      await ledger.sessionAsync(async (sessionAdd) => {
        add = sessionAdd;
        // Under the write lock: another import of the same source may have stored all of it
        // meanwhile; or some of it, which this one's pipeline must then recognise from the start.
        if (pipeline && info.seekable && ledger.lastPosition !== endedAt) {
          // Another writer stored events since this import's last chunk (another import of the
          // same file, say): what this one decided reads the ledger, so it starts again from the
          // first line, on shadows of its own; what is stored already is recognised by id.
          pipeline = undefined;
          first.length = 0;
          lines = src.lines();
          lineNo = 0;
        }
        if (!pipeline) {
          if (!continues && !opts.follow && !stream && (importedMeanwhile = knownSource(ledger, digest))) return;
          pipeline = start();
        }
        const chunkStart = lineNo;
        eof = true;
        for (;;) {
          const next = stop ? ({ done: true, value: undefined } as const) : await nextLine();
          if (next === 'idle') {
            // Nothing new for a while: decide what is held, and commit (with --strict, one
            // transaction: it waits on).
            if (opts.strict) continue;
            pipeline.idle();
            eof = false;
            break;
          }
          if (next.done) break;
          const l = next.value;
          if (l.unterminated && opts.follow && !stream) {
            // A line still being written: read it again next time.
            lines = src.lines({ start: l.start, startLine: l.no - 1 });
            break;
          }
          s.lines = lineNo = l.no;
          offset = l.end;
          const r = pipeline.line(l.text, l.no, l.unterminated);
          if (r.malformed) {
            if (opts.strict) throw new TraceInputError(`${r.malformed} (--strict: nothing of this import was stored)`);
            s.malformed++;
            if (s.malformedExamples.length < 5) s.malformedExamples.push(r.malformed);
          }
          if (l.no % 4096 === 0) {
            opts.onProgress?.(l.end, Math.max(size, l.end));
            if (l.no % GC_EVERY_LINES === 0) opts.collectGarbage?.();
          }
          if (chunked && l.no - chunkStart >= chunkLines) {
            eof = false;
            break;
          }
        }
        if (eof || final) pipeline.end();
        if (eof || opts.follow || stream) recordSource(ledger, digest, name, lineNo, tally);
        // A plain import that finished a followed file: the file as it is now is imported.
        if (eof && continues && fileDigest !== undefined) recordWholeFile(ledger, fileDigest, headKey, name, lineNo);
        endedAt = ledger.lastPosition;
      });
    };
    try {
      do await runChunk(false);
      while (!eof && !importedMeanwhile && !stop);
      if (stop && !eof) await runChunk(true);
    } finally {
      process.off('SIGINT', interrupt);
    }
    if (importedMeanwhile) return already(importedMeanwhile);
    if (opts.follow && !stream) {
      await follow(
        info.name,
        path,
        () => offset,
        () => ({ lines: lineNo, stored: tally.stored }),
        async () => {
          lines = src.lines({ start: offset, startLine: lineNo });
          await runChunk(true);
        },
      );
    }
    const p = pipeline!;
    // An import returns when every query can answer: what a deferring ledger holds is written now.
    ledger.projectNow();
    s.records = p.records;
    s.skipped = p.skipped;
    s.stored = tally.stored;
    s.duplicates = tally.duplicates;
    s.divergences = tally.divergences;
    s.rejected = tally.rejected;
    s.overUnmaps = tally.overUnmaps;
    s.verdicts = overUnmapVerdicts(ledger, startedAt);
    s.reordered = p.counts.reordered;
    s.beforeTrace = p.counts.beforeTrace;
    s.beforeTraceBytes = p.counts.beforeTraceBytes;
    s.unexplained = p.counts.unexplained;
    s.neverSeenMapped = p.counts.nothingMapped;
    s.splitMismatches = p.splitMismatches;
    s.splitExamples = [...p.splitExamples];
    s.spaces = p.spaceList.map((sp) => sp.name);
    const profileOf = (n: string) => ledger.peek(n)?.profile.name ?? profileName!;
    s.profilesUsed = [...new Set(s.spaces.map(profileOf))];
    s.kept = p.spaceList.filter((sp) => sp.existed && profileOf(sp.name) !== profileName).map((sp) => ({ domain: sp.name, profile: profileOf(sp.name) }));
    if (s.divergences > 0) {
      const fit = profileFit(ledger, s.spaces);
      s.profileFit = fit.fits;
      if (fit.sampled) s.profileFitSampled = fit.sampled;
    }
    return s;
  } catch (e) {
    if (e instanceof DestroyedDomainError || e instanceof ReadError) throw new TraceInputError(e.message);
    throw e;
  } finally {
    if (interrupt) process.off('SIGINT', interrupt);
    await src.close();
  }
}

/**
 * What the pipeline needs to know of the ledger: a domain's state before this source stored
 * anything in it (for a resumed import, as it was before the first run), and the names of the
 * spaces this source opens (the ones it opened before, then free `asN` names). For reroute
 * (cli/reroute.ts): `shadows` keeps the spaces' own shadows even for a new source (the ledger's
 * domains are not what the routing decided when spaces are merged), and `reserved` names count as
 * taken (spaces an earlier source opened and a merge removed).
 */
export function spaceHost(ledger: Ledger, sourceKey: string, o: { shadows?: boolean; reserved?: Iterable<string> } = {}): SpaceHost {
  const resumed = sourceHasEvents(ledger, sourceKey);
  const ours = resumed ? domainsCreatedBy(ledger, sourceKey).map((d) => d.name) : [];
  const oursSet = new Set(ours);
  const taken = new Set([...ledger.domains().map((d) => d.name), ...(o.reserved ?? [])]);
  const given: string[] = [];
  return {
    existing(name: string): { core: Domain; destroyed: boolean } | undefined {
      if (oursSet.has(name)) return undefined;
      const info = ledger.domains().find((d) => d.name === name);
      if (!info) return undefined;
      const first = resumed ? firstPositionIn(ledger, sourceKey, name) : undefined;
      if (first !== undefined) return ledger.domainBefore(name, first);
      if (info.destroyed) return { core: undefined as unknown as Domain, destroyed: true };
      return { core: ledger.peek(name)!, destroyed: false };
    },
    // A resumed import re-emits what was stored: the ledger skips those, so the spaces keep
    // shadows; otherwise each command is applied as it is emitted, and the ledger's own domain
    // is the space's state.
    ...(resumed || o.shadows ? {} : { live: (name: string) => ledger.peek(name) }),
    spaceName(k: number): string {
      if (k < ours.length) return ours[k]!;
      for (let n = 1; ; n++) {
        const cand = `as${n}`;
        if (!taken.has(cand) && !given.includes(cand)) {
          given.push(cand);
          return cand;
        }
      }
    },
  };
}

/**
 * Replays the imported domains' events under every built-in profile, in memory (events/replay.ts),
 * and counts the unmaps whose observed unmapped_size each would predict wrongly: the best fit is
 * usually the real hardware. Each replay follows the kernel's report on every observed unmap
 * (`followObserved: 'always'`): the stored prediction is the stored profile's, not the
 * candidate's. A big import is judged on its first FIT_EVENTS maps and unmaps (a prefix is a
 * history of its own: every unmap in it finds what the maps before it made).
 */
export function profileFit(ledger: Ledger, spaces: string[]): { fits: Array<{ profile: string; divergences: number }>; sampled?: number } {
  const wanted = new Set(spaces);
  const fits = BUILTIN_PROFILES.map((p) => ({ profile: p, replay: new DomainReplay({ profile: p, followObserved: 'always' }), divergences: 0 }));
  let n = 0;
  let sampled: number | undefined;
  for (const ev of ledger.store.events()) {
    if (!wanted.has(ev.stream)) continue;
    if ((ev.type === 'map' || ev.type === 'unmap') && ++n > FIT_EVENTS) {
      sampled = FIT_EVENTS;
      break;
    }
    for (const f of fits) {
      const r = f.replay.apply(ev);
      if (r?.type === 'unmap' && r.result.predicted !== undefined) f.divergences++;
    }
  }
  return {
    fits: fits.map((f) => ({ profile: f.profile.name, divergences: f.divergences })).sort((a, b) => a.divergences - b.divergences),
    ...(sampled ? { sampled } : {}),
  };
}

/** Polls a followed file every 500 ms and imports what was added, until Ctrl-C. */
async function follow(
  name: string,
  path: string,
  offsetNow: () => number,
  progress: () => { lines: number; stored: number },
  more: () => Promise<void>,
): Promise<void> {
  process.stderr.write(`following ${name} (Ctrl-C to stop)\n`);
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
        now = statSync(path).size;
      } catch {
        break;
      }
      const offset = offsetNow();
      if (now < offset) {
        throw new TraceInputError(
          `${name} shrank from ${offset} to ${now} bytes while it was followed (truncated or rotated): following stopped; the ${progress().stored} event(s) stored so far stay (lines 1-${progress().lines}); a rotated trace is a new file: import it with its own run`,
        );
      }
      if (now > offset) await more();
    }
  } finally {
    process.off('SIGINT', onInterrupt);
  }
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
    kept: [],
    profilesUsed: [],
    reordered: 0,
    beforeTrace: 0,
    beforeTraceBytes: 0n,
    unexplained: 0,
    neverSeenMapped: 0,
    rejected: 0,
    divergences: 0,
    overUnmaps: 0,
    verdicts: { stepped: 0, harmful: 0, pending: 0 },
    splitMismatches: 0,
    splitExamples: [],
    splitProfile: profile,
    continues: false,
  };
}

/** The release named by a `Linux version` line in the first 64 KiB of a plain file (a boot log starts with it). */
async function kernelInHead(path: string): Promise<string | undefined> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(65536);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    for (const line of buf.subarray(0, bytesRead).toString('latin1').split('\n')) {
      const k = kernelOfLogLine(line);
      if (k !== undefined) return k;
    }
    return undefined;
  } finally {
    await fh.close();
  }
}
