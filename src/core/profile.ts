/**
 * Profiles: what an IOMMU domain's hardware and driver look like to the core.
 * A profile = supported page sizes (the kernel's `pgsize_bitmap`), input address width,
 * page-table format and the driver's unmap behaviour. See docs/semantics.md and
 * docs/kernel-facts.md for the kernel code each built-in profile describes.
 */
import { AddressError, ffs, fls, formatSize, hex, isPowerOfTwo, parseSize } from './address.js';
import { LedgerFault } from './errors.js';

/**
 * How the driver answers an unmap (docs/semantics.md). A behaviour, once stored in a ledger's
 * `domain-created` event, is never changed: a kernel that behaves differently gets a new one
 * (`refuse-partial`: io-pgtable-arm since v6.13; `iommupt`: the generic page table of AMD and VT-d
 * since v6.19), so `rebuild` gives the same answers forever.
 */
export type Semantics = 'legacy' | 'split' | 'strict' | 'refuse-partial' | 'iommupt';
export const SEMANTICS: readonly Semantics[] = ['legacy', 'split', 'strict', 'refuse-partial', 'iommupt'];

/** One level of a radix page table, from the root down. */
export interface Level {
  /** Label for people: the name the driver's documentation uses. */
  name: string;
  /** log2 of the bytes one entry of this level maps. */
  shift: number;
  /** Entries in one table of this level. */
  entries: number;
  /** Bytes of one table of this level (entries × descriptor size). */
  tableBytes: number;
}

export interface PageTableFormat {
  name: string;
  description: string;
  levels: Level[];
}

export interface Profile {
  name: string;
  description: string;
  /** Where in the kernel this profile's facts come from. */
  kernelRef: string;
  /** Bit n set = pages of 2^n bytes supported. */
  pgsizeBitmap: bigint;
  /** Width of the input (IOVA) address space in bits, 1..64. */
  iovaBits: number;
  semantics: Semantics;
  /**
   * Under `strict`: the errno of an unmap that removes nothing. VFIO type1 succeeds with 0
   * bytes; iommufd fails with ENOENT.
   */
  emptyUnmapErrno?: 'ENOENT';
  format: PageTableFormat;
  /** For a custom profile: the built-in profile it is based on (kept so its descriptor rebuilds the same format). */
  base?: string;
  /**
   * Built-in profiles: the kernel releases whose driver behaves as this profile models
   * (docs/kernel-facts.md § 6c), `since` and `until` inclusive, each absent when not pinned.
   */
  kernels?: KernelRange;
}

/** A range of kernel releases ("6.13"), both ends inclusive; an absent end is open. */
export interface KernelRange {
  since?: string;
  until?: string;
}

function bitmapOf(shifts: number[]): bigint {
  return shifts.reduce((acc, s) => acc | (1n << BigInt(s)), 0n);
}

/** Page sizes of a bitmap, smallest first. */
export function pageSizes(bitmap: bigint): bigint[] {
  const out: bigint[] = [];
  for (let b = 0n; b < 64n; b++) if (bitmap & (1n << b)) out.push(1n << b);
  return out;
}

export function minPageSize(bitmap: bigint): bigint {
  return 1n << BigInt(ffs(bitmap));
}

/**
 * A radix format with `granuleShift`-sized leaves and tables of 2^bitsPerLevel entries of
 * `descBytes`, with as many levels as `iovaBits` needs (the top table holds what is left).
 */
function radixLevels(iovaBits: number, granuleShift: number, bitsPerLevel: number, descBytes: number, names: (i: number, n: number) => string): Level[] {
  const nLevels = Math.max(1, Math.ceil((iovaBits - granuleShift) / bitsPerLevel));
  const levels: Level[] = [];
  for (let i = 0; i < nLevels; i++) {
    const shift = granuleShift + bitsPerLevel * (nLevels - 1 - i);
    const bits = i === 0 ? iovaBits - shift : bitsPerLevel;
    const entries = 2 ** bits;
    levels.push({ name: names(i, nLevels), shift, entries, tableBytes: entries * descBytes });
  }
  return levels;
}

export function lpaeFormat(granuleShift: 12 | 14 | 16, iovaBits: number): PageTableFormat {
  const g = granuleShift === 12 ? '4k' : granuleShift === 14 ? '16k' : '64k';
  // ARM numbers levels so that the leaf level is always 3 (io-pgtable-arm.c ARM_LPAE_START_LVL).
  return {
    name: `lpae-${g}`,
    description: `ARM LPAE / VMSAv8-64 ${g.toUpperCase()} granule, ${iovaBits}-bit input, ${granuleShift - 3} bits per level`,
    levels: radixLevels(iovaBits, granuleShift, granuleShift - 3, 8, (i, n) => `L${4 - n + i}`),
  };
}

