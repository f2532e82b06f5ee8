/**
 * Unmaps the driver refused: a left-mapped finding whose loop stopped at a page still mapped,
 * under a behaviour that refuses (core/domain.ts): io-pgtable-arm since v6.13 (`refuse-partial`:
 * a chunk smaller than the leaf it lands in returns 0 with a warning) and the generic page table
 * since v6.19 (`iommupt`: a request starting inside a leaf removes nothing, silently). Derived from
 * the finding and the domain's profile, so it holds for ledgers written before it existed.
 *
 * Why the test is exact: under both behaviours the loop stops only at an empty chunk (nothing
 * mapped there) or at a refusal; so when the first byte the loop did not reach
 * (request + unmapped) is still mapped, the stop was a refusal.
 */
import type { Profile } from '../core/profile.js';
import type { FindingView } from './queries.js';

export interface Refusal {
  /** Where the loop stopped: the IOVA of the refused chunk. */
  at: bigint;
  behaviour: 'refuse-partial' | 'iommupt';
  /** The kernel's warning, when it prints one. */
  warning?: string;
  /** The kernel function that refused. */
  where: string;
}

export const PARTIAL_IOPTE_WARNING = 'Unmap of a partial large IOPTE is not allowed';

export function refusalOf(f: FindingView, profile: Profile): Refusal | undefined {
  if (!f.ok || f.leftMapped.length === 0) return undefined;
  const at = f.requested.iova + f.unmappedSize;
  if (f.leftMapped[0]!.iova !== at) return undefined;
  if (profile.semantics === 'refuse-partial') {
    const where = profile.format.name === 'arm-v7s' ? 'io-pgtable-arm-v7s.c __arm_v7s_unmap' : 'io-pgtable-arm.c __arm_lpae_unmap';
    return { at, behaviour: 'refuse-partial', warning: PARTIAL_IOPTE_WARNING, where };
  }
  if (profile.semantics === 'iommupt' && f.unmappedSize === 0n) return { at, behaviour: 'iommupt', where: 'generic_pt/iommu_pt.h __unmap_range' };
  return undefined;
}
