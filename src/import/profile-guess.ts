/**
 * Which built-in hardware profile a Linux IOMMU trace was recorded on, judged from evidence in
 * the trace. The kernel facts behind every rule, with the file, function and version each was
 * read in, are in docs/profile-facts.md; the rules in short:
 *
 * 1. **driver**: a name that really identifies the IOMMU driver. `io_page_fault` prints
 *    `dev_driver_string()` of the device the driver passed to `report_iommu_fault()`; only some
 *    drivers pass their own device (`mtk-iommu`, `omap-iommu`, `arm-smmu` since 2026,
 *    `rk_iommu`, `ipmmu-vmsa`, `sun50i-iommu`, `qcom-iommu-ctx`, `mtk-iommu-v1`), so only those
 *    names count. Kernel-log lines (`DMAR: `, `AMD-Vi: `, `DRIVER DEVICE: ` of those drivers)
 *    and debug-line prefixes name drivers too.
 * 2. **page-size**: an unmap with `unmapped_size > size` removed a whole large page under legacy
 *    semantics, so its size must be one the profile can remove (a page size, and for VT-d a
 *    table-level size); split-on-unmap profiles never remove more than asked. iommu.c
 *    `mapping:` lines name the page size of every chunk.
 * 3. **reporter**: a fault record naming a PCI device and its own driver (`nvme`): of the drivers
 *    that call `report_iommu_fault()`, only AMD-Vi passes the faulting PCI device.
 * 4. **alignment**: the core refuses a map or unmap not aligned to the smallest page, so every
 *    traced one is aligned to it; 4K-aligned commands rule out 16K and 64K granules.
 * 5. **width**: IOVAs beyond a profile's input width; device-tree device names (SoCs, not x86).
 * 6. **hole**: `unmapped_size < size` (the driver stopped at an unmapped page); VT-d never does.
 *
 * A stronger tier always outweighs any number of weaker ones; within a tier each distinct fact
 * counts once. Evidence is kept as counters and small sets (constant memory, independent of the
 * order records arrive in), so the accumulator can see every record of a large import, and
 * {@link sampleRanges} / {@link guessProfileFromFile} judge a file on windows spread over its
 * whole extent. Only built-in profiles are chosen; without evidence, intel-vtd is assumed.
 */
import { open } from 'node:fs/promises';
import { formatSize, hex, isPowerOfTwo } from '../core/address.js';
import { BUILTIN_PROFILES, minPageSize, pageSizes, type Profile } from '../core/profile.js';
import { MAX_LINE_LENGTH, parseTraceLine, type TraceRecord } from './parse.js';

// ---------------------------------------------------------------------------------------------
// Kernel facts as data

/** Evidence tiers, strongest first. */
export const TIERS = ['driver', 'page-size', 'reporter', 'alignment', 'width', 'hole'] as const;
export type Tier = (typeof TIERS)[number];

/** One tier outweighs any sum of weaker ones (each tier's sum is clamped to ±99). */
const TIER_WEIGHT: Record<Tier, number> = {
  driver: 1e10,
  'page-size': 1e8,
  reporter: 1e6,
  alignment: 1e4,
  width: 1e2,
  hole: 1,
};

/** An IOMMU driver name that identifies the hardware, and the built-in profiles that fit it. */
export interface IommuDriver {
  /** As printed: `dev_driver_string()` (fault records, `DRIVER DEVICE: ` log lines) or a pr_fmt tag. */
  name: string;
  hardware: string;
  /** Built-in profiles that fit, the most likely first. */
  profiles: string[];
  /** What the chosen profile does not model, when it is only the closest one. */
  caveat?: string;
  /** True when the driver passes its own device to report_iommu_fault() (so fault records name it). */
  namesItselfInFaults: boolean;
}

/**
 * Driver names that identify an IOMMU (the facts file cites where each was read). Names a
 * fault record can carry are those with `namesItselfInFaults`; the others appear in the kernel
 * log only.
 */
