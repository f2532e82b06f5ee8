/** `reroute`: the report of a recomputed routing (src/cli/reroute.ts). */
import { formatSize } from '../../core/address.js';
import type { LedgerSide, RerouteSummary } from '../reroute.js';

/** The text report of a reroute: what was read back, the spaces before and after, and what changed. */
export function rerouteText(r: RerouteSummary): string {
  const opts = [
    r.options.domain !== undefined ? `--domain ${r.options.domain}` : '',
    `--skew ${r.options.skewUs}`,
    ...r.options.merge.map((m) => `--merge ${m.join(',')}`),
  ].filter(Boolean);
  const spaces = (s: LedgerSide) => s.spaces.map((x) => `${x.name} (${x.events})`).join(', ') || 'none';
  const rows: Array<[string, string | number, string | number]> = [
    ['spaces', r.before.spaces.length, r.after.spaces.length],
    ['over-unmaps', r.before.overUnmaps, r.after.overUnmaps],
    ['  harmful', r.before.harmful, r.after.harmful],
    ['  stepped', r.before.stepped, r.after.stepped],
    ['unmaps left mapped', r.before.leftMapped, r.after.leftMapped],
    ['divergences', r.before.divergences, r.after.divergences],
    ['refused commands', r.before.refused, r.after.refused],
    ['mapped at the end', formatSize(r.before.mappedAtEnd), formatSize(r.after.mappedAtEnd)],
    ...[...new Set([...Object.keys(r.before.faults), ...Object.keys(r.after.faults)])]
      .sort()
      .map((k): [string, number, number] => [`faults: ${k}`, r.before.faults[k] ?? 0, r.after.faults[k] ?? 0]),
  ];
  const width = Math.max(...rows.map((x) => x[0].length));
  return [
    `rerouted ${r.sources.length} imported source(s) of ${r.source} (${opts.join(' ')}) into ${r.out}: ${r.events} events (the original is unchanged)`,
    ...r.sources.map(
      (s) =>
        `  ${s.name}: ${s.records} records -> ${s.spaces.length} space(s) (${s.spaces.join(', ') || 'none'})` +
        (s.reordered ? `, ${s.reordered} reordered` : '') +
        (s.beforeTrace ? `, ${s.beforeTrace} mapping(s) from before the trace` : '') +
        (s.unexplained ? `, ${s.unexplained} unexplained unmap(s)` : ''),
    ),
    ...(r.copied ? [`copied as they were: ${r.copied} event(s) not from an import (${r.copiedWhy ?? 'no source file'})`] : []),
    `spaces before: ${spaces(r.before)}`,
    `spaces after:  ${spaces(r.after)}`,
    `records in another space: ${r.moved}` +
      (r.movedExamples.length ? ` (e.g. ${r.movedExamples.map((m) => `${m.source}:${m.line} ${m.from} -> ${m.to}`).join('; ')})` : ''),
    ...rows.map(([label, a, b]) => `  ${label.padEnd(width)} ${String(a).padStart(10)}  ->  ${String(b)}`),
    `the findings of each: iommu-ledger --db ${r.source} audit over-unmaps, and --db ${r.out}`,
  ].join('\n');
}
