/**
 * What-if replay: the same commands under another profile or unmap behaviour, into a new
 * ledger file (the original is opened read-only), then a comparison of the two.
 */
import { existsSync } from 'node:fs';
import { formatSize } from '../core/address.js';
import { familyOf, findBuiltinProfile, profileForKernel, profileFromDescriptor, resolveProfile, type Profile, type Semantics } from '../core/profile.js';
import { commandFromEvent } from '../events/recommand.js';
import { EventStore } from '../events/store.js';
import { parseCommand } from '../events/schema.js';
import { Ledger } from '../projections/ledger.js';
import { Queries, type FindingView } from '../projections/queries.js';
import { refusalOf } from '../projections/refusals.js';
import { InputError } from './apply.js';
import { discardTemporary, publishTemporary, temporaryPathFor } from './newfile.js';

export interface ReplaySummary {
  source: string;
  out: string;
  events: number;
  before: Summary;
  after: Summary;
  /** With --kernel: each domain's profile before and after. */
  profiles?: Array<{ domain: string; from: string; to: string }>;
  /** Per caller and call site, the unmaps whose outcome differs between the two ledgers. */
  impact: CallSiteImpact[];
  report: string[];
}

/** How one call site's unmaps fare in the replay against the original (same events, same positions). */
export interface CallSiteImpact {
  caller: string;
  site: string;
  /** Unmaps the driver now refuses (projections/refusals.ts) that it did not before. */
  nowRefused: number[];
  /** Unmaps that now leave part of the request mapped, and did not. */
  nowLeaveMapped: number[];
  /** Unmaps that left part of the request mapped and no longer do. */
  noLongerLeaveMapped: number[];
  /** Over-unmaps that appear, and that vanish. */
  newOverUnmaps: number[];
  goneOverUnmaps: number[];
}

interface Summary {
  overUnmaps: number;
  collateralBytes: bigint;
  leftMapped: number;
  divergences: number;
  rejected: number;
  faults: Record<string, number>;
}

/** The findings of a ledger, read only (the source of a replay is never written). */
function summarize(path: string): Summary {
  const q = new Queries(path, { readonly: true });
  try {
    const over = q.findings({ kind: 'over-unmap' });
    const faults: Record<string, number> = {};
    for (const f of q.faults()) faults[f.cause] = (faults[f.cause] ?? 0) + 1;
    const rejected = q.refusedCommands();
    return {
      overUnmaps: over.length,
      collateralBytes: over.reduce((a, f) => a + f.collateral.reduce((b, c) => b + c.size, 0n), 0n),
      leftMapped: q.findings({ kind: 'left-mapped' }).length,
      divergences: q.findings({ kind: 'divergence' }).length,
      rejected,
      faults,
    };
  } finally {
    q.close();
  }
}

/** The findings of each ledger by position, with refusals, to compare call sites. */
function findingsByPosition(path: string): { left: Map<number, FindingView>; over: Map<number, FindingView>; refused: Set<number> } {
  const q = new Queries(path, { readonly: true });
  try {
    const profiles = new Map(q.domains().map((d) => [d.name, d.profile]));
    const left = new Map(q.findings({ kind: 'left-mapped' }).map((f) => [f.position, f]));
    const over = new Map(q.findings({ kind: 'over-unmap' }).map((f) => [f.position, f]));
    const refused = new Set<number>();
    for (const f of left.values()) {
      const p = profiles.get(f.domain);
      if (p && refusalOf(f, p)) refused.add(f.position);
    }
    return { left, over, refused };
  } finally {
    q.close();
  }
}