export const IOMMU_DRIVERS: readonly IommuDriver[] = [
  { name: 'omap-iommu', hardware: 'TI OMAP IOMMU', profiles: ['omap'], namesItselfInFaults: true },
  {
    name: 'mtk-iommu',
    hardware: 'MediaTek M4U: ARM v7s tables with MediaTek extensions, 4K|64K|1M|16M pages',
    profiles: ['arm-v7s'],
    caveat: "SoCs with 34-bit IOVAs (IOVA_34_EN) go beyond the profile's 32 bits",
    namesItselfInFaults: true,
  },
  {
    name: 'mtk-iommu-v1',
    hardware: 'MediaTek M4U gen 1: one flat table of 4K entries, 32-bit IOVA',
    profiles: ['arm-v7s'],
    caveat: 'its own 4K-only table that unmaps exactly what is asked; arm-v7s is the closest built-in profile',
    namesItselfInFaults: true,
  },
  {
    name: 'arm-smmu',
    hardware: 'ARM SMMU v1/v2: io-pgtable LPAE (4K, 16K or 64K granule) or v7s',
    profiles: ['arm-lpae-4k', 'arm-lpae-16k', 'arm-lpae-64k', 'arm-v7s'],
    namesItselfInFaults: true,
  },
  {
    name: 'arm-smmu-v3',
    hardware: 'ARM SMMUv3: io-pgtable LPAE',
    profiles: ['arm-lpae-4k', 'arm-lpae-16k', 'arm-lpae-64k'],
    namesItselfInFaults: false,
  },
  {
    name: 'qcom-iommu-ctx',
    hardware: 'Qualcomm IOMMU context bank: 32-bit ARM LPAE with a 4K granule (v7s on 32-bit kernels)',
    profiles: ['arm-lpae-4k', 'arm-v7s'],
    namesItselfInFaults: true,
  },
  {
    name: 'ipmmu-vmsa',
    hardware: 'Renesas IPMMU-VMSA: 32-bit ARM LPAE, 4K|2M|1G pages',
    profiles: ['arm-lpae-4k'],
    namesItselfInFaults: true,
  },
  {
    name: 'rk_iommu',
    hardware: 'Rockchip IOMMU: two-level table of 4K entries, 32-bit IOVA',
    profiles: ['arm-v7s'],
    caveat: 'its own 4K-entry table that unmaps exactly what is asked; arm-v7s is the closest built-in profile',
    namesItselfInFaults: true,
  },
  {
    name: 'sun50i-iommu',
    hardware: 'Allwinner H6 IOMMU: two-level table of 4K pages, 32-bit IOVA',
    profiles: ['arm-v7s'],
    caveat: 'its own 4K-only table; arm-v7s is the closest built-in profile',
    namesItselfInFaults: true,
  },
  {
    name: 'exynos-sysmmu',
    hardware: 'Samsung Exynos SysMMU: 4K|64K|1M pages, 32-bit IOVA',
    profiles: ['arm-v7s', 'omap'],
    caveat: 'it refuses (0 bytes) an unmap smaller than a large page, which no built-in profile models',
    namesItselfInFaults: false,
  },
  {
    name: 'apple-dart',
    hardware: 'Apple DART: its own table, 16K pages on M1',
    profiles: ['arm-lpae-16k'],
    caveat: 'its own table format; arm-lpae-16k is the closest built-in profile',
    namesItselfInFaults: false,
  },
  { name: 'DMAR', hardware: 'Intel VT-d', profiles: ['intel-vtd', 'intel-vtd-5level'], namesItselfInFaults: false },
  { name: 'AMD-Vi', hardware: 'AMD IOMMU (v1 page table)', profiles: ['amd-v1'], namesItselfInFaults: false },
];

const DRIVER_BY_NAME = new Map(IOMMU_DRIVERS.map((d) => [d.name.toLowerCase(), d]));

/** When evidence leaves several profiles equal: VT-d first, as before (the most common x86 IOMMU). */
const DEFAULT_ORDER = ['intel-vtd', 'intel-vtd-5level', 'amd-v1', 'arm-lpae-4k', 'arm-v7s', 'omap', 'arm-lpae-16k', 'arm-lpae-64k'];

/** Profiles chosen from hardware evidence: not the strict ones (they model VFIO/iommufd ioctls). */
const INFERABLE: readonly Profile[] = BUILTIN_PROFILES.filter((p) => p.semantics !== 'strict');
const ORDER: readonly string[] = [
  ...DEFAULT_ORDER.filter((n) => INFERABLE.some((p) => p.name === n)),
  ...INFERABLE.map((p) => p.name).filter((n) => !DEFAULT_ORDER.includes(n)),
];

const isVtd = (p: Profile) => p.format.name.startsWith('vtd');
const isX86 = (p: Profile) => isVtd(p) || p.format.name === 'amd-v1';

/** Sizes one unmap call can remove in one piece: pages; for VT-d also any table level (holes). */
function removableSizes(p: Profile): Set<bigint> {
  const out = new Set(pageSizes(p.pgsizeBitmap));
  if (isVtd(p)) for (const lv of p.format.levels) out.add(1n << BigInt(lv.shift));
  return out;
}
const REMOVABLE = new Map(INFERABLE.map((p) => [p.name, removableSizes(p)]));

// ---------------------------------------------------------------------------------------------
// Results

export interface Evidence {
  tier: Tier;
  /** What was seen, for people. */
  why: string;
  /** How many records (or lines) showed it. */
  count: number;
  /** Profiles this evidence points to. */
  supports: string[];
  /** Profiles it rules out, each with the reason. */
  contradicts: Array<{ profile: string; reason: string }>;
}

export type Confidence = 'high' | 'medium' | 'low' | 'assumed';

export interface ProfileGuess {
  /** A built-in profile name. */
  name: string;
  /** One sentence (or a few) saying why, for the import report. */
  why: string;
  /** high: a driver name or page sizes decided; medium: weaker evidence; low: a tie broken by default; assumed: no evidence. */
  confidence: Confidence;
  /** Every other built-in profile that some evidence contradicts, with the reasons, strongest first. */
  ruledOut: Array<{ profile: string; reason: string }>;
  /** Weighted score of each inferable profile (higher fits better; see TIER_WEIGHT). */
  scores: Record<string, number>;
  /** Evidence found, strongest tier first. */
  evidence: Evidence[];
  /** Evidence against the chosen profile that stronger evidence overruled. */
  conflicts: string[];
  /** Records and log lines seen. */
  seen: { records: number; logLines: number };
  /** The kernel release a `Linux version` log line names (the first one), if any. */
  kernel?: string;
}

