/** `explain`: the sentences of an answer, and `explain --json` (that answer as data, with its text). */
import { formatSize, hex } from '../../core/address.js';
import { formatProt } from '../../events/prot.js';
import type { EventSummary, ExplainFault, Explanation, FindingView, IovaRange, PageView, RemovedView, Removal } from '../../projections/queries.js';
import { findingJson } from './findings.js';
import { stepText } from './verdicts.js';
import { describePage, rangeText, whoText } from './words.js';

/** The answer as one paragraph: what the IOVA is and why, the unmaps that left it mapped, the faults at it. */
export function explainText(e: Explanation): string {
  const lines: string[] = [];
  const where = `${hex(e.iova)} in domain ${e.domain}`;
  const asOf = `as of event #${e.asOf}`;
  switch (e.kind) {
    case 'mapped': {
      const m = e.map;
      lines.push(
        e.inferred
          ? `${where} is mapped ${asOf}: ${describePage(e.page)}; it was mapped before the trace began (event #${m.position}, inferred from the unmap that removes it: its physical address and caller are unknown).`
          : `${where} is mapped ${asOf}: ${describePage(e.page)}, mapped ${when(m)}by ${whoText(m.who)} (event #${m.position}, map of ${range(e.mapRange)}).`,
      );
      for (const f of e.leftBy) {
        lines.push(
          `It was left mapped: ${f.caller} asked to unmap ${rangeText(f.requested.iova, f.requested.size)} at event #${f.position}, but the unmap ${f.ok ? `returned ${formatSize(f.unmappedSize)} and stopped before it` : `was refused (${f.errno})`}.`,
        );
      }
      break;
    }
    case 'destroyed':
      lines.push(`${where} is not mapped ${asOf}: the domain was destroyed ${when(e.event)}(event #${e.event.position}).`);
      break;
    case 'unmapped': {
      const u = e.event;
      lines.push(
        `${where} is not mapped ${asOf}: ${whoText(u.who)} unmapped it ${when(u)}(event #${u.position}, unmap of ${range(e.request)}); ${mappedByText(e.map, e.inferred)}.`,
      );
      break;
    }
    case 'over-unmapped': {
      const u = e.event;
      const m = e.map;
      lines.push(
        `${where} is not mapped ${asOf} because of an over-unmap: ${whoText(u.who)} asked to unmap only ${range(e.request)} ${when(u)}(event #${u.position}), ` +
          `but the ${REMOVAL_TEXT[e.removal]} — ${describeRemoved(e.run, e.removed)} — ${e.inferred ? `which was mapped before the trace began (event #${m.position}, inferred)` : `which ${whoText(m.who)} had mapped at event #${m.position}`}` +
          stepWords(e.finding, e.owners, e.asOf),
      );
      break;
    }
    case 'never-mapped':
      lines.push(`${where} was never mapped up to event #${e.asOf}.`);
      break;
  }
  for (const n of e.faultNotes) lines.push(faultText(n));
  return lines.join(' ');
}

/** `explain --json`: the answer as data, with its `text`; 64-bit values as "0x" strings (by `json`). */
export function explainJson(e: Explanation): Record<string, unknown> {
  const { kind, domain, iova, asOf, faultNotes, blame, findings, faults } = e;
  const answer: Record<string, unknown> = {};
  switch (e.kind) {
    case 'mapped':
      Object.assign(answer, { page: e.page, map: e.map, inferred: e.inferred, mapRange: e.mapRange, leftBy: e.leftBy.map(findingJson) });
      break;
    case 'destroyed':
      answer.event = e.event;
      break;
    case 'unmapped':
      Object.assign(answer, { event: e.event, request: e.request, map: e.map, inferred: e.inferred });
      break;
    case 'over-unmapped':
      Object.assign(answer, {
        event: e.event,
        request: e.request,
        map: e.map,
        inferred: e.inferred,
        run: e.run,
        removal: e.removal,
        owners: e.owners,
        finding: e.finding ? findingJson(e.finding) : undefined,
      });
      break;
    case 'never-mapped':
      break;
  }
  return {
    text: explainText(e),
    kind,
    domain,
    iova,
    asOf,
    ...answer,
    faultNotes,
    blame,
    findings: findings.map(findingJson),
    faults,
    removed: e.kind === 'over-unmapped' ? e.removed : undefined,
  };
}

const REMOVAL_TEXT: Record<Removal, string> = {
  'unmap-removed-more': 'unmap removed more',
  'driver-removed-pages': 'driver removed whole pages',
  'driver-removed-page': 'driver removed the whole page',
};

/** A map or unmap event's range as `0x…+SIZE` ('' for other events). */
function range(r: IovaRange | undefined): string {
  return r ? rangeText(r.iova, r.size) : '';
}

/** "at 511.102331 s " or "at 2026-11-23T10:00:00Z " before the event's number ('' without a time). */
function when(e: EventSummary): string {
  if (!e.time) return '';
  return /^\d+\.\d+$/.test(e.time) ? `at ${e.time} s ` : `at ${e.time} `;
}

/** Who had mapped a page: a caller and event, or a mapping inferred from before the trace. */
function mappedByText(mapEv: EventSummary, inferred: boolean): string {
  if (inferred) {
    return `it had been mapped before the trace began (event #${mapEv.position}: inferred from that unmap's unmapped_size, which proves a mapping the trace never showed)`;
  }
  return `it had been mapped by ${whoText(mapEv.who)} at event #${mapEv.position}`;
}

/** Bytes of a run that an unmap removed: whole pages of it, or part of one (a block cut by the kernel's report). */
function describeRemoved(run: PageView, r: RemovedView): string {
  const ps = run.pageSize;
  if (r.iova % ps === 0n && r.size % ps === 0n) return describePage({ ...run, iova: r.iova, paddr: r.paddr, count: r.size / ps });
  return `${formatSize(r.size)} at ${hex(r.iova)}..${hex(r.iova + r.size)} -> ${hex(r.paddr)} (${formatProt(run.prot)}) of ${describePage(run)}`;
}

/**
 * The end of the over-unmap sentence: who still meant the page to be mapped, and whether the
 * over-unmap was stepped (the caller consumed the returned size) or harmful (core/stepping.ts).
 */
function stepWords(f: FindingView | undefined, owners: string[], at: number): string {
  const st = f?.step;
  const wanted = (who: string[]) => (who.length ? `; ${who.join(', ')} still meant it to be mapped.` : '.');
  if (!f || !st) return wanted(owners);
  const words = stepText(f)!.replace(/^(stepped|harmful)( until shown otherwise)?: /, '');
  const later = st.at !== undefined && st.at > at ? ` — shown after #${at}` : '';
  if (st.verdict === 'stepped') return `${wanted(owners.filter((o) => o !== f.caller))} It was a stepped over-unmap, not a loss: ${words}${later}.`;
  if (st.verdict === 'harmful') return `${wanted(owners)} Harmful: ${words}${later}.`;
  return `${wanted(owners)} Whether ${f.caller} stepped past it is not known yet: no later unmap by it.`;
}

/** The time between two trace timestamps, as text: µs, ms or s. */
export function apartText(us: number): string {
  if (us < 1000) return `${us} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us % 1000 === 0 ? 0 : 1)} ms`;
  return `${(us / 1e6).toFixed(3)} s`;
}

/** A fault at the page, placed relative to the event the answer names. */
function faultText({ fault: f, relation, apartMicros }: ExplainFault): string {
  let rel = relation === 'recorded' ? 'was recorded' : relation === 'followed' ? 'followed' : 'came before it';
  if (apartMicros !== undefined && relation !== 'recorded') {
    const gap = apartText(apartMicros);
    rel = relation === 'followed' ? `followed ${gap} later` : `came ${gap} before it`;
  }
  return `A fault at ${hex(f.iova)} ${f.device ? `from ${f.device} ` : ''}at event #${f.position}${f.time ? ` (${/^\d+\.\d+$/.test(f.time) ? `${f.time} s` : f.time})` : ''} ${rel} (${f.cause.replace(/-/g, ' ')}).`;
}
