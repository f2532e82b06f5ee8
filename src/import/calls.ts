/**
 * From kernel-log lines to calls: drivers/iommu/iommu.c prints, with dynamic debug, one `map:`
 * line per iommu_map() call followed by its `mapping:` chunks, and one `unmap this:` line per
 * iommu_unmap() followed by one `unmapped:` line per driver call. This stage makes one record
 * of each group (an unmap's observed size is the sum of its `unmapped:` sizes), compares the
 * kernel's chunks with the profile's own split of the same map, and drops the tracepoint copy of
 * a call printed next to its debug line (the `tp_printk` boot option), so a call is stored once.
 * Every other record passes through unchanged, in order.
 */
import { formatSize, hex } from '../core/address.js';
import { splitRegion } from '../core/split.js';
import type { TraceRecord } from './parse.js';

export type Sink = (rec: TraceRecord, line: number) => void;

interface Chunk {
  iova: bigint;
  pgsize: bigint;
  count: bigint;
}

/** A tracepoint within this many lines after the debug line of the same call is its copy. */
const COPY_DISTANCE = 16;

export class DebugCalls {
  splitMismatches = 0;
  readonly splitExamples: string[] = [];
  private pendingUnmap: { rec: TraceRecord; line: number; got: bigint } | undefined;
  private pendingMap: { rec: TraceRecord; line: number; chunks: Chunk[] } | undefined;
  private lastDebug: { event: 'map' | 'unmap'; iova: bigint; size: bigint; line: number } | undefined;

  constructor(
    private readonly sink: Sink,
    /** The page sizes the maps run under, and the profile's name (for the report). */
    private readonly split: { bitmap: bigint; name: string },
    private readonly sourceName: string,
  ) {}

  push(rec: TraceRecord, line: number): void {
    if (rec.event === 'debug_unmapped') {
      if (this.pendingUnmap) this.pendingUnmap.got += rec.unmappedSize ?? 0n;
      return;
    }
    if (rec.event === 'debug_mapping') {
      if (this.pendingMap) this.pendingMap.chunks.push({ iova: rec.iova!, pgsize: rec.pgsize!, count: rec.count ?? 1n });
      return;
    }
    this.flush();
    const last = this.lastDebug;
    if (
      (rec.event === 'map' || rec.event === 'unmap') &&
      last &&
      last.event === rec.event &&
      last.iova === rec.iova &&
      last.size === rec.size &&
      line - last.line < COPY_DISTANCE
    ) {
      this.lastDebug = undefined;
      return;
    }
    if (rec.event === 'debug_unmap') {
      this.pendingUnmap = { rec, line, got: 0n };
      this.lastDebug = { event: 'unmap', iova: rec.iova!, size: rec.size!, line };
      return;
    }
    if (rec.event === 'debug_map') {
      this.pendingMap = { rec, line, chunks: [] };
      this.lastDebug = { event: 'map', iova: rec.iova!, size: rec.size!, line };
      return;
    }
    this.sink(rec, line);
  }

  /** Releases an unfinished group (its following lines ended). */
  flush(): void {
    const u = this.pendingUnmap;
    if (u) {
      this.pendingUnmap = undefined;
      this.sink({ ...u.rec, unmappedSize: u.got }, u.line);
    }
    const m = this.pendingMap;
    if (m) {
      this.pendingMap = undefined;
      if (m.chunks.length) this.checkSplit(m.rec, m.line, m.chunks);
      this.sink(m.rec, m.line);
    }
  }

  private checkSplit(rec: TraceRecord, line: number, chunks: Chunk[]): void {
    const ours = splitRegion(rec.iova!, rec.paddr!, rec.size!, this.split.bitmap);
    const theirs = coalesce(chunks);
    const same =
      ours.length === theirs.length && ours.every((o, i) => o.iova === theirs[i]!.iova && o.pageSize === theirs[i]!.pgsize && o.count === theirs[i]!.count);
    if (same) return;
    this.splitMismatches++;
    if (this.splitExamples.length < 3) {
      this.splitExamples.push(
        `${this.sourceName}:${line}: map ${hex(rec.iova!)}+${formatSize(rec.size!)}: kernel ${theirs.map((c) => `${c.count}x${formatSize(c.pgsize)}`).join(' ')}, ${this.split.name} ${ours.map((c) => `${c.count}x${formatSize(c.pageSize)}`).join(' ')}`,
      );
    }
  }
}

function coalesce(chunks: Chunk[]): Chunk[] {
  const out: Chunk[] = [];
  for (const c of chunks) {
    const last = out[out.length - 1];
    if (last && last.pgsize === c.pgsize && last.iova + last.pgsize * last.count === c.iova) last.count += c.count;
    else out.push({ ...c });
  }
  return out;
}
