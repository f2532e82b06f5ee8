/**
 * `iommu-ledger import FILE|-`: the options, and the report. The work is src/import's pipeline
 * (read, parse, calls, order and route, the ledger stage in store.ts); see docs/import.md.
 */
import { formatSize } from '../core/address.js';
import { importTrace, type ImportOptions, type ImportSummary } from '../import/store.js';
import type { Ledger } from '../projections/ledger.js';
import { verdictCountsText } from './render/verdicts.js';
import { capHeapGrowth, collectGarbage } from './gc.js';

export type { ImportOptions, ImportSummary };

/** The summary, with the report as printed (also `report` in --json). */
export type ImportReport = ImportSummary & { report: string[] };

export async function importFile(ledger: Ledger, file: string, opts: ImportOptions): Promise<ImportReport> {
  capHeapGrowth();
  const s = await importTrace(ledger, file, { collectGarbage, ...opts });
  return { ...s, report: report(s, ledger.store.path) };
}

function report(s: ImportSummary, ledgerPath: string): string[] {
  if (s.alreadyImported) {
    return [
      `${s.source}: already imported into ${ledgerPath} (as ${s.alreadyImported.name}, ${s.alreadyImported.importedAt}); nothing new stored.`,
      'To see it under another profile, use replay: iommu-ledger replay --profile NAME --out other.db',
    ];
  }
  const lines: string[] = [];
  if (s.continues) lines.push('continues an earlier --follow import of this file: lines already stored are recognised');
  if (s.via) lines.push(`${s.source}: a trace-cmd binary file, read through 'trace-cmd report'`);
  else if (s.compressed) lines.push(`${s.source}: ${s.compressed}-compressed, read decompressed`);
  lines.push(
    `${s.source}: ${s.lines} lines, ${s.records} IOMMU records, ${s.stored} events stored${s.duplicates ? `, ${s.duplicates} already in the ledger (nothing new stored for them)` : ''}; ${s.skipped} other lines skipped`,
    `profile: ${s.profile} (${s.profileWhy})`,
  );
  if (s.kept.length) {
    lines.push(
      `existing domains keep their own profile: ${s.kept.map((k) => `${k.domain} ${k.profile}`).join(', ')} (--profile and --semantics apply only to the domains an import creates)`,
    );
  }
  lines.push(
    `address spaces: ${s.spaces.length} (${s.spaces.join(', ') || 'none'})${s.spaces.length > 1 ? ' inferred: the same IOVAs were live in several domains at once' : ''}`,
  );
  if (s.malformed) {
    lines.push(`malformed lines skipped: ${s.malformed} (use --strict to fail instead)`);
    for (const m of s.malformedExamples) lines.push(`  ${m}`);
  }
  if (s.reordered) {
    lines.push(
      `reordered: ${s.reordered} record(s) put back in the order the kernel's unmapped_size proves (records of CPUs printed with the same timestamp, or within the --skew allowance, the other way round)`,
    );
  }
  if (s.beforeTrace) {
    lines.push(
      `before the trace: ${s.beforeTrace} mapping(s), ${formatSize(s.beforeTraceBytes)} in all, existed before the trace began: inferred from the unmaps that removed them, and stored marked as inferred`,
    );
  }
  if (s.neverSeenMapped) {
    lines.push(
      `nothing mapped: ${s.neverSeenMapped} unmap(s) removed what no address space held, and no gap the trace left untouched could have held it (already removed by an over-unmap, say)`,
    );
  }
  if (s.rejected) lines.push(`refused: ${s.rejected} command(s) refused by the domain (stored with their errno, as 'iommu-ledger history' shows)`);
  if (s.divergences) {
    const used = s.profilesUsed.length ? s.profilesUsed : [s.profile];
    const whose = used.length === 1 ? `${used[0]}'s prediction` : `the prediction of each domain's profile (${used.join(', ')})`;
    lines.push(
      `divergences: ${s.divergences} unmap(s) where the trace's unmapped_size differs from ${whose}; the pages follow the kernel — see 'iommu-ledger audit divergences'`,
    );
    if (s.profileFit?.length) {
      const best = s.profileFit[0]!;
      const mine = used.map((u) => s.profileFit!.find((f) => f.profile === u));
      const better = !used.includes(best.profile) && mine.every((m) => m !== undefined && best.divergences < m.divergences);
      // --profile does not change a domain that exists already: replay does.
      const only = s.spaces.length === 1 ? ` --domain ${s.spaces[0]}` : '';
      const how = s.kept.length
        ? `try 'iommu-ledger replay --profile ${best.profile}${only} --out other.db'`
        : `try --profile ${best.profile} (or 'iommu-ledger replay --profile ${best.profile} --out other.db')`;
      lines.push(
        `profile check: replaying ${s.profileFitSampled ? `the first ${s.profileFitSampled} maps and unmaps of ` : ''}these domains under each built-in profile, ${s.profileFit
          .slice(0, 4)
          .map((f) => `${f.profile} ${f.divergences}`)
          .join(', ')} divergence(s)` + (better ? ` — ${best.profile} fits the trace better: ${how}` : ''),
      );
    }
  }
  if (s.splitMismatches) {
    lines.push(
      `page split: ${s.splitMismatches} map(s) where the kernel's 'mapping:' lines differ from ${s.splitProfile}'s split (a sign of another page-size bitmap):`,
    );
    for (const e of s.splitExamples) lines.push(`  ${e}`);
  }
  lines.push(`over-unmaps: ${s.overUnmaps}${verdictCountsText(s.verdicts)} — see 'iommu-ledger audit over-unmaps'. Ledger: ${ledgerPath}`);
  return lines;
}