/** The release in the kernel's banner, `Linux version 6.1.0-27-amd64 (…)`, printed first in every boot log. */
export function kernelOfLogLine(line: string): string | undefined {
  return /\bLinux version (\d+\.\d+[\w.+~-]*)/.exec(line)?.[1];
}

// ---------------------------------------------------------------------------------------------
// The accumulator

/** A count and the smallest example seen (the smallest, so that the order of records does not matter). */
interface Tally {
  count: number;
  example: string;
}

function tally(map: Map<string, Tally>, key: string, example: string, cap = 64): void {
  const t = map.get(key);
  if (t) {
    t.count++;
    if (example < t.example) t.example = example;
  } else if (map.size < cap) {
    map.set(key, { count: 1, example });
  }
}

function bump(t: Tally | undefined, example: string): Tally {
  if (!t) return { count: 1, example };
  t.count++;
  if (example < t.example) t.example = example;
  return t;
}

/** Device-tree platform device names: `%llx.%pOFn` or `%llx.%x.%pOFn` (drivers/of/platform.c of_device_make_bus_id). */
const DT_NAME_RE = /^[0-9a-f]{4,16}\.(?:[0-9a-f]+\.)?[A-Za-z][\w,+-]*(?::|$)/;
/** PCI device names: `DDDD:BB:DD.F` (pci_setup_device, `%04x:%02x:%02x.%d`). */
const PCI_NAME_RE = /^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** `DMAR: ` and `DMAR-IR: ` (pr_fmt of intel/*.c), `dmar: ` in old kernels. */
const LOG_DMAR_RE = /(?:^|[\s\]])(?:DMAR(?:-IR)?|dmar): /;
/** `AMD-Vi: ` (pr_fmt of amd/*.c) ... */
const LOG_AMD_RE = /(?:^|[\s\]])AMD-Vi: /;
/** ... except the IOMMUv2 module's banner, which x86 machines without an AMD IOMMU print too. */
const LOG_AMD_V2_RE = /IOMMUv2/;
/** dev_printk `DRIVER DEVICE: message` of a driver that names an IOMMU. */
const LOG_DEVICE_RE = new RegExp(
  `(?:^|[\\s\\]])(${IOMMU_DRIVERS.filter((d) => /^[a-z]/.test(d.name))
    .map((d) => d.name.replace(/[-]/g, '\\-'))
    .sort((a, b) => b.length - a.length)
    .join('|')}) (\\S+): `,
);

/** Which IOMMU driver a kernel-log line names, if any (`DMAR`, `AMD-Vi`, or a driver name). */
export function driverOfLogLine(line: string): { driver: string; device?: string } | undefined {
  if (line.length > MAX_LINE_LENGTH) return undefined;
  if (LOG_DMAR_RE.test(line)) return { driver: 'DMAR' };
  if (LOG_AMD_RE.test(line) && !LOG_AMD_V2_RE.test(line)) return { driver: 'AMD-Vi' };
  const m = LOG_DEVICE_RE.exec(line);
  if (m) return { driver: m[1]!, device: m[2]! };
  return undefined;
}

/**
 * Collects evidence from trace records (and kernel-log lines) one at a time, in any order, in
 * constant memory; {@link result} gives the guess at any time.
 */
export class ProfileEvidence {
  /** The release of the first `Linux version` line seen. */
  kernel: string | undefined = undefined;
  private records = 0;
  private logLines = 0;
  /** Identified drivers: key `source\0driver` (source: fault, log, prefix). */
  private drivers = new Map<string, Tally>();
  /** Over-unmaps whose unmapped_size is a power of two: that size, counted. */
  private overUnmapPages = new Map<bigint, Tally>();
  private overUnmapOther: Tally | undefined;
  /** iommu.c `mapping:` page sizes: with ` count` (v5.15+) and without. */
  private mappingModern = new Map<bigint, Tally>();
  private mappingOld = new Map<bigint, Tally>();
  private pciMasterFaults: Tally | undefined;
  private dtMasterFaults: Tally | undefined;
  /** Smallest alignment of iova|paddr|size over maps and unmaps, and an example. */
  private minAlign: bigint | undefined;
  private minAlignExample = '';
  /** Highest IOVA end (exclusive) seen. */
  private maxEnd = 0n;
  private maxEndExample = '';
  private dtNames: Tally | undefined;
  private holes: Tally | undefined;

