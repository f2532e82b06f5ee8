/** IOMMU protection flags (include/linux/iommu.h IOMMU_READ, IOMMU_WRITE, ...) as letters. */
import { PROT } from '../core/prot.js';

/** "rw", "r", "w", "rwx"... or the kernel's IOMMU_* bit mask as a number. */
export function parseProt(v: string | number): number {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new Error(`prot ${v} is not an IOMMU_* bit mask (0..255)`);
    return v;
  }
  let p = 0;
  for (const ch of v.toLowerCase()) {
    if (ch === 'r') p |= PROT.READ;
    else if (ch === 'w') p |= PROT.WRITE;
    else if (ch === 'c') p |= PROT.CACHE;
    else if (ch === 'x') continue;
    else if (ch === 'n') p |= PROT.NOEXEC;
    else if (ch === 'm') p |= PROT.MMIO;
    else if (ch === 'p') p |= PROT.PRIV;
    else if (ch === '-') continue;
    else throw new Error(`prot ${JSON.stringify(v)}: unknown letter ${JSON.stringify(ch)} (use r, w, c, n, m, p)`);
  }
  return p;
}

export function formatProt(p: number): string {
  let s = (p & PROT.READ ? 'r' : '-') + (p & PROT.WRITE ? 'w' : '-');
  if (p & PROT.CACHE) s += 'c';
  if (p & PROT.NOEXEC) s += 'n';
  if (p & PROT.MMIO) s += 'm';
  if (p & PROT.PRIV) s += 'p';
  return s;
}
