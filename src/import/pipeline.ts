/**
 * The importer's stages, wired: lines (read.ts) -> records (parse.ts) -> calls (calls.ts) ->
 * order and route (window.ts, route.ts) -> commands for the ledger (spaces.ts). Pure: the caller
 * feeds lines and receives commands through `emit`; nothing here reads files or writes the
 * ledger (store.ts does both).
 */
import type { Profile, Semantics } from '../core/profile.js';
import { DebugCalls } from './calls.js';
import { parseTraceLine, type TraceRecord } from './parse.js';
import { Router, type RouteCounts } from './route.js';
import { type Emit, type Space, type SpaceHost, Spaces } from './spaces.js';

export interface PipelineOptions {
  profile: Profile;
  profileName: string;
  semantics?: Semantics;
  domain?: string;
  domainBy?: 'infer' | 'dev';
  caller?: string;
  /** Clock skew between CPUs to allow for, in nanoseconds (window.ts). */
  skewNs: bigint;
  sourceKey: string;
  sourceName: string;
  /** The page sizes the maps run under (an existing --domain's own), for the debug-line split check. */
  split: { bitmap: bigint; name: string };
}

export interface LineResult {
  /** The line looked like an IOMMU record but could not be read: why (FILE:LINE: reason: "text"). */
  malformed?: string;
}

export class ImportPipeline {
  records = 0;
  skipped = 0;
  /** Every record, in order, for evidence gatherers (profile inference) that want them. */
  onRecord: ((rec: TraceRecord) => void) | undefined;
  private readonly spaces: Spaces;
  private readonly router: Router;
  private readonly calls: DebugCalls;

  constructor(
    host: SpaceHost,
    private readonly opts: PipelineOptions,
    emit: Emit,
  ) {
    this.spaces = new Spaces(host, opts, emit);
    this.router = new Router(this.spaces, { domain: opts.domain, domainBy: opts.domainBy, skewNs: opts.skewNs });
    this.calls = new DebugCalls((rec, line) => this.router.push(rec, line), opts.split, opts.sourceName);
  }

  /** One line of the source. */
  line(text: string, no: number, unterminated = false): LineResult {
    const p = parseTraceLine(text, { unterminated });
    if (p.kind === 'skip') {
      this.skipped++;
      return {};
    }
    if (p.kind === 'error') {
      return { malformed: `${this.opts.sourceName}:${no}: ${p.reason}: ${JSON.stringify(text.length > 160 ? `${text.slice(0, 160)}...` : text)}` };
    }
    this.records++;
    this.onRecord?.(p.record);
    this.calls.push(p.record, no);
    return {};
  }

  /**
   * One record that was not read from a line of this source: a stored event read back
   * (reroute.ts), already one call (the calls stage ran when it was imported). It goes straight to
   * the order and route stages.
   */
  record(rec: TraceRecord, line: number): void {
    this.records++;
    this.router.push(rec, line);
  }

  /** A pause of a stream: the records held are decided (attaches keep waiting for their task's map). */
  idle(): void {
    this.calls.flush();
    this.router.drainAll();
  }

  /** The end of the input, or of what a follow has read for now: every held record is decided. */
  end(): void {
    this.calls.flush();
    this.router.flush();
  }

  get spaceList(): readonly Space[] {
    return this.spaces.list;
  }

  get counts(): RouteCounts {
    return this.router.counts;
  }

  get splitMismatches(): number {
    return this.calls.splitMismatches;
  }

  get splitExamples(): readonly string[] {
    return this.calls.splitExamples;
  }
}