  /** Feeds one parsed record. */
  add(r: TraceRecord): void {
    this.records++;
    switch (r.event) {
      case 'map':
      case 'debug_map':
        this.align(r.iova, r.paddr, r.size);
        this.extent(r.iova, r.size);
        break;
      case 'debug_mapping':
        this.align(r.iova, r.paddr, r.pgsize);
        if (r.pgsize !== undefined && r.pgsize > 0n) {
          const map = r.count !== undefined ? this.mappingModern : this.mappingOld;
          if (map.size < 64 || map.has(r.pgsize)) map.set(r.pgsize, bump(map.get(r.pgsize), hex(r.iova ?? 0n)));
        }
        if (r.pgsize !== undefined) this.extent(r.iova, r.pgsize * (r.count ?? 1n));
        break;
      case 'unmap':
        this.align(r.iova, undefined, r.size);
        this.extent(r.iova, r.size);
        if (r.size !== undefined && r.unmappedSize !== undefined) this.unmapOutcome(r.iova ?? 0n, r.size, r.unmappedSize);
        break;
      case 'debug_unmap':
        this.align(r.iova, undefined, r.size);
        this.extent(r.iova, r.size);
        break;
      case 'io_page_fault':
        // Not for the width: a device can fault at any address it can emit, mapped or not.
        this.fault(r);
        break;
      default:
        break;
    }
    const name = r.device ?? r.dev;
    if (name !== undefined && DT_NAME_RE.test(name)) this.dtNames = bump(this.dtNames, name);
    if (r.prefix !== undefined) {
      const first = r.prefix.split(' ', 1)[0]!;
      const d = DRIVER_BY_NAME.get(first.toLowerCase());
      if (d && /^[a-z]/.test(d.name)) tally(this.drivers, `prefix\0${d.name}`, r.prefix);
    }
  }

  /** Feeds one kernel-log line that is not a trace record (dmesg text the parser skips). */
  addLogLine(line: string): void {
    if (this.kernel === undefined) this.kernel = kernelOfLogLine(line);
    const hit = driverOfLogLine(line);
    if (!hit) return;
    this.logLines++;
    tally(this.drivers, `log\0${hit.driver}`, line.length > 160 ? line.slice(0, 160) : line);
  }

  /**
   * Feeds the outcome of one iommu_unmap() call known from elsewhere (for instance a `unmap this:`
   * debug line and the `unmapped:` lines after it, which only their order pairs).
   */
  addUnmapOutcome(iova: bigint, size: bigint, unmapped: bigint): void {
    this.unmapOutcome(iova, size, unmapped);
  }

  private unmapOutcome(iova: bigint, size: bigint, unmapped: bigint): void {
    const example = `${hex(iova)} size ${formatSize(size)} unmapped ${formatSize(unmapped)}`;
    if (unmapped > size) {
      if (isPowerOfTwo(unmapped)) {
        if (this.overUnmapPages.size < 64 || this.overUnmapPages.has(unmapped)) {
          this.overUnmapPages.set(unmapped, bump(this.overUnmapPages.get(unmapped), example));
        }
      } else {
        this.overUnmapOther = bump(this.overUnmapOther, example);
      }
    } else if (unmapped < size) {
      this.holes = bump(this.holes, example);
    }
  }

  private fault(r: TraceRecord): void {
    const driver = r.driver ?? '';
    const device = r.device ?? '';
    const d = DRIVER_BY_NAME.get(driver.toLowerCase());
    if (d) {
      tally(this.drivers, `fault\0${d.name}`, `${driver} ${device}`.trim());
      return;
    }
    // A driver that is not an IOMMU's: the device passed was the faulting master.
    if (PCI_NAME_RE.test(device)) this.pciMasterFaults = bump(this.pciMasterFaults, `${driver} ${device}`);
    else if (DT_NAME_RE.test(device)) this.dtMasterFaults = bump(this.dtMasterFaults, `${driver} ${device}`);
  }

  private align(iova: bigint | undefined, paddr: bigint | undefined, size: bigint | undefined): void {
    const v = (iova ?? 0n) | (paddr ?? 0n) | (size ?? 0n);
    if (v === 0n) return;
    const a = v & -v;
    if (this.minAlign === undefined || a < this.minAlign || (a === this.minAlign && hex(iova ?? 0n) < this.minAlignExample)) {
      this.minAlign = a;
      this.minAlignExample = hex(iova ?? 0n);
    }
  }

  private extent(iova: bigint | undefined, size: bigint | undefined): void {
    if (iova === undefined) return;
    const end = iova + (size !== undefined && size > 0n ? size : 1n);
    if (end > this.maxEnd || (end === this.maxEnd && hex(iova) < this.maxEndExample)) {
      this.maxEnd = end;
      this.maxEndExample = hex(iova);
    }
  }