export function vtdFormat(iovaBits: 48 | 57): PageTableFormat {
  const names = ['PML5', 'PML4', 'PDPT', 'PD', 'PT'];
  return {
    name: `vtd-${iovaBits === 48 ? 4 : 5}level`,
    description: `Intel VT-d second-stage/first-stage tables, ${iovaBits === 48 ? 4 : 5} levels of 512 entries`,
    levels: radixLevels(iovaBits, 12, 9, 8, (i, n) => names[names.length - n + i] ?? `L${i}`),
  };
}

export function amdV1Format(iovaBits: number): PageTableFormat {
  return {
    name: 'amd-v1',
    description: `AMD IOMMU v1 page table, ${iovaBits}-bit input, levels of 512 entries; sizes between levels are runs of replicated PTEs (next-level 7)`,
    levels: radixLevels(iovaBits, 12, 9, 8, (i, n) => `L${n - i}`),
  };
}

/** ARM short-descriptor (v7s) and OMAP: 4096 × 1M first level, 256 × 4K second level. */
export function shortDescriptorFormat(name: 'arm-v7s' | 'omap'): PageTableFormat {
  return {
    name,
    description:
      name === 'omap'
        ? 'OMAP IOMMU: 4096-entry first level of 1M sections (16M supersections = 16 repeated entries), 256-entry second level of 4K pages (64K large pages = 16 repeated entries)'
        : 'ARM v7 short descriptor: 4096-entry level 1 of 1M sections (16M supersections = 16 repeated entries), 256-entry level 2 of 4K pages (64K large pages = 16 repeated entries)',
    levels: [
      { name: 'L1', shift: 20, entries: 4096, tableBytes: 4096 * 4 },
      { name: 'L2', shift: 12, entries: 256, tableBytes: 256 * 4 },
    ],
  };
}

/** For custom profiles: 512-entry levels above the smallest page, as deep as the width needs. */
export function genericFormat(pgsizeBitmap: bigint, iovaBits: number): PageTableFormat {
  const granuleShift = ffs(pgsizeBitmap);
  return {
    name: 'generic',
    description: `generic radix table: ${formatSize(1n << BigInt(granuleShift))} leaves, 512-entry levels, ${iovaBits}-bit input`,
    levels: radixLevels(Math.max(iovaBits, granuleShift + 1), granuleShift, 9, 8, (i) => `L${i}`),
  };
}

/**
 * How many entries of a level whose entries map 2^entryShift bytes one page of 2^pageShift bytes
 * fills (Run.repeat). A shift, not 2 ** d: V8 keeps the result of ** as a heap number, and a run
 * made with one then holds a boxed number in its repeat field (an object per live run).
 */
export function repeatOf(pageShift: number, entryShift: number): number {
  const d = pageShift - entryShift;
  return d < 31 ? 1 << d : 2 ** d;
}

/** The level at which a page of 2^pageShift bytes is a leaf, and how many entries it repeats. */
export function leafLevelOf(format: PageTableFormat, pageShift: number): { level: number; repeat: number } {
  for (let i = format.levels.length - 1; i >= 0; i--) {
    const lv = format.levels[i]!;
    const upper = format.levels[i - 1];
    if (pageShift >= lv.shift && (upper === undefined || pageShift < upper.shift)) {
      return { level: i, repeat: repeatOf(pageShift, lv.shift) };
    }
  }
  throw new RangeError(`page of 2^${pageShift} bytes is smaller than the format's smallest entry`);
}

function builtin(p: Omit<Profile, 'pgsizeBitmap' | 'format'> & { shifts: number[]; format: PageTableFormat }): Profile {
  const { shifts, ...rest } = p;
  return { ...rest, pgsizeBitmap: bitmapOf(shifts) };
}

/** Every power of two from 4K to 2^51 except 512G (2^39): AMD_IOMMU_PGSIZES = GENMASK_ULL(51, 12) ^ SZ_512G. */
const AMD_V1_SHIFTS = Array.from({ length: 52 - 12 }, (_, i) => 12 + i).filter((s) => s !== 39);

