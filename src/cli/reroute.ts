/**
 * `iommu-ledger reroute`: the routing of a ledger's imports recomputed into a new ledger. Each
 * imported source's events are read back as trace records (import/reroute.ts) and run through the
 * importer's own order, route, infer and spaces stages (import/pipeline.ts) with the options
 * given, into a new ledger written as an import writes one; what did not come from an import is
 * copied as it is, in its place. The original is opened read-only and never changed; the new
 * ledger is written under a temporary name and renamed when complete. See docs/import.md,
 * "Recomputing the routing (`reroute`)".
 */
import { existsSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { profileFromDescriptor, resolveProfile, type Profile, type ProfileDescriptor } from '../core/profile.js';
import type { DecodedEvent } from '../events/decode.js';
import { LedgerOpenError } from '../events/db.js';
import { commandFromEvent } from '../events/recommand.js';
import { parseCommand, type Command } from '../events/schema.js';
import { EventStore } from '../events/store.js';
import { ImportPipeline } from '../import/pipeline.js';
import { importedKind, Merges, recordOf, RerouteError, type Reread } from '../import/reroute.js';
import type { SpaceHost } from '../import/spaces.js';
import { checkRouteOptions, spaceHost } from '../import/store.js';
import { EndReader } from '../projections/compare.js';
import { Ledger, type Input, type Outcome } from '../projections/ledger.js';
import { loadQueryBuilder, Queries } from '../projections/queries.js';
import { InputError } from './errors.js';
import { collectGarbage } from './gc.js';
import { discardTemporary, publishTemporary, temporaryPathFor } from './newfile.js';

export interface RerouteOptions {
  out: string;
  domain?: string;
  domainBy?: string;
  skew?: string;
  /** Each `--merge A,B[,C...]` as given. */
  merge?: string[];
}

/** One side of the comparison: what the ledger holds and finds. */
export interface LedgerSide {
  /** Every domain and its events (domain-created included). */
  spaces: Array<{ name: string; events: number }>;
  overUnmaps: number;
  harmful: number;
  stepped: number;
  leftMapped: number;
  divergences: number;
  refused: number;
  faults: Record<string, number>;
  /** Bytes mapped at the end, all domains together. */
  mappedAtEnd: bigint;
}

export interface RerouteSummary {
  source: string;
  out: string;
  options: { domain?: string; domainBy: 'infer'; skewUs: number; merge: string[][] };
  /** The imported sources rerouted, in order, with the spaces the routing opened (before merges). */
  sources: Array<{ name: string; digest: string; records: number; spaces: string[]; reordered: number; beforeTrace: number; unexplained: number }>;
  /** Events copied as they are (not from an import), and why the first of their sources is not one. */
  copied: number;
  copiedWhy?: string;
  /** Events in the new ledger. */
  events: number;
  /** Records whose space differs from the one the original import gave them, and up to 5 examples. */
  moved: number;
  movedExamples: Array<{ source: string; line: number; position: number; from: string; to: string }>;
  before: LedgerSide;
  after: LedgerSide;
  ms: number;
}

/** Records (or copied events) per committed transaction, as an import's CHUNK_LINES. */
const CHUNK = 20_000;

interface Group {
  key: string;
  digest: string;
  name: string;
  first: number;
  last: number;
  records: number;
  /** Why this source is not an import (its events are then copied). */
  not?: string;
  /** The profile of the spaces it opened (the import's). */
  profile?: ProfileDescriptor;
  /** The domains its records went to, in order of first use. */
  streams: string[];
  /** Its events (of every kind), and the line and position of each record. */
  events: number;
  lines: number[];
  positions: number[];
  /** It holds what only an import stores: a space it opened, or a mapping inferred from before the trace. */
  marked: boolean;
}

export async function rerouteLedger(source: string, o: RerouteOptions): Promise<RerouteSummary> {
  const t0 = performance.now();
  if (!existsSync(source)) throw new InputError(`no ledger at ${source}`);
  if (sameFile(source, o.out)) throw new InputError(`--out ${o.out} is the ledger itself: reroute never changes its source; give a new file`);
  if (existsSync(o.out)) throw new InputError(`${o.out} exists: reroute writes a new ledger; choose another --out or remove it`);
  if (o.domain !== undefined && o.domainBy !== undefined) throw new InputError('--domain and --domain-by: give one of them');
  if (o.domainBy !== undefined && o.domainBy !== 'infer') {
    if (o.domainBy === 'dev')
      throw new InputError(
        "--domain-by dev: the ledger does not keep the trace's dev= fields, so the routing by them cannot be recomputed: import the trace again with --domain-by dev (into a new ledger)",
      );
    throw new InputError(`--domain-by ${JSON.stringify(o.domainBy)}: infer (the default) or dev`);
  }
  const skewUs = checkRouteOptions({ domain: o.domain, skewUs: o.skew });
  const mergeLists = (o.merge ?? []).map((m) => m.split(',').map((x) => x.trim()));
  for (const l of mergeLists)
    for (const n of l) if (!/^[^\s]{1,200}$/.test(n)) throw new InputError(`--merge ${l.join(',')}: ${JSON.stringify(n)} is not a space name`);
  const merges = new Merges(mergeLists);

  let src: EventStore;
  try {
    src = new EventStore(source, { readonly: true });
  } catch (e) {
    if (e instanceof LedgerOpenError && e.olderSchema)
      throw new InputError(
        `${source} has schema ${e.olderSchema.version}: reroute never changes its source; upgrade it first with 'iommu-ledger --db ${source} rebuild' (on a copy, if this file must stay as it is)`,
      );
    throw e;
  }
  const tmp = temporaryPathFor(o.out);
  let dst: Ledger | undefined;
  try {
    // Pass 1: the sources, and which of them are imports.
    const groups = scanSources(src);
    const imports = [...groups.values()].filter((g) => g.not === undefined);
    if (!imports.length) {
      const applied = [...groups.values()];
      throw new InputError(
        `${source} holds no imported trace, so there is no routing to recompute` +
          (applied.length ? ` (its ${applied.length} source(s) were applied: ${applied[0]!.name}: ${applied[0]!.not})` : ''),
      );
    }
    const notImport = [...groups.values()].find((g) => g.not !== undefined);

    // Pass 2: the new ledger.
    dst = new Ledger(tmp);
    const out = dst;
    const summary = {
      sources: [] as RerouteSummary['sources'],
      copied: 0,
      moved: 0,
      movedExamples: [] as RerouteSummary['movedExamples'],
    };
    const routed = new Set<string>(); // every space the routing opened, before merges
    // One step per record or copied event; committed CHUNK steps at a time, as an import commits
    // its lines in chunks (memory stays bounded; the routing goes on across chunks).
    let add: ((inp: Input) => Outcome) | undefined;
    const adding = (inp: Input) => add!(inp);
    const copy = (ev: DecodedEvent) => {
      const from = { ...(ev.from ?? {}), derivedFrom: { position: ev.position, id: ev.id, strategy: 'copy' } };
      try {
        adding({ cmd: parseCommand(commandFromEvent(ev)), from });
      } catch (e) {
        throw new RerouteError(
          `event #${ev.position} (${ev.type} in ${ev.stream}, not from an import) cannot be copied into the rerouted ledger: ${(e as Error).message} (the spaces it needs are not the same after the reroute)`,
        );
      }
      summary.copied++;
    };
    /** The events of [from, to] that no import holds, copied. */
    function* copyRange(from: number, to: number): Generator<void> {
      if (from > to) return;
      for (const ev of src.events(from, to)) {
        const g = groupOf(ev, groups);
        if (g && g.not === undefined) continue;
        copy(ev);
        yield;
      }
    }
    const steps = (function* (): Generator<void> {
      let pos = 1;
      for (const g of imports) {
        yield* copyRange(pos, g.first - 1);
        yield* rerouteSource(src, out, adding, g, { domain: o.domain, skewUs, merges, routed }, summary);
        // Nothing else was stored among its events (the usual case): they need not be read again.
        pos = g.last - g.first + 1 === g.events ? g.last + 1 : g.first + 1;
      }
      yield* copyRange(pos, Number.MAX_SAFE_INTEGER);
    })();
    for (let done = false; !done;) {
      out.session((a) => {
        add = a;
        for (let n = 0; n < CHUNK; n++) if (steps.next().done) return void (done = true);
      });
      collectGarbage(); // the records are garbage once routed: keeps memory flat, as import does
    }
    // Every name given to --merge must be a space the routing opened (the one kept may also be another domain).
    const have = new Set(out.domains().map((d) => d.name));
    for (const n of merges.names()) {
      const kept = !merges.merged().includes(n);
      if (!routed.has(n) && !(kept && have.has(n)))
        throw new RerouteError(
          `--merge: no space ${n} ${kept ? 'in the rerouted ledger' : 'was opened by the routing'} (the routing opened ${[...routed].join(', ') || 'none'})`,
        );
    }
    const events = out.lastPosition;
    out.close();
    dst = undefined;
    publishTemporary(tmp, o.out);

    await loadQueryBuilder();
    const before = side(source);
    const after = side(o.out);
    const r: RerouteSummary = {
      source,
      out: o.out,
      options: { ...(o.domain !== undefined ? { domain: o.domain } : {}), domainBy: 'infer', skewUs, merge: mergeLists },
      ...summary,
      ...(notImport ? { copiedWhy: `${notImport.name}: ${notImport.not}` } : {}),
      events,
      before,
      after,
      ms: Math.round(performance.now() - t0),
    };
    return r;
  } catch (e) {
    dst?.close();
    discardTemporary(tmp);
    throw e;
  } finally {
    src.close();
  }
}

/** Are a and b the same file (b need not exist)? */
function sameFile(a: string, b: string): boolean {
  if (resolve(a) === resolve(b)) return true;
  try {
    return existsSync(b) && realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

/** The source an event belongs to: the file it came from, when its id is one derived from that file. */
function groupOf(ev: DecodedEvent, groups: Map<string, Group>): Group | undefined {
  const d = ev.from?.digest;
  if (d === undefined) return undefined;
  const g = groups.get(d);
  return g && ev.id.startsWith(`${g.key}:`) ? g : undefined;
}

/** Pass 1: every source (by the digest its events carry), and whether an import could have stored all of its events. */
function scanSources(src: EventStore): Map<string, Group> {
  const groups = new Map<string, Group>();
  let n = 0;
  for (const ev of src.events()) {
    if (++n % 65536 === 0) collectGarbage();
    const d = ev.from?.digest;
    if (d === undefined) continue;
    const key = d.slice(0, 24);
    if (!ev.id.startsWith(`${key}:`)) continue;
    let g = groups.get(d);
    if (!g)
      groups.set(
        d,
        (g = {
          key,
          digest: d,
          name: ev.from?.source ?? d,
          first: ev.position,
          last: ev.position,
          records: 0,
          streams: [],
          marked: false,
          events: 0,
          lines: [],
          positions: [],
        }),
      );
    g.last = ev.position;
    g.events++;
    if (g.not !== undefined) continue;
    const k = importedKind(ev, key);
    if (typeof k === 'object') g.not = k.not;
    else if (k !== 'record') {
      g.marked = true;
      if (k === 'space' && ev.type === 'domain-created') g.profile ??= ev.body.profile;
    } else {
      g.records++;
      g.lines.push(ev.from!.line!);
      g.positions.push(ev.position);
      if (!g.streams.includes(ev.stream)) g.streams.push(ev.stream);
    }
  }
  // A file whose events could all be an import's but that holds no mark of one (a space opened, a
  // mapping inferred) may as well be applied commands: it is copied as it is.
  for (const g of groups.values())
    if (g.not === undefined && !g.marked) g.not = 'no space was opened and nothing inferred for it, so nothing shows that it was imported rather than applied';
  for (const g of groups.values()) if (g.not !== undefined) g.lines = g.positions = [];
  return groups;
}

/** The profile new spaces of a source get: the one its import gave its spaces, else that of the first domain its records went to. */
function profileOf(g: Group, out: Ledger): { profile: Profile; name: string; semantics?: Profile['semantics'] } {
  const d = g.profile ?? out.domains().find((x) => x.name === g.streams[0])?.profile;
  if (!d) return { profile: resolveProfile('intel-vtd'), name: 'intel-vtd' };
  try {
    const builtin = resolveProfile(d.name);
    const profile = resolveProfile(d.name, d.semantics);
    return { profile, name: d.name, ...(d.semantics !== builtin.semantics ? { semantics: d.semantics } : {}) };
  } catch {
    return { profile: profileFromDescriptor(d), name: d.base ?? d.name, semantics: d.semantics };
  }
}

/**
 * A source's records in the order the trace printed them (by line), read back lazily: by the lines
 * and positions the scan noted, from the events in position order, holding only those read ahead of their
 * turn (a record the import decided late, such as an attach that waited for its task's map).
 */
function* printedRecords(src: EventStore, g: Group): Generator<Reread> {
  const mine = (ev: DecodedEvent) => ev.from?.digest === g.digest && ev.id.startsWith(`${g.key}:`) && importedKind(ev, g.key) === 'record';
  const { lines, positions } = g;
  const order = Uint32Array.from(lines.keys()).sort((a, b) => lines[a]! - lines[b]! || positions[a]! - positions[b]!);
  const it = src.events(g.first, g.last);
  const ahead = new Map<number, Reread>();
  for (const i of order) {
    const want = positions[i]!;
    let r = ahead.get(want);
    while (r === undefined) {
      const x = it.next();
      if (x.done) throw new Error(`internal: event #${want} of ${g.name} was not read again`);
      const ev = x.value;
      if (!mine(ev)) continue;
      const rr: Reread = { rec: recordOf(ev), line: ev.from!.line!, position: ev.position, id: ev.id, stream: ev.stream };
      if (ev.position === want) r = rr;
      else ahead.set(ev.position, rr);
    }
    ahead.delete(want);
    yield r;
  }
}

/** One imported source, rerouted: its records in printed order through the importer's stages, appended as an import appends (one step per record). */
function* rerouteSource(
  src: EventStore,
  out: Ledger,
  add: (inp: Input) => Outcome,
  g: Group,
  o: { domain?: string; skewUs: number; merges: Merges; routed: Set<string> },
  summary: { sources: RerouteSummary['sources']; moved: number; movedExamples: RerouteSummary['movedExamples'] },
): Generator<void> {
  // The records pushed and not yet stored, by line: what each stored command was derived from.
  const byLine = new Map<number, Reread>();
  let records = 0;
  const p = profileOf(g, out);
  const merging = o.merges.size > 0;
  const base = spaceHost(out, g.key, { shadows: merging, reserved: o.routed });
  // With merges, the routing sees its own spaces only (a merged target holds another space's
  // records too): what this source opened is new to it, whatever the ledger holds.
  const opened = new Set<string>();
  const host: SpaceHost = merging ? { existing: (n) => (opened.has(n) ? undefined : base.existing(n)), spaceName: (k) => base.spaceName(k) } : base;
  const exists = (n: string) => out.domains().some((d) => d.name === n);
  const store = (cmd: Command, line: number) => {
    const from = byLine.get(line);
    if (from && cmd.op !== 'domain' && !(cmd.op === 'map' && cmd.inferred)) {
      byLine.delete(line);
      if (from.stream !== cmd.domain) {
        summary.moved++;
        if (summary.movedExamples.length < 5) summary.movedExamples.push({ source: g.name, line, position: from.position, from: from.stream, to: cmd.domain });
      }
    }
    add({
      cmd,
      from: { source: g.name, digest: g.digest, line, ...(from ? { derivedFrom: { position: from.position, id: from.id, strategy: 'reroute' } } : {}) },
    });
  };
  const mergedEmit = o.merges.emit(g.key, exists, store);
  const pipeline = new ImportPipeline(
    host,
    {
      profile: p.profile,
      profileName: p.name,
      ...(p.semantics ? { semantics: p.semantics } : {}),
      ...(o.domain !== undefined ? { domain: o.domain } : {}),
      domainBy: 'infer',
      skewNs: BigInt(Math.round(o.skewUs * 1000)),
      sourceKey: g.key,
      sourceName: g.name,
      split: { bitmap: p.profile.pgsizeBitmap, name: p.profile.name },
    },
    (cmd, line) => {
      if (cmd.op === 'domain') {
        opened.add(cmd.domain);
        opened.add(o.merges.target(cmd.domain));
        o.routed.add(cmd.domain);
      }
      mergedEmit(cmd, line);
    },
  );
  for (const r of printedRecords(src, g)) {
    records++;
    byLine.set(r.line, r);
    pipeline.record(r.rec, r.line);
    yield;
  }
  pipeline.end();
  for (const s of pipeline.spaceList) o.routed.add(s.name);
  summary.sources.push({
    name: g.name,
    digest: g.digest,
    records,
    spaces: pipeline.spaceList.map((s) => s.name),
    reordered: pipeline.counts.reordered,
    beforeTrace: pipeline.counts.beforeTrace,
    unexplained: pipeline.counts.unexplained,
  });
}

/** What a ledger holds and finds, read only, through the projections (the queries and compare.ts). */
function side(path: string): LedgerSide {
  const q = new Queries(path, { readonly: true });
  try {
    const over = q.findings({ kind: 'over-unmap' });
    const faults: Record<string, number> = {};
    for (const f of q.faults()) faults[f.cause] = (faults[f.cause] ?? 0) + 1;
    const last = q.lastPosition;
    const ends = new EndReader(q);
    let mapped = 0n;
    const spaces: LedgerSide['spaces'] = [];
    for (const d of q.domains()) {
      spaces.push({ name: d.name, events: d.version });
      if (last > 0) for (const r of ends.pagesAt(d.name, last)) mapped += r.end - r.start;
    }
    return {
      spaces,
      overUnmaps: over.length,
      harmful: over.filter((f) => f.step?.verdict !== 'stepped').length,
      stepped: over.filter((f) => f.step?.verdict === 'stepped').length,
      leftMapped: q.findings({ kind: 'left-mapped' }).length,
      divergences: q.findings({ kind: 'divergence' }).length,
      refused: q.refusedCommands(),
      faults,
      mappedAtEnd: mapped,
    };
  } finally {
    q.close();
  }
}