  /** The evidence found so far, strongest tier first (deterministic for the same records in any order). */
  evidence(): Evidence[] {
    const out: Evidence[] = [];
    // 1. driver names
    const byDriver = new Map<string, { sources: Set<string>; count: number; example: string }>();
    for (const [key, t] of this.drivers) {
      const [source, name] = key.split('\0') as [string, string];
      const e = byDriver.get(name) ?? { sources: new Set<string>(), count: 0, example: t.example };
      e.sources.add(source);
      e.count += t.count;
      if (t.example < e.example) e.example = t.example;
      byDriver.set(name, e);
    }
    for (const name of [...byDriver.keys()].sort()) {
      const e = byDriver.get(name)!;
      const d = DRIVER_BY_NAME.get(name.toLowerCase())!;
      const tag = name === 'DMAR' || name === 'AMD-Vi';
      const where = [
        e.sources.has('fault') ? `fault records name the ${name} driver` : '',
        e.sources.has('log') ? (tag ? `the kernel log has ${name}: lines` : `the kernel log has lines of the ${name} driver`) : '',
        e.sources.has('prefix') ? `debug lines are printed by the ${name} driver` : '',
      ].filter(Boolean);
      out.push(
        item('driver', `${listAnd(where)} (${d.hardware}${d.caveat ? `; ${d.caveat}` : ''})`, e.count, (p) =>
          d.profiles.includes(p.name) ? true : `the trace names the ${name} driver (${d.hardware}), which ${p.name} does not describe`,
        ),
      );
    }
    // 2. page sizes
    if (this.overUnmapPages.size > 0) {
      const sizes = [...this.overUnmapPages.keys()].sort(cmpBig);
      const count = [...this.overUnmapPages.values()].reduce((n, t) => n + t.count, 0);
      out.push(
        item(
          'page-size',
          `${plural(count, 'unmap')} removed ${count === 1 && sizes.length === 1 ? `a whole ${sizeList(sizes)} page` : `whole ${sizeList(sizes)} pages`}, more than asked (unmapped_size > size)`,
          count,
          (p) => {
            if (p.semantics !== 'legacy')
              return `${p.name} never removes more than asked (it split a large page before v6.13 and refuses since), but the trace has unmapped_size > size`;
            const can = REMOVABLE.get(p.name)!;
            const bad = sizes.filter((s) => !can.has(s));
            if (bad.length === 0) return true;
            return `${sizeList(bad)} ${bad.length > 1 ? 'are not sizes' : 'is not a size'} ${p.name} can remove in one piece (pages ${bitmapList(p)}${isVtd(p) ? ', or a table level' : ''})`;
          },
        ),
      );
    }
    if (this.overUnmapOther) {
      const t = this.overUnmapOther;
      out.push(
        item('page-size', `${plural(t.count, 'unmap')} removed more than asked, in amounts that are not one page (e.g. ${t.example})`, t.count, (p) =>
          p.semantics === 'legacy' ? true : `${p.name} never removes more than asked, but the trace has unmapped_size > size`,
        ),
      );
    }
    for (const [map, modern] of [
      [this.mappingModern, true],
      [this.mappingOld, false],
    ] as const) {
      if (map.size === 0) continue;
      const sizes = [...map.keys()].sort(cmpBig);
      const count = [...map.values()].reduce((n, t) => n + t.count, 0);
      out.push(
        item('page-size', `iommu.c 'mapping:' lines map pages of ${sizeList(sizes)}${modern ? '' : ' (the pre-v5.15 form, without a count)'}`, count, (p) => {
          // Before v5.15 VT-d's bitmap was every power of two from 4K (the driver split pages itself).
          if (!modern && isVtd(p)) return sizes.every((s) => s >= 4096n) ? true : `pages below 4K are not ${p.name}'s`;
          const bad = sizes.filter((s) => (p.pgsizeBitmap & s) === 0n);
          if (bad.length === 0) return true;
          return `${sizeList(bad)} ${bad.length > 1 ? 'are not page sizes' : 'is not a page size'} of ${p.name} (${bitmapList(p)})`;
        }),
      );
    }
    // 3. who reported faults
    if (this.pciMasterFaults) {
      const t = this.pciMasterFaults;
      out.push(
        item(
          'reporter',
          `${plural(t.count, 'fault record')} name${t.count === 1 ? 's' : ''} a PCI device with its own driver (${t.example}); of the drivers that call report_iommu_fault(), only AMD-Vi passes the faulting PCI device`,
          t.count,
          (p) =>
            p.name === 'amd-v1'
              ? true
              : isVtd(p)
                ? 'VT-d never calls report_iommu_fault(), so a VT-d trace has no io_page_fault records'
                : `the drivers ${p.name} describes report faults for their own device, not a PCI master`,
        ),
      );
    }
    if (this.dtMasterFaults) {
      const t = this.dtMasterFaults;
      out.push(
        item(
          'reporter',
          `${plural(t.count, 'fault record')} name${t.count === 1 ? 's' : ''} a platform device with its own driver (${t.example}); of the drivers that call report_iommu_fault(), only Exynos SysMMU passes the faulting master`,
          t.count,
          (p) => (p.name === 'arm-v7s' || p.name === 'omap' ? true : `Exynos SysMMU (4K|64K|1M pages, 32-bit) is not what ${p.name} describes`),
        ),
      );
    }
    // 4. alignment
    if (this.minAlign !== undefined) {
      const a = this.minAlign;
      out.push(
        item(
          'alignment',
          `maps and unmaps are aligned to ${formatSize(a)} at least (e.g. iova ${this.minAlignExample}), and the core refuses any below the smallest page`,
          1,
          (p) =>
            minPageSize(p.pgsizeBitmap) <= a
              ? undefined
              : `${formatSize(a)}-aligned maps or unmaps (e.g. iova ${this.minAlignExample}) are below ${p.name}'s smallest page, ${formatSize(minPageSize(p.pgsizeBitmap))}`,
        ),
      );
    }
    // 5. width and device names
    if (this.maxEnd > 0n) {
      const bits = this.maxEnd <= 1n ? 1 : (this.maxEnd - 1n).toString(2).length;
      out.push(
        item('width', `IOVAs reach ${hex(this.maxEnd - 1n)} (${bits} bits, e.g. at iova ${this.maxEndExample})`, 1, (p) =>
          bits <= p.iovaBits ? undefined : `IOVAs reach ${hex(this.maxEnd - 1n)} (${bits} bits), beyond ${p.name}'s ${p.iovaBits}-bit input`,
        ),
      );
    }
    if (this.dtNames) {
      const t = this.dtNames;
      out.push(
        item(
          'width',
          `${plural(t.count, 'record')} name${t.count === 1 ? 's' : ''} device-tree platform devices (e.g. ${t.example}), as SoCs have and x86 machines do not`,
          t.count,
          (p) => (isX86(p) ? `device-tree device names (e.g. ${t.example}) are an SoC's, not an x86 machine's` : undefined),
        ),
      );
    }
    // 6. holes
    if (this.holes) {
      const t = this.holes;
      out.push(
        item('hole', `${plural(t.count, 'unmap')} stopped at an unmapped page (unmapped_size < size, e.g. ${t.example})`, t.count, (p) =>
          isVtd(p)
            ? `VT-d's unmap never stops short (it rounds an unmapped range up to the table level where its walk stopped), but ${plural(t.count, 'unmap')} did`
            : true,
        ),
      );
    }
    return out;
  }

