/**
 * `report`: reads a ledger (read-only) and writes its HTML timeline (render/report.ts): the
 * timeline projection (projections/timeline.ts), each finding with the text `explain` prints for
 * it, the verify status and head, and the commands that give the same figures.
 */
import { writeFileSync } from 'node:fs';
import { EventStore } from '../events/store.js';
import { Queries } from '../projections/queries.js';
import { readTimeline, sampleTimes, type TimelineOptions } from '../projections/timeline.js';
import { explainText } from './render/explain.js';
import { findingTitle, reportHtml, type ReportFinding } from './render/report.js';
import { formatSize, hex } from '../core/address.js';

/** Findings explained in the file (each `explain` is a query); past this, the panel gives the command. */
const EXPLAIN_AT_MOST = 2000;
/** Event times sampled for the time axis. */
const TIME_SAMPLES = 2000;

export interface ReportSummary {
  out: string;
  domains: number;
  runs: number;
  findings: number;
  explained: number;
  bytes: number;
}

export function writeReport(ledger: string, out: string, o: TimelineOptions = {}): ReportSummary {
  const q = new Queries(ledger, { readonly: true });
  let html: string;
  let runs = 0;
  let findings = 0;
  let explained = 0;
  let ndomains = 0;
  try {
    if (o.domain !== undefined) q.domain(o.domain); // an unknown domain is named, exit 2
    const timeline = readTimeline(q, o);
    const explainOf = (domain: string, iova: bigint, at: number): string | undefined => {
      if (explained >= EXPLAIN_AT_MOST) return undefined;
      explained++;
      return explainText(q.explain(domain, iova, at));
    };
    const domains = timeline.map((t) => {
      const fs: ReportFinding[] = [];
      for (const f of t.overUnmaps) {
        const first = f.collateral[0];
        const iova = first ? first.iova : f.requested.iova;
        const verdict = f.step?.verdict ?? 'harmful';
        const collateral = f.collateral.reduce((a, c) => a + c.size, 0n);
        fs.push({
          kind: 'over-unmap',
          position: f.position,
          iova,
          verdict,
          ranges: f.collateral.map((c) => ({ start: c.iova, end: c.iova + c.size })),
          title: findingTitle(
            'over-unmap',
            f.caller,
            f.requested,
            `removed ${formatSize(f.unmappedSize)}, ${formatSize(collateral)} not asked for (${verdict})`,
          ),
          ...optional(explainOf(t.name, iova, f.position)),
        });
      }
      for (const f of t.faults) {
        fs.push({
          kind: 'fault',
          position: f.position,
          iova: f.iova,
          ranges: [],
          title: findingTitle('fault', '', undefined, `at ${hex(f.iova)}${f.device ? ` by ${f.device}` : ''}: ${f.cause}`),
          ...optional(explainOf(t.name, f.iova, f.position)),
        });
      }
      for (const f of t.divergences) {
        fs.push({
          kind: 'divergence',
          position: f.position,
          iova: f.requested.iova,
          ranges: [],
          title: findingTitle(
            'divergence',
            f.caller,
            f.requested,
            `the kernel said ${formatSize(f.unmappedSize)}, the profile predicts ${formatSize(f.predicted)}`,
          ),
          ...optional(explainOf(t.name, f.requested.iova, f.position)),
        });
      }
      fs.sort((a, b) => a.position - b.position);
      runs += t.runs.length;
      findings += fs.length;
      return { timeline: t, findings: fs };
    });
    ndomains = domains.length;
    const counts = q.counts();
    const events = Object.values(counts).reduce((a, n) => a + n, 0);
    const times = sampleTimes(q, TIME_SAMPLES);
    const store = new EventStore(ledger, { readonly: true });
    let verify;
    try {
      verify = store.verify();
    } finally {
      store.close();
    }
    const scope = o.domain !== undefined ? ` --domain ${o.domain}` : '';
    html = reportHtml({
      ledger,
      generatedAt: new Date().toISOString(),
      domains,
      times,
      events,
      counts: { maps: counts.map ?? 0, unmaps: counts.unmap ?? 0, faults: counts.fault ?? 0 },
      verify: { ok: verify.ok, ...(verify.head ? { head: verify.head } : {}), message: verify.message },
      commands: [
        `iommu-ledger --db ${ledger} audit over-unmaps --all${scope}`,
        `iommu-ledger --db ${ledger} audit faults${scope}`,
        `iommu-ledger --db ${ledger} audit divergences${scope}`,
        `iommu-ledger --db ${ledger} verify`,
      ],
    });
  } finally {
    q.close();
  }
  writeFileSync(out, html);
  return { out, domains: ndomains, runs, findings, explained, bytes: Buffer.byteLength(html) };
}

function optional(explain: string | undefined): { explain?: string } {
  return explain === undefined ? {} : { explain };
}