export const BUILTIN_PROFILES: readonly Profile[] = [
  builtin({
    name: 'omap',
    description: 'TI OMAP IOMMU (the 2011 discussion): 4K, 64K, 1M, 16M pages, 32-bit IOVA',
    kernelRef: 'drivers/iommu/omap-iommu.c omap_iommu_map/omap_iommu_unmap, OMAP_IOMMU_PGSIZES',
    shifts: [12, 16, 20, 24],
    iovaBits: 32,
    semantics: 'legacy',
    format: shortDescriptorFormat('omap'),
  }),
  builtin({
    name: 'intel-vtd',
    kernels: { since: '5.15', until: '6.18' },
    description: 'Intel VT-d, 4-level (48-bit) tables: 4K, 2M, 1G pages; unmap removes the whole large page',
    kernelRef: 'drivers/iommu/intel/iommu.c intel_iommu_unmap ("horrid API" comment), domain_super_pgsize_bitmap (domain_update_iommu_superpage before v5.15)',
    shifts: [12, 21, 30],
    iovaBits: 48,
    semantics: 'legacy',
    format: vtdFormat(48),
  }),
  builtin({
    name: 'intel-vtd-5level',
    kernels: { since: '5.15', until: '6.18' },
    description: 'Intel VT-d, 5-level (57-bit) tables: 4K, 2M, 1G pages',
    kernelRef: 'drivers/iommu/intel/iommu.c intel_iommu_unmap; 5-level paging (agaw 57)',
    shifts: [12, 21, 30],
    iovaBits: 57,
    semantics: 'legacy',
    format: vtdFormat(57),
  }),
  builtin({
    name: 'amd-v1',
    kernels: { until: '6.18' },
    description: 'AMD IOMMU v1 page table: every power of two from 4K to 2^51 except 512G, 52-bit IOVA; unmap removes the whole page',
    kernelRef: 'drivers/iommu/amd/amd_iommu_types.h AMD_IOMMU_PGSIZES; drivers/iommu/amd/io_pgtable.c iommu_v1_unmap_pages',
    shifts: AMD_V1_SHIFTS,
    iovaBits: 52,
    semantics: 'legacy',
    format: amdV1Format(52),
  }),
  builtin({
    name: 'arm-lpae-4k',
    kernels: { until: '6.12' },
    description: 'ARM SMMU, LPAE 4K granule: 4K, 2M, 1G pages, 48-bit IOVA; unmap splits blocks',
    kernelRef: 'drivers/iommu/io-pgtable-arm.c arm_lpae_restrict_pgsizes, arm_lpae_split_blk_unmap (removed in v6.13)',
    shifts: [12, 21, 30],
    iovaBits: 48,
    semantics: 'split',
    format: lpaeFormat(12, 48),
  }),
  builtin({
    name: 'arm-lpae-16k',
    kernels: { until: '6.12' },
    description: 'ARM SMMU, LPAE 16K granule: 16K, 32M pages, 48-bit IOVA; unmap splits blocks',
    kernelRef: 'drivers/iommu/io-pgtable-arm.c arm_lpae_restrict_pgsizes (SZ_16K | SZ_32M)',
    shifts: [14, 25],
    iovaBits: 48,
    semantics: 'split',
    format: lpaeFormat(14, 48),
  }),
  builtin({
    name: 'arm-lpae-64k',
    kernels: { until: '6.12' },
    description: 'ARM SMMU, LPAE 64K granule: 64K, 512M pages, 48-bit IOVA; unmap splits blocks',
    kernelRef: 'drivers/iommu/io-pgtable-arm.c arm_lpae_restrict_pgsizes (SZ_64K | SZ_512M)',
    shifts: [16, 29],
    iovaBits: 48,
    semantics: 'split',
    format: lpaeFormat(16, 48),
  }),
  builtin({
    name: 'arm-v7s',
    kernels: { until: '6.12' },
    description: 'ARM short-descriptor (v7s) tables: 4K, 64K, 1M, 16M pages, 32-bit IOVA; unmap splits blocks',
    kernelRef:
      'drivers/iommu/io-pgtable-arm-v7s.c arm_v7s_alloc_pgtable, arm_v7s_split_cont and arm_v7s_split_blk_unmap (removed in v6.13; they remapped the rest in entries of the unmap size, the model greedily)',
    shifts: [12, 16, 20, 24],
    iovaBits: 32,
    semantics: 'split',
    format: shortDescriptorFormat('arm-v7s'),
  }),
  builtin({
    name: 'vfio-type1v2',
    description: 'VFIO type1 v2 container over 4K|2M|1G hardware: unmaps that cut a mapping are refused (EINVAL)',
    kernelRef: 'drivers/vfio/vfio_iommu_type1.c vfio_dma_do_unmap (iommu->v2 checks), vfio_dma_do_map (EEXIST)',
    shifts: [12, 21, 30],
    iovaBits: 48,
    semantics: 'strict',
    format: vtdFormat(48),
  }),
  builtin({
    name: 'iommufd',
    kernels: { since: '6.2' },
    description: 'iommufd IOAS over 4K|2M|1G hardware: unmaps that cut an area are refused; unmapping nothing is ENOENT',
    kernelRef: 'drivers/iommu/iommufd/io_pagetable.c iopt_unmap_iova_range, iopt_map_pages',
    shifts: [12, 21, 30],
    iovaBits: 48,
    semantics: 'strict',
    emptyUnmapErrno: 'ENOENT',
    format: vtdFormat(48),
  }),
];