  /** The guess from everything fed so far. */
  result(): ProfileGuess {
    const evidence = this.evidence();
    const seen = { records: this.records, logLines: this.logLines };
    const kernel = this.kernel !== undefined ? { kernel: this.kernel } : {};
    const tierScore = new Map<string, Record<Tier, number>>();
    for (const p of INFERABLE) tierScore.set(p.name, { driver: 0, 'page-size': 0, reporter: 0, alignment: 0, width: 0, hole: 0 });
    for (const e of evidence) {
      for (const s of e.supports) tierScore.get(s)![e.tier]++;
      for (const c of e.contradicts) tierScore.get(c.profile)![e.tier]--;
    }
    const scores: Record<string, number> = {};
    for (const p of INFERABLE) {
      const t = tierScore.get(p.name)!;
      scores[p.name] = TIERS.reduce((n, tier) => n + TIER_WEIGHT[tier] * Math.max(-99, Math.min(99, t[tier])), 0);
    }
    // Ties: the families of the named drivers first (most likely member first), then the default order.
    const preferred: string[] = [];
    for (const e of evidence) {
      if (e.tier !== 'driver') continue;
      for (const s of e.supports) if (!preferred.includes(s)) preferred.push(s);
    }
    const order = [...preferred, ...ORDER.filter((n) => !preferred.includes(n))];
    const ranked = [...order].sort((a, b) => scores[b]! - scores[a]! || order.indexOf(a) - order.indexOf(b));
    const name = ranked[0]!;
    const runnerUp = ranked[1];
    const deciding = runnerUp === undefined ? undefined : TIERS.find((t) => tierScore.get(name)![t] !== tierScore.get(runnerUp)![t]);
    const equals = ranked.filter((n) => scores[n] === scores[name]);

    const ruledOut: ProfileGuess['ruledOut'] = [];
    for (const p of BUILTIN_PROFILES) {
      if (p.name === name) continue;
      if (p.semantics === 'strict') {
        ruledOut.push({
          profile: p.name,
          reason: `never inferred: ${p.name} models the ${p.emptyUnmapErrno ? 'iommufd' : 'VFIO type1'} ioctl contract, not the hardware whose map/unmap the trace events show (choose it with --profile)`,
        });
        continue;
      }
      const reasons = evidence.flatMap((e) => e.contradicts.filter((c) => c.profile === p.name).map((c) => c.reason));
      if (reasons.length) ruledOut.push({ profile: p.name, reason: reasons.join('; ') });
    }
    const conflicts = evidence.flatMap((e) => e.contradicts.filter((c) => c.profile === name).map((c) => `${c.reason} (${e.tier} evidence, overruled)`));

    if (evidence.length === 0) {
      return {
        name,
        why: `no evidence in the trace (no IOMMU driver named, no unmap that removed more or less than asked, no page size, no address to judge); ${name}, the most common x86 IOMMU, is assumed (pass --profile to choose)`,
        confidence: 'assumed',
        ruledOut,
        scores,
        evidence,
        conflicts,
        seen,
        ...kernel,
      };
    }
    const supporting = evidence.filter((e) => e.supports.includes(name));
    const chosen = INFERABLE.find((p) => p.name === name)!;
    let confidence: Confidence;
    if (deciding === 'driver' || deciding === 'page-size') confidence = 'high';
    else if (deciding === 'reporter' || deciding === 'alignment' || deciding === 'width') confidence = 'medium';
    else if (deciding === 'hole') confidence = 'low';
    else confidence = supporting.some((e) => e.tier === 'driver') ? 'medium' : 'low';
    // The why: the evidence that decided, and what corroborates it (the strong tiers, and items
    // that single out few profiles); not the items that fit nearly everything.
    const decidingRank = deciding === undefined ? TIERS.length : TIERS.indexOf(deciding);
    const shown = supporting.filter(
      (e) => e.tier === deciding || (TIERS.indexOf(e.tier) <= Math.max(decidingRank, TIERS.indexOf('page-size')) && e.supports.length <= 3),
    );
    const parts = shown.map((e) => {
      if (e.tier === 'driver' || (equals.length > 1 && sameSet(e.supports, equals))) return e.why;
      const fit = e.supports.length === 1 ? `only ${name} fits` : `${listAnd(e.supports)} fit`;
      return `${e.why}: ${fit}${e.tier === 'page-size' && e.supports.length === 1 ? ` (its pages: ${bitmapList(chosen)})` : ''}`;
    });
    if (parts.length === 0) {
      // Only rule-outs: the survivors fit equally well.
      const ruledNames = ruledOut.filter((r) => INFERABLE.some((p) => p.name === r.profile)).map((r) => r.profile);
      parts.push(`${evidence.map((e) => e.why).join('; ')}, which rules out ${ruledNames.length ? listAnd(ruledNames) : 'none of the profiles'}`);
    }
    let why = parts.join('; ');
    if (equals.length > 1) {
      const byDriver = preferred.includes(name) && supporting.some((e) => e.tier === 'driver');
      const x86 = name === 'intel-vtd' ? ', the most common x86 IOMMU,' : '';
      why +=
        `; ${listAnd(equals)} fit equally: ` +
        (byDriver ? `${name} is the named driver's most common format` : `${name}${x86} is ${supporting.length === 0 ? 'assumed' : 'chosen'}`) +
        ' (pass --profile to choose another)';
    }
    // Say why the usual default lost, when evidence weaker than a driver name ruled it out.
    const dflt = ORDER[0]!;
    const dfltOut = ruledOut.find((r) => r.profile === dflt);
    if (name !== dflt && dfltOut && deciding !== 'driver') why += `; ${dflt}, the usual default, is ruled out: ${dfltOut.reason.split('; ')[0]}`;
    if (conflicts.length) why += `; but ${conflicts.join('; ')}`;
    return { name, why, confidence, ruledOut, scores, evidence, conflicts, seen, ...kernel };
  }
}

