/** `audit`'s listings (over-unmaps, left-mapped ranges, divergences, faults) and a finding as JSON. */
import { formatSize, hex } from '../../core/address.js';
import type { FaultView, FindingView } from '../../projections/queries.js';
import { table } from './format.js';
import type { Refusal } from '../../projections/refusals.js';
import { stepText } from './verdicts.js';

/** A finding for --json, its 64-bit values already "0x" text (thousands are printed: no replacer needed), its verdict with its words. */
export function findingJson(f: FindingView) {
  return {
    position: f.position,
    time: f.time,
    domain: f.domain,
    caller: f.caller,
    site: f.site || undefined,
    requested: { iova: hex(f.requested.iova), size: hex(f.requested.size) },
    unmappedSize: hex(f.unmappedSize),
    predictedSize: hex(f.predicted),
    ok: f.ok,
    errno: f.errno,
    collateral: f.collateral.map((c) => ({ iova: hex(c.iova), size: hex(c.size), mappedBy: c.mappedBy, mappedByCaller: c.mappedByCaller, owner: c.owner })),
    leftMapped: f.leftMapped.map((l) => ({ iova: hex(l.iova), size: hex(l.size) })),
    ...(f.step ? { stepped: f.step.verdict === 'stepped', step: { ...f.step, text: stepText(f) } } : {}),
  };
}

/**
 * The listing of `audit over-unmaps|left-mapped|divergences`, as blocks to print one after another:
 * a heading, and a table when there are findings. `hidden` counts the stepped over-unmaps left out.
 */
export function findingsText(what: string, f: FindingView[], hidden = 0): string[] {
  if (what === 'over-unmaps') {
    const stepped = f.filter((x) => x.stepped).length;
    const harmful = f.length - stepped;
    const heading = hidden
      ? `${harmful} harmful over-unmap(s): unmaps that removed more than was asked, and somebody still relied on it; ${hidden} stepped one(s) hidden (the caller consumed the returned size: --all lists them)`
      : stepped
        ? `${f.length} over-unmap(s): unmaps that removed more than was asked; ${harmful} harmful, ${stepped} stepped (the caller consumed the returned size)`
        : `${f.length} over-unmap(s): unmaps that removed more than was asked`;
    if (!f.length) return [heading];
    return [
      heading,
      table(
        ['#', 'DOMAIN', 'CALLER', 'REQUESTED', 'UNMAPPED', 'COLLATERAL', 'MAPPED BY', 'STILL WANTED BY', 'VERDICT'],
        f.map((x) => [
          String(x.position),
          x.domain,
          x.caller + (x.site ? ` (${x.site})` : ''),
          `${hex(x.requested.iova)}+${formatSize(x.requested.size)}`,
          formatSize(x.unmappedSize),
          x.collateral.map((c) => `${hex(c.iova)}+${formatSize(c.size)}`).join(', '),
          [...new Set(x.collateral.map((c) => `#${c.mappedBy} ${c.mappedByCaller}`))].join(', '),
          // A stepped over-unmap's caller consumed the returned size: it wants none of it any more.
          [...new Set(x.collateral.flatMap((c) => c.owner))].filter((o) => !x.stepped || o !== x.caller).join(', ') || '-',
          x.step ? `${x.step.verdict} (${x.step.reason}${x.step.at !== undefined && x.step.at !== x.position ? ` #${x.step.at}` : ''})` : '-',
        ]),
      ),
    ];
  }
  if (what === 'left-mapped') {
    const heading = `${f.length} unmap(s) left part of the requested range mapped`;
    if (!f.length) return [heading];
    return [
      heading,
      table(
        ['#', 'DOMAIN', 'CALLER', 'REQUESTED', 'UNMAPPED', 'STILL MAPPED', 'RESULT'],
        f.map((x) => [
          String(x.position),
          x.domain,
          x.caller,
          `${hex(x.requested.iova)}+${formatSize(x.requested.size)}`,
          formatSize(x.unmappedSize),
          x.leftMapped.map((l) => `${hex(l.iova)}+${formatSize(l.size)}`).join(', '),
          x.ok ? 'ok' : (x.errno ?? 'error'),
        ]),
      ),
    ];
  }
  const heading = `${f.length} divergence(s): the trace's unmapped_size differs from the profile's prediction`;
  if (!f.length) return [heading];
  return [
    heading,
    table(
      ['#', 'DOMAIN', 'CALLER', 'REQUESTED', 'OBSERVED', 'PREDICTED'],
      f.map((x) => [
        String(x.position),
        x.domain,
        x.caller,
        `${hex(x.requested.iova)}+${formatSize(x.requested.size)}`,
        formatSize(x.unmappedSize),
        formatSize(x.predicted),
      ]),
    ),
    'Many divergences usually mean a wrong --profile: try `iommu-ledger replay --profile NAME --out other.db` and compare.',
  ];
}

/** `audit faults`: a heading, and a table when there are faults. */
export function faultsText(f: FaultView[]): string[] {
  const heading = `${f.length} IO page fault(s)`;
  if (!f.length) return [heading];
  return [
    heading,
    table(
      ['#', 'DOMAIN', 'IOVA', 'DEVICE', 'CAUSE', 'BY EVENT'],
      f.map((x) => [String(x.position), x.domain, hex(x.iova), x.device ?? '', x.cause, x.causePosition ? `#${x.causePosition}` : '']),
    ),
  ];
}

/** `audit refused-unmaps`: unmaps the driver refused (projections/refusals.ts), with the kernel's words. */
export function refusedText(f: Array<{ finding: FindingView; refusal: Refusal }>): string[] {
  const heading = `${f.length} unmap(s) refused by the driver: it removed nothing from the page at the address shown and the unmap stopped there, leaving the rest of the request mapped`;
  if (!f.length) return [heading];
  return [
    heading,
    table(
      ['#', 'DOMAIN', 'CALLER', 'REQUESTED', 'UNMAPPED', 'REFUSED AT', 'STILL MAPPED', 'THE KERNEL'],
      f.map(({ finding: x, refusal: r }) => [
        String(x.position),
        x.domain,
        x.caller + (x.site ? ` (${x.site})` : ''),
        `${hex(x.requested.iova)}+${formatSize(x.requested.size)}`,
        formatSize(x.unmappedSize),
        hex(r.at),
        x.leftMapped.map((l) => `${hex(l.iova)}+${formatSize(l.size)}`).join(', '),
        r.warning ? `WARN "${r.warning}" (${r.where})` : `returns 0 for a start inside a large IOPTE (${r.where})`,
      ]),
    ),
  ];
}

export function refusedJson(x: { finding: FindingView; refusal: Refusal }) {
  const r = x.refusal;
  return { ...findingJson(x.finding), refused: { at: hex(r.at), behaviour: r.behaviour, ...(r.warning ? { warning: r.warning } : {}), where: r.where } };
}