/** A built-in profile under the behaviour of later kernels: same hardware, another unmap. */
function later(name: string, since: string, semantics: Semantics, description: string, kernelRef: string): Profile {
  const base = BUILTIN_PROFILES.find((p) => p.name === name)!;
  const p: Profile = { ...base, name: `${name}@${since}`, description, kernelRef, semantics, kernels: { since } };
  delete p.emptyUnmapErrno;
  return p;
}

const ARM_REFUSE_REF =
  'drivers/iommu/io-pgtable-arm.c __arm_lpae_unmap: WARN_ONCE "Unmap of a partial large IOPTE is not allowed", returns 0 (33729a5fc0ca "iommu/io-pgtable-arm: Remove split on unmap behavior", v6.13)';
const V7S_REFUSE_REF =
  'drivers/iommu/io-pgtable-arm-v7s.c __arm_v7s_unmap: WARN_ONCE "Unmap of a partial large IOPTE is not allowed", returns 0 (fd50651636fb, v6.13)';
const IOMMUPT_REF = 'drivers/iommu/generic_pt/iommu_pt.h __unmap_range (iommupt)';

/**
 * The built-in profiles as later kernels behave: a new behaviour is added here, never edited into
 * an existing profile, so a ledger's stored profile rebuilds the same forever. Named
 * `<profile>@<first release>`; `resolveProfile('<profile>@<release>')` picks the one of a family
 * that holds for a release.
 */
export const LATER_PROFILES: readonly Profile[] = [
  later(
    'intel-vtd',
    '6.19',
    'iommupt',
    'Intel VT-d on the generic page table: 4K, 2M, 1G pages; an unmap starting inside a large page removes nothing',
    `${IOMMUPT_REF}; drivers/iommu/intel/iommu.c (d373449d8e97, v6.19)`,
  ),
  later(
    'intel-vtd-5level',
    '6.19',
    'iommupt',
    'Intel VT-d 5-level on the generic page table: an unmap starting inside a large page removes nothing',
    `${IOMMUPT_REF}; drivers/iommu/intel/iommu.c (d373449d8e97, v6.19)`,
  ),
  later(
    'amd-v1',
    '6.19',
    'iommupt',
    'AMD IOMMU v1 on the generic page table: an unmap starting inside a large page removes nothing',
    `${IOMMUPT_REF}; drivers/iommu/amd/iommu.c (789a5913b29c, v6.19)`,
  ),
  later(
    'arm-lpae-4k',
    '6.13',
    'refuse-partial',
    'ARM SMMU, LPAE 4K granule since v6.13: an unmap of part of a block is refused (0, nothing removed)',
    ARM_REFUSE_REF,
  ),
  later('arm-lpae-16k', '6.13', 'refuse-partial', 'ARM SMMU, LPAE 16K granule since v6.13: an unmap of part of a block is refused', ARM_REFUSE_REF),
  later('arm-lpae-64k', '6.13', 'refuse-partial', 'ARM SMMU, LPAE 64K granule since v6.13: an unmap of part of a block is refused', ARM_REFUSE_REF),
  later(
    'arm-v7s',
    '6.13',
    'refuse-partial',
    'ARM short-descriptor (v7s) tables since v6.13: an unmap of part of a section or large page is refused',
    V7S_REFUSE_REF,
  ),
];

/** Every built-in profile: the defaults (what each name has always meant) and the later behaviours. */
export const ALL_PROFILES: readonly Profile[] = [...BUILTIN_PROFILES, ...LATER_PROFILES];