/** An evidence item: `judge` says, per inferable profile, true (supports), a reason (contradicts) or undefined. */
function item(tier: Tier, why: string, count: number, judge: (p: Profile) => true | string | undefined): Evidence {
  const supports: string[] = [];
  const contradicts: Evidence['contradicts'] = [];
  for (const p of INFERABLE) {
    const v = judge(p);
    if (v === true) supports.push(p.name);
    else if (typeof v === 'string') contradicts.push({ profile: p.name, reason: v });
  }
  return { tier, why, count, supports, contradicts };
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function cmpBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `8K, 16K and 64K`. */
function sizeList(sizes: readonly bigint[]): string {
  const s = sizes.map(formatSize);
  return s.length <= 1 ? (s[0] ?? '') : `${s.slice(0, -1).join(', ')} and ${s[s.length - 1]}`;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/** `a, b and c`. */
function listAnd(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

function bitmapList(p: Profile): string {
  const sizes = pageSizes(p.pgsizeBitmap);
  // AMD v1: forty sizes; say it the way people do.
  if (sizes.length > 8) return `every power of two from ${formatSize(sizes[0]!)}${p.name === 'amd-v1' ? ' except 512G' : ''}`;
  return sizes.map(formatSize).join('|');
}

/** Guesses from a set of records (and optional kernel-log lines); the accumulator in one call. */
export function guessProfile(records: Iterable<TraceRecord>, logLines: Iterable<string> = []): ProfileGuess {
  const ev = new ProfileEvidence();
  for (const r of records) ev.add(r);
  for (const l of logLines) ev.addLogLine(l);
  return ev.result();
}

// ---------------------------------------------------------------------------------------------
// Sampling a large file over its whole extent

export interface ByteRange {
  /** First byte of the window. */
  start: number;
  /** One past its last byte: a window holds the lines that start in [start, end). */
  end: number;
}

export interface SampleOptions {
  /** How many windows (default 16). */
  windows?: number;
  /** Bytes in each window (default 128 KiB). */
  windowBytes?: number;
}

export const DEFAULT_SAMPLE: Required<SampleOptions> = { windows: 16, windowBytes: 128 * 1024 };

/**
 * Byte ranges to read from a file of `fileSize` bytes: `windows` windows of `windowBytes`, evenly
 * spaced so that the first starts at 0 and the last ends at the end of the file; a file no larger
 * than all the windows together is one range, the whole file. Ranges are sorted and disjoint.
 */
export function sampleRanges(fileSize: number, options: SampleOptions = {}): ByteRange[] {
  const windows = Math.max(1, Math.floor(options.windows ?? DEFAULT_SAMPLE.windows));
  const windowBytes = Math.max(1, Math.floor(options.windowBytes ?? DEFAULT_SAMPLE.windowBytes));
  if (!(fileSize > 0)) return [];
  if (fileSize <= windows * windowBytes) return [{ start: 0, end: fileSize }];
  if (windows === 1) return [{ start: 0, end: windowBytes }];
  const stride = (fileSize - windowBytes) / (windows - 1);
  const out: ByteRange[] = [];
  for (let i = 0; i < windows; i++) {
    const start = i === windows - 1 ? fileSize - windowBytes : Math.floor(i * stride);
    out.push({ start, end: start + windowBytes });
  }
  return out;
}

export interface WindowLine {
  /** Byte offset of the line's first byte in the file. */
  offset: number;
  /** The line without its newline. */
  text: string;
  /** The file's last line, without a newline after it. */
  unterminated: boolean;
}

/**
 * The whole lines that start inside `range`, from `buf`, which holds the file's bytes from
 * `bufStart` on: the partial line the range starts inside is skipped (it belongs to the window
 * before), and the last line is completed past `range.end` when `buf` holds its newline. So
 * windows that tile a file yield every line exactly once. `buf` must start at or before
 * `range.start - 1` (to see whether `range.start` begins a line); a line whose newline `buf` does
 * not reach is left out unless `buf` ends at `fileSize` (then it is the unterminated last line).
 */
export function linesInRange(buf: Uint8Array, bufStart: number, range: ByteRange, fileSize: number): WindowLine[] {
  const out: WindowLine[] = [];
  const bufEnd = bufStart + buf.length;
  if (range.start > 0 && bufStart > range.start - 1) throw new RangeError('linesInRange: the buffer must start at or before range.start - 1');
  // First line start at or after range.start.
  let p: number;
  if (range.start === 0) p = 0;
  else {
    const nl = buf.indexOf(0x0a, range.start - 1 - bufStart);
    if (nl < 0) return out;
    p = bufStart + nl + 1;
  }
  const decoder = new TextDecoder();
  while (p < range.end && p < bufEnd) {
    const nl = buf.indexOf(0x0a, p - bufStart);
    if (nl < 0) {
      if (bufEnd === fileSize) out.push({ offset: p, text: decoder.decode(buf.subarray(p - bufStart)), unterminated: true });
      break;
    }
    out.push({ offset: p, text: decoder.decode(buf.subarray(p - bufStart, nl)), unterminated: false });
    p = bufStart + nl + 1;
  }
  return out;
}

/** Pairs `unmap this:` debug lines with the `unmapped:` lines after them (order matters, so only within a window). */
export class DebugUnmapPairer {
  private pending: { iova: bigint; size: bigint; got: bigint; parts: number } | undefined;

  constructor(private readonly sink: ProfileEvidence) {}

  add(r: TraceRecord): void {
    if (r.event === 'debug_unmapped') {
      if (this.pending) {
        this.pending.got += r.unmappedSize ?? 0n;
        this.pending.parts++;
      }
      return;
    }
    this.flush();
    if (r.event === 'debug_unmap' && r.iova !== undefined && r.size !== undefined) this.pending = { iova: r.iova, size: r.size, got: 0n, parts: 0 };
  }

  /** Ends the current call; `complete` false (a window's end) drops it instead, as its `unmapped:` lines may follow unseen. */
  flush(complete = true): void {
    const p = this.pending;
    this.pending = undefined;
    if (p && complete && p.parts > 0) this.sink.addUnmapOutcome(p.iova, p.size, p.got);
  }
}

export interface FileGuess extends ProfileGuess {
  sampled: { ranges: ByteRange[]; bytes: number; lines: number; fileSize: number };
}

/**
 * Guesses the profile of a trace file from windows spread over its whole extent
 * ({@link sampleRanges}), parsing each whole line with parseTraceLine and feeding the records, and
 * the kernel-log lines the parser skips, to a {@link ProfileEvidence}.
 */
export async function guessProfileFromFile(path: string, options: SampleOptions = {}): Promise<FileGuess> {
  const fh = await open(path, 'r');
  try {
    const fileSize = (await fh.stat()).size;
    const ranges = sampleRanges(fileSize, options);
    const ev = new ProfileEvidence();
    let bytes = 0;
    let lines = 0;
    for (const range of ranges) {
      const from = Math.max(0, range.start - 1);
      // Read past the end to complete the window's last line (a line is at most MAX_LINE_LENGTH).
      const to = Math.min(fileSize, range.end + MAX_LINE_LENGTH + 2);
      const buf = new Uint8Array(to - from);
      let got = 0;
      while (got < buf.length) {
        const { bytesRead } = await fh.read(buf, got, buf.length - got, from + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      bytes += got;
      const pairer = new DebugUnmapPairer(ev);
      for (const l of linesInRange(buf.subarray(0, got), from, range, fileSize)) {
        lines++;
        const parsed = parseTraceLine(l.text, { unterminated: l.unterminated });
        if (parsed.kind === 'record') {
          ev.add(parsed.record);
          pairer.add(parsed.record);
        } else if (parsed.kind === 'skip' && parsed.why === 'other-text') {
          ev.addLogLine(l.text);
        }
      }
      pairer.flush(false);
    }
    return { ...ev.result(), sampled: { ranges, bytes, lines, fileSize } };
  } finally {
    await fh.close();
  }
}