function compareCallSites(source: string, out: string): CallSiteImpact[] {
  const a = findingsByPosition(source);
  const b = findingsByPosition(out);
  const sites = new Map<string, CallSiteImpact>();
  const site = (f: FindingView): CallSiteImpact => {
    const key = `${f.caller}\0${f.site}`;
    let c = sites.get(key);
    if (!c) {
      c = { caller: f.caller, site: f.site, nowRefused: [], nowLeaveMapped: [], noLongerLeaveMapped: [], newOverUnmaps: [], goneOverUnmaps: [] };
      sites.set(key, c);
    }
    return c;
  };
  for (const [pos, f] of b.left) if (!a.left.has(pos)) site(f).nowLeaveMapped.push(pos);
  for (const [pos, f] of a.left) if (!b.left.has(pos)) site(f).noLongerLeaveMapped.push(pos);
  for (const pos of b.refused) if (!a.refused.has(pos)) site(b.left.get(pos)!).nowRefused.push(pos);
  for (const [pos, f] of b.over) if (!a.over.has(pos)) site(f).newOverUnmaps.push(pos);
  for (const [pos, f] of a.over) if (!b.over.has(pos)) site(f).goneOverUnmaps.push(pos);
  const weight = (c: CallSiteImpact) => c.nowRefused.length + c.nowLeaveMapped.length + c.newOverUnmaps.length;
  return [...sites.values()].sort((x, y) => weight(y) - weight(x) || x.caller.localeCompare(y.caller) || x.site.localeCompare(y.site));
}

/**
 * The profile of each domain under a kernel release (`replay --kernel`): the behaviour of its
 * profile's family that holds for that release. A custom profile is kept (it names no driver).
 */
function profilesForKernel(src: EventStore, release: string, only?: string): Map<string, { from: string; to: Profile }> {
  const out = new Map<string, { from: string; to: Profile }>();
  for (const ev of src.events()) {
    if (ev.type !== 'domain-created' || (only !== undefined && ev.stream !== only)) continue;
    const d = (ev.body as { profile: Parameters<typeof profileFromDescriptor>[0] }).profile;
    const stored = findBuiltinProfile(d.name);
    if (!stored || profileFromDescriptor(d).format !== stored.format) continue;
    // A stored behaviour other than the profile's own (a what-if replay's, or migrate's strict
    // target) is named with it: the kernel's behaviour replaces it too.
    const from = d.semantics === stored.semantics ? d.name : `${d.name} with ${d.semantics} unmap`;
    out.set(ev.stream, { from, to: profileForKernel(familyOf(d.name), release) });
  }
  return out;
}

