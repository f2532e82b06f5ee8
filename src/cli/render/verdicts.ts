/**
 * The words of the stepped/harmful verdicts (core/stepping.ts): why one over-unmap was judged so
 * (`audit`, `explain`, the migration's verification), and the counts after a summary (`apply`,
 * `import`). The read layer gives the verdicts as data (`FindingView.step`, `VerdictCounts`).
 */
import { hex } from '../../core/address.js';
import type { FindingView, StepView } from '../../projections/queries.js';
import type { VerdictCounts } from '../../projections/verdicts.js';

/** The words for a finding's verdict ("stepped: …", "harmful: …"); undefined when it has none (stored before schema 8). */
export function stepText(f: FindingView): string | undefined {
  return f.step && verdictText(f.step, f.requested.iova + f.unmappedSize);
}

/** The words for a verdict; `removedEnd`, where the over-unmap's removal ended (the request's start plus the size it returned). */
function verdictText(v: StepView, removedEnd?: bigint): string {
  const at = v.at !== undefined ? ` (#${v.at})` : '';
  switch (v.reason) {
    case 'ended':
      return "stepped: the removed page ended where the caller's own map ended (the last step of a loop that consumes the returned size)";
    case 'advanced':
      return `stepped: the caller's next unmap${at} started where the removed page ended${removedEnd !== undefined ? ` (${hex(removedEnd)})` : ''}: it consumed the returned size`;
    case 'covered':
      return `stepped: the caller's following unmaps asked for all the collateral${at}, before anybody else used it`;
    case 'remapped':
      return `stepped: the caller mapped into the collateral again itself${at}: it knew the range was free`;
    case 'fault':
      return `harmful: an IO page fault${at} hit the collateral`;
    case 'reused':
      return `harmful: ${v.others?.join(', ') ?? 'another caller'} mapped into the collateral${at} before the caller stepped past it`;
    case 'not-stepped':
      return `harmful: the caller's next unmap${at} went elsewhere: it did not step past the collateral, so it may still count on it`;
    case 'other-owner':
      return `harmful: the collateral was ${v.others?.join(', ') ?? 'another caller'}'s`;
    default:
      return 'harmful until shown otherwise: no later unmap by the caller yet';
  }
}

/** The verdicts, to follow a count of over-unmaps: " (H harmful, S stepped ...)", or nothing when all are harmful. */
export function verdictCountsText(v: VerdictCounts): string {
  if (!v.stepped && !v.pending) return '';
  const parts = [`${v.harmful} harmful`, `${v.stepped} stepped: the caller consumed the returned size`];
  if (v.pending) parts.push(`${v.pending} not decided yet: no later unmap by the caller`);
  return ` (${parts.join('; ')})`;
}