/** The family of a built-in profile: its name without the `@release`. */
export function familyOf(name: string): string {
  const at = name.indexOf('@');
  return at < 0 ? name : name.slice(0, at);
}

/** A release as numbers: "6.13" -> [6, 13]; undefined when it is not one. */
export function parseRelease(v: string): number[] | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+.~][\w.+~-]*)?$/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

function cmpRelease(a: number[], b: number[]): number {
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0);
  return 0;
}

/** Whether a release lies in a profile's range (a profile without a range holds for every release). */
export function holdsFor(p: Profile, release: number[]): boolean {
  const k = p.kernels;
  if (!k) return true;
  // "until 6.18" covers every 6.18.y.
  if (k.since && cmpRelease(release, parseRelease(k.since)!) < 0) return false;
  if (k.until && cmpRelease(release.slice(0, 2), parseRelease(k.until)!.slice(0, 2)) > 0) return false;
  return true;
}

/** The range of a profile as people write it: "6.13+", "5.15-6.18", "-6.12", "all". */
export function describeKernels(k: KernelRange | undefined): string {
  if (!k || (!k.since && !k.until)) return 'all';
  if (k.since && k.until) return `${k.since}-${k.until}`;
  return k.since ? `${k.since}+` : `-${k.until}`;
}

/**
 * The built-in profile of a family that holds for a kernel release ("6.13", "v6.19-rc1",
 * "6.1.0-27-amd64"). Throws ProfileError, naming the family's ranges, when the release is not one
 * or no profile of the family holds for it.
 */
export function profileForKernel(family: string, release: string): Profile {
  const v = parseRelease(release);
  if (!v) throw new ProfileError(`kernel ${JSON.stringify(release)} is not a release such as 6.13 or 6.1.0-27-amd64`);
  const members = ALL_PROFILES.filter((p) => familyOf(p.name) === family);
  if (members.length === 0)
    throw new ProfileError(`unknown profile ${JSON.stringify(family)}; built-in profiles: ${BUILTIN_PROFILES.map((b) => b.name).join(', ')}`);
  const hit = members.find((p) => holdsFor(p, v));
  if (!hit) {
    const ranges = members.map((p) => `${p.name} models ${describeKernels(p.kernels)}`).join('; ');
    throw new ProfileError(`no built-in behaviour of ${family} models kernel ${release} (${ranges})`);
  }
  return hit;
}

export function findBuiltinProfile(name: string): Profile | undefined {
  return ALL_PROFILES.find((p) => p.name === name);
}

export class ProfileError extends LedgerFault {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'ProfileError';
  }
}

/** A custom profile as users write it (validated with zod in profile-spec.ts). */
export interface CustomProfileInput {
  name?: string;
  /** Page sizes as a list (`["4K","2M"]`) ... */
  pgsizes?: Array<string | number | bigint>;
  /** ... or as the kernel's bitmap (`"0x40201000"`). */
  pgsizeBitmap?: string | number | bigint;
  iovaBits?: number;
  semantics?: Semantics;
  /** Base a custom profile on a built-in one (its format, width and semantics). */
  base?: string;
  emptyUnmapErrno?: 'ENOENT';
}

/**
 * Builds a profile from a description whose shape is already checked, and checks what a shape
 * cannot: page sizes, widths, the base. Throws ProfileError naming the field.
 */