export async function replayLedger(
  source: string,
  outPath: string,
  o: { semantics?: Semantics; profile?: string; domain?: string; kernel?: string },
): Promise<ReplaySummary> {
  if (!existsSync(source)) throw new InputError(`no ledger at ${source}`);
  if (existsSync(outPath)) throw new InputError(`${outPath} exists: replay writes a new ledger; choose another --out or remove it`);
  if (o.profile) resolveProfile(o.profile); // a clear error for an unknown name, before anything is written
  if (o.kernel !== undefined && (o.profile || o.semantics))
    throw new InputError("replay: --kernel picks each domain's profile for that release; give it without --profile and --semantics");
  const src = new EventStore(source, { readonly: true });
  const names = src.streams().map((s) => s.name);
  if (o.domain !== undefined && !names.includes(o.domain)) {
    src.close();
    throw new InputError(`--domain ${JSON.stringify(o.domain)}: no such domain in ${source} (it holds ${names.join(', ') || 'none'})`);
  }
  let byKernel: Map<string, { from: string; to: Profile }> | undefined;
  try {
    if (o.kernel !== undefined) byKernel = profilesForKernel(src, o.kernel, o.domain);
  } catch (e) {
    src.close();
    throw e;
  }
  // Written under a temporary name and renamed when complete: a killed replay leaves no --out.
  const tmp = temporaryPathFor(outPath);
  const dst = new Ledger(tmp);
  let events = 0;
  try {
    dst.session((add) => {
      for (const ev of src.events()) {
        const touched = o.domain === undefined || o.domain === ev.stream;
        const change = byKernel
          ? (() => {
              const k = byKernel.get(ev.stream);
              return k && k.to.name !== k.from ? { profile: k.to.name, semantics: k.to.semantics } : {};
            })()
          : touched
            ? { ...(o.semantics ? { semantics: o.semantics } : {}), ...(o.profile ? { profile: o.profile } : {}) }
            : {};
        const cmd = commandFromEvent(ev, change);
        add({ cmd: parseCommand(cmd) });
        events++;
      }
    });
  } catch (e) {
    dst.close();
    discardTemporary(tmp);
    throw e;
  } finally {
    src.close();
  }
  dst.close();
  publishTemporary(tmp, outPath);
  const before = summarize(source);
  const after = summarize(outPath);
  const profiles = byKernel && [...byKernel].map(([domain, k]) => ({ domain, from: k.from, to: k.to.name }));
  const impact = compareCallSites(source, outPath);
  const what =
    (o.kernel !== undefined
      ? `the behaviours of kernel ${o.kernel} (${profiles!.map((p) => `${p.domain}: ${p.from}${p.to !== p.from ? ` -> ${p.to}` : ', unchanged'}`).join('; ') || 'no domain with a built-in profile'})`
      : [o.profile ? `profile ${o.profile}` : '', o.semantics ? `${o.semantics} unmap` : ''].filter(Boolean).join(', ')) +
    (o.domain !== undefined ? ` for domain ${o.domain} (the others as they were)` : '');
  const rows: Array<[string, string | number, string | number]> = [
    ['over-unmaps', before.overUnmaps, after.overUnmaps],
    ['collateral bytes', formatSize(before.collateralBytes), formatSize(after.collateralBytes)],
    ['unmaps left mapped', before.leftMapped, after.leftMapped],
    ['refused commands', before.rejected, after.rejected],
    ['divergences from trace', before.divergences, after.divergences],
    ...[...new Set([...Object.keys(before.faults), ...Object.keys(after.faults)])].map((k): [string, number, number] => [
      `faults: ${k}`,
      before.faults[k] ?? 0,
      after.faults[k] ?? 0,
    ]),
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  const report = [
    `replayed ${events} events of ${source} under ${what} into ${outPath} (the original is unchanged)`,
    ...rows.map(([label, a, b]) => `  ${label.padEnd(width)} ${String(a).padStart(10)}  ->  ${String(b)}`),
    ...impactText(impact),
    `the findings of each: iommu-ledger --db ${source} audit over-unmaps, and --db ${outPath}`,
  ];
  return { source, out: outPath, events, before, after, ...(profiles ? { profiles } : {}), impact, report };
}

/** The call sites whose unmaps fare differently, worst first. */
function impactText(impact: CallSiteImpact[]): string[] {
  if (impact.length === 0) return ['no call site changes: every unmap has the same findings in both ledgers'];
  const ev = (ps: number[]) => (ps.length ? `${ps.length} (#${ps.slice(0, 3).join(', #')}${ps.length > 3 ? ', ...' : ''})` : '-');
  const rows = impact.map((c) => [
    c.caller + (c.site ? ` (${c.site})` : ''),
    ev(c.nowRefused),
    ev(c.nowLeaveMapped),
    ev(c.noLongerLeaveMapped),
    ev(c.newOverUnmaps),
    ev(c.goneOverUnmaps),
  ]);
  const head = ['CALLER (SITE)', 'NOW REFUSED', 'NOW LEAVE MAPPED', 'NO LONGER LEAVE MAPPED', 'NEW OVER-UNMAPS', 'GONE OVER-UNMAPS'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    '  ' +
    r
      .map((x, i) => x.padEnd(w[i]!))
      .join('  ')
      .trimEnd();
  return [
    `call sites whose unmaps change (${impact.length}; event numbers are the same in both ledgers):`,
    line(head),
    line(w.map((n) => '-'.repeat(n))),
    ...rows.map(line),
  ];
}