export function buildProfile(spec: CustomProfileInput): Profile {
  let base: Profile | undefined;
  if (spec.base !== undefined) {
    base = findBuiltinProfile(spec.base);
    if (!base) throw new ProfileError(`base: unknown profile ${JSON.stringify(spec.base)} (see 'iommu-ledger profiles')`);
  }
  if (spec.pgsizes !== undefined && spec.pgsizeBitmap !== undefined) {
    throw new ProfileError('give either pgsizes or pgsizeBitmap, not both');
  }
  let bitmap: bigint;
  try {
    if (spec.pgsizes !== undefined) {
      bitmap = 0n;
      spec.pgsizes.forEach((s, i) => {
        const v = parseSize(s, `pgsizes[${i}]`);
        if (!isPowerOfTwo(v)) throw new ProfileError(`pgsizes[${i}]: ${hex(v)} is not a power of two`);
        if (bitmap & v) throw new ProfileError(`pgsizes[${i}]: ${formatSize(v)} is listed twice`);
        bitmap |= v;
      });
    } else if (spec.pgsizeBitmap !== undefined) {
      bitmap = parseSize(spec.pgsizeBitmap, 'pgsizeBitmap');
    } else if (base) {
      bitmap = base.pgsizeBitmap;
    } else {
      throw new ProfileError('pgsizes: a custom profile needs its page sizes (pgsizes or pgsizeBitmap)');
    }
  } catch (e) {
    if (e instanceof AddressError) throw new ProfileError(e.message);
    throw e;
  }
  if (bitmap === 0n) throw new ProfileError('pgsizes: the page-size bitmap is empty: at least one page size is needed');
  const iovaBits = spec.iovaBits ?? base?.iovaBits ?? 48;
  if (iovaBits < 1 || iovaBits > 64) throw new ProfileError(`iovaBits: ${iovaBits} is outside 1..64 (addresses are 64-bit)`);
  if (minPageSize(bitmap) >= 1n << BigInt(iovaBits)) {
    throw new ProfileError(`pgsizes: the smallest page (${formatSize(minPageSize(bitmap))}) does not fit in a ${iovaBits}-bit address space`);
  }
  const semantics = spec.semantics ?? base?.semantics ?? 'legacy';
  let format = base && base.iovaBits === iovaBits ? base.format : genericFormat(bitmap, iovaBits);
  // The base's format only fits when every page size lands on one of its levels.
  try {
    for (const s of pageSizes(bitmap)) leafLevelOf(format, fls(s));
  } catch {
    format = genericFormat(bitmap, iovaBits);
  }
  const profile: Profile = {
    name: spec.name ?? 'custom',
    description: `custom: ${pageSizes(bitmap).map(formatSize).join('|')}, ${iovaBits}-bit, ${semantics}`,
    kernelRef: base ? `based on ${base.name}: ${base.kernelRef}` : 'user-defined',
    pgsizeBitmap: bitmap,
    iovaBits,
    semantics,
    format,
  };
  const errno = spec.emptyUnmapErrno ?? (base?.semantics === semantics ? base?.emptyUnmapErrno : undefined);
  if (errno) profile.emptyUnmapErrno = errno;
  if (base) profile.base = base.name;
  return profile;
}

/** A built-in profile, optionally with another unmap behaviour (for what-if replays). */
export function resolveProfile(name: string, semantics?: Semantics): Profile {
  // `family@release` names the behaviour of that family for that kernel (arm-lpae-4k@6.1 is
  // arm-lpae-4k, arm-lpae-4k@6.15 is arm-lpae-4k@6.13).
  const at = name.indexOf('@');
  const p = findBuiltinProfile(name) ?? (at > 0 && findBuiltinProfile(name.slice(0, at)) ? profileForKernel(name.slice(0, at), name.slice(at + 1)) : undefined);
  if (!p) {
    throw new ProfileError(`unknown profile ${JSON.stringify(name)}; built-in profiles: ${BUILTIN_PROFILES.map((b) => b.name).join(', ')}`);
  }
  return semantics && semantics !== p.semantics ? { ...p, semantics } : p;
}

/** A JSON-safe description of a profile (for storage in events). */
export interface ProfileDescriptor {
  name: string;
  pgsizeBitmap: string;
  iovaBits: number;
  semantics: Semantics;
  base?: string;
  emptyUnmapErrno?: 'ENOENT';
}

export function describeProfile(p: Profile): ProfileDescriptor {
  const d: ProfileDescriptor = { name: p.name, pgsizeBitmap: hex(p.pgsizeBitmap), iovaBits: p.iovaBits, semantics: p.semantics };
  if (p.base) d.base = p.base;
  if (p.emptyUnmapErrno) d.emptyUnmapErrno = p.emptyUnmapErrno;
  return d;
}

/** Rebuilds a profile from its descriptor: a built-in one when it matches exactly, else custom. */
export function profileFromDescriptor(d: ProfileDescriptor): Profile {
  const b = findBuiltinProfile(d.name);
  if (b && hex(b.pgsizeBitmap) === d.pgsizeBitmap && b.iovaBits === d.iovaBits) {
    return b.semantics === d.semantics ? b : { ...b, semantics: d.semantics, emptyUnmapErrno: d.emptyUnmapErrno };
  }
  const spec: CustomProfileInput = { name: d.name, pgsizeBitmap: d.pgsizeBitmap, iovaBits: d.iovaBits, semantics: d.semantics };
  if (d.base) spec.base = d.base;
  if (d.emptyUnmapErrno) spec.emptyUnmapErrno = d.emptyUnmapErrno;
  return buildProfile(spec);
}
