/**
 * Parses one line of Linux kernel IOMMU output into a record. Pure and stateless: no I/O, no
 * state kept between lines, so a caller can stream a file of any size through it line by line.
 *
 * Accepted inputs (formats in docs/kernel-facts.md section 4):
 *
 * - ftrace text (`/sys/kernel/tracing/trace`, `trace_pipe`):
 *   `TASK-PID [(TGID)] [CPU] [FLAGS] TIMESTAMP: EVENT: BODY`, FLAGS 4, 5 or 7 characters or absent.
 * - `trace-cmd report`: the same without flags, with padding after `EVENT:`.
 * - the kernel log (dmesg, syslog, journalctl): tracepoint bodies printed with `tp_printk`
 *   (`map: IOMMU: ...`) and the `pr_debug` lines of drivers/iommu/iommu.c
 *   (`map:`, `mapping:`, `unmap this:`, `unmapped:`), every kernel era.
 *
 * Event bodies, every kernel version:
 *   map            `IOMMU: [dev=NAME ]iova=0x%016llx[ - 0x%016llx] paddr=0x%016llx size=%zu`
 *   unmap          `IOMMU: [dev=NAME ]iova=0x%016llx[ - 0x%016llx] size=%zu unmapped_size=%zu`
 *   io_page_fault  `IOMMU:%s %s iova=0x%016llx flags=0x%04x` (driver, device)
 *   attach_device_to_domain, detach_device_from_domain  `IOMMU: device=%s`
 *   add_device_to_group, remove_device_from_group       `IOMMU: groupID=%d device=%s`
 *
 * Cost: every layer is one anchored regular expression without nested quantifiers, or a
 * hand-written scan, so the work is linear in the line length; lines over MAX_LINE_LENGTH
 * are refused before any of it.
 */
import { AddressError, hex64, parseAddress, U64_MAX } from '../core/address.js';

/** Longer lines are refused with an error, unparsed (a kernel trace line is < 1 KiB). */
export const MAX_LINE_LENGTH = 64 * 1024;

export type TraceEventKind =
  | 'map'
  | 'unmap'
  | 'io_page_fault'
  | 'attach'
  | 'detach'
  | 'add_to_group'
  | 'remove_from_group'
  /** iommu.c `map: iova .. pa .. size ..`, once per iommu_map() call. */
  | 'debug_map'
  /** iommu.c `mapping: iova .. pa .. pgsize ..[ count N]`, once per page-size chunk. */
  | 'debug_mapping'
  /** iommu.c `unmap this: iova .. size ..`, once per iommu_unmap() call. */
  | 'debug_unmap'
  /** iommu.c `unmapped: iova .. size ..`, once per driver call, with the bytes it removed. */
  | 'debug_unmapped';

/**
 * Where the line came from: `ftrace` (tracefs text), `trace-cmd` (`trace-cmd report`, told
 * apart by the padding after `EVENT:`), `dmesg` (iommu.c pr_debug lines), `dmesg-tp`
 * (tracepoints printed to the kernel log with `tp_printk`).
 */
export type TraceSource = 'ftrace' | 'trace-cmd' | 'dmesg' | 'dmesg-tp';

export interface TraceRecord {
  event: TraceEventKind;
  source: TraceSource;
  /** ftrace task name (comm), as printed: may hold spaces, dashes, slashes and colons. */
  task?: string;
  /** ftrace PID column; for dmesg, the `[T123]` caller id when printk shows it. */
  pid?: number;
  /** ftrace `(TGID)` column (record-tgid option); absent when not shown or `(-------)`. */
  tgid?: number;
  /** ftrace `[CPU]` column; for dmesg, the `[C3]` caller id when printk shows it. */
  cpu?: number;
  /** ftrace irq/preempt flags column, exactly as printed (`d.h.`, `.....`, `....1..`). */
  flags?: string;
  /** The timestamp text exactly as printed (`511.102331`, or a syslog/journal date). */
  timestamp?: string;
  /** `timestamp` in nanoseconds, when it is `SECONDS.FRACTION` (not a raw counter or a date). */
  timestampNs?: bigint;
  /** map, unmap, io_page_fault and the debug lines: the first IOVA. */
  iova?: bigint;
  /** Range form (v5.17+) of map/unmap: the printed exclusive end, iova + size (mod 2^64). */
  iovaEnd?: bigint;
  /** map, debug_map, debug_mapping: the physical address. */
  paddr?: bigint;
  /** map, unmap (the requested size), debug_map, debug_unmap. */
  size?: bigint;
  /** unmap `unmapped_size=`; debug_unmapped `size` (the bytes one driver call removed). */
  unmappedSize?: bigint;
  /** debug_mapping: the page size of the chunk. */
  pgsize?: bigint;
  /** debug_mapping (v5.15+): the number of pages of `pgsize` in the chunk. */
  count?: bigint;
  /** Vendor kernels' `dev=NAME ` in map and unmap bodies. */
  dev?: string;
  /** io_page_fault: the driver name (`IOMMU:DRIVER`). */
  driver?: string;
  /** io_page_fault, attach, detach, add_to_group, remove_from_group: the device name. */
  device?: string;
  /** io_page_fault `flags=0x%04x` (IOMMU_FAULT_READ 0, IOMMU_FAULT_WRITE 1). */
  faultFlags?: number;
  /** add_to_group, remove_from_group: `groupID=`. */
  groupId?: number;
  /** debug lines: the log prefix before the message (`iommu`, a device, a dyndbg prefix). */
  prefix?: string;
}

export type SkipReason = 'blank' | 'header' | 'other-event' | 'other-text';

export type ParsedLine =
  /** Not an IOMMU record; `event` names the ftrace event of an `other-event` line. */
  | { kind: 'skip'; why: SkipReason; event?: string }
  /** Looked like an IOMMU record (or a trace line) but could not be read; `reason` says why. */
  | { kind: 'error'; reason: string }
  | { kind: 'record'; record: TraceRecord };

export interface ParseLineOptions {
  /**
   * The line was the last of the input and no newline followed it. Kernel output always ends
   * its lines, so such a record may have been cut anywhere (even inside its last number, which
   * still reads as a valid, smaller number): it is returned as an error instead. So is such a
   * line that ends inside what starts an IOMMU record (an event name such as `unm`, or the
   * start of a debug message), which would otherwise read as other text and be skipped.
   */
  unterminated?: boolean;
}

/** A parse failure; thrown inside this module only (a plain object: no stack to capture). */
class LineError {
  constructor(readonly reason: string) {}
}

function fail(reason: string): never {
  throw new LineError(reason);
}

/** Text of a value for an error reason, cut so that garbage cannot make reasons huge. */
function show(text: string): string {
  return text.length > 48 ? `${text.slice(0, 48)}...` : text;
}

const SKIP_BLANK: ParsedLine = Object.freeze({ kind: 'skip', why: 'blank' });
const SKIP_HEADER: ParsedLine = Object.freeze({ kind: 'skip', why: 'header' });
const SKIP_TEXT: ParsedLine = Object.freeze({ kind: 'skip', why: 'other-text' });

/** ftrace event name -> record kind. A Map, so that names like `constructor` are not found. */
const FTRACE_EVENTS: ReadonlyMap<string, TraceEventKind> = new Map<string, TraceEventKind>([
  ['map', 'map'],
  ['unmap', 'unmap'],
  ['io_page_fault', 'io_page_fault'],
  ['attach_device_to_domain', 'attach'],
  ['detach_device_from_domain', 'detach'],
  ['add_device_to_group', 'add_to_group'],
  ['remove_device_from_group', 'remove_from_group'],
]);

// C0 controls except TAB, and DEL: never in kernel text output (dmesg escapes them as \x..).
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\x00-\x08\x0a-\x1f\x7f]/;
/** trace-cmd report preamble and per-CPU notes. */
const TRACE_CMD_HEADER_RE = /^(?:cpus=\d+|version = \d+|CPU \d+ is empty|CPU\d+ data recorded at offset=.*)$/;

/**
 * ftrace/trace-cmd record head: `TASK-PID [(TGID)] [CPU] `. The task is the shortest text
 * followed by `-PID`, spaces, an optional `(TGID)` and `[CPU]`, so a task may hold dashes,
 * spaces, slashes and colons and the PID is the number after the last dash before the columns.
 */
const FTRACE_HEAD_RE = /^ *(\S.*?)-(\d+) +(?:\( *(\d+|-+)\) +)?\[(\d+)\] /;
const TIMESTAMP_RE = /^\d+(?:\.\d+)?$/;

/** Kernel-log prefixes, in the order they can appear. */
const LEVEL_RE = /^<\d{1,3}>/;
/** dmesg -x: `kern  :debug : `. */
const DECODE_RE = /^[a-z]+ *:[a-z]+ *: /;
/** syslog / journalctl (short, short-iso, short-precise): `DATE HOST kernel: `. */
const SYSLOG_RE = /^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d(?::?\d\d)?)?) (?:\S+ )?kernel: /;
/** printk time: `[  612.004411] `, also dmesg -d `[  612.004411 <    0.000002>] `. */
const STAMP_RE = /^\[ *(\d+\.\d+)(?: <[ \d.]*>)?\] ?/;
/** dmesg -T: `[Mon Nov 23 10:00:00 2026] `. */
const CTIME_RE = /^\[([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\] ?/;
/** journalctl -o short-monotonic after the stamp: `HOST kernel: `. */
const KERNEL_TAG_RE = /^(?:\S+ )?kernel: /;
/** CONFIG_PRINTK_CALLER: `[ T1234] ` (task) or `[    C3] ` (CPU). */
const CALLER_RE = /^\[ *([TC])(\d+)\] ?/;
/** tp_printk output: `EVENT: IOMMU:...`. */
const TP_RE = /^(map|unmap|io_page_fault|attach_device_to_domain|detach_device_from_domain|add_device_to_group|remove_device_from_group): +(IOMMU:.*)$/;

/** An IOMMU event name and its body's `IOMMU:` anywhere in a line (as ftrace, trace-cmd and tp_printk print them). */
const EMBEDDED_RE =
  /(?:^|\s)(?:iommu:)?(map|unmap|io_page_fault|attach_device_to_domain|detach_device_from_domain|add_device_to_group|remove_device_from_group): +IOMMU:/;

const HEX_RE = /^0[xX][0-9a-fA-F]+$/;
const BARE_HEX_RE = /^[0-9a-fA-F]+$/;
const DEC_RE = /^[0-9]+$/;

/**
 * Parses one line. Never throws: anything it cannot read comes back as `{ kind: 'error' }`
 * with a reason naming the field, and text that is not IOMMU output as `{ kind: 'skip' }`.
 * A trailing `\n`, `\r\n` or `\r` is ignored.
 */
export function parseTraceLine(line: string, options?: ParseLineOptions): ParsedLine {
  try {
    const result = parseLine(line, options?.unterminated === true);
    if (options?.unterminated && result.kind === 'record') {
      return {
        kind: 'error',
        reason: `${result.record.event}: the input ends without a newline after this line, so it may be cut (line ends with ${JSON.stringify(show(line.slice(-24)))})`,
      };
    }
    return result;
  } catch (e) {
    // Not expected (parse failures are LineErrors, caught below); kept so that one bad line
    // can never stop an import.
    return { kind: 'error', reason: `internal parser error: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/** One result per line of a whole text, numbered from 1; the last line without `\n` is unterminated. */
export function* parseTraceText(text: string): Generator<{ lineNo: number; result: ParsedLine }> {
  let start = 0;
  let lineNo = 0;
  while (start < text.length) {
    const nl = text.indexOf('\n', start);
    lineNo++;
    if (nl < 0) {
      yield { lineNo, result: parseTraceLine(text.slice(start), { unterminated: true }) };
      return;
    }
    yield { lineNo, result: parseTraceLine(text.slice(start, nl)) };
    start = nl + 1;
  }
}

/** `cut`: the line is the input's last and no newline follows it (see ParseLineOptions). */
function parseLine(raw: string, cut: boolean): ParsedLine {
  if (raw.length > MAX_LINE_LENGTH + 2) return tooLongLine(raw.length);
  let line = raw;
  if (line.endsWith('\n')) line = line.slice(0, -1);
  if (line.endsWith('\r')) line = line.slice(0, -1);
  if (line.length > MAX_LINE_LENGTH) return tooLongLine(line.length);

  let result: ParsedLine;
  try {
    result = parseText(line, cut);
  } catch (e) {
    if (!(e instanceof LineError)) throw e;
    result = { kind: 'error', reason: e.reason };
  }
  // Control characters (binary data): a record can only carry them in its free-text fields
  // (numbers are validated digit by digit), so only those are scanned; any other result scans
  // the whole line, and binary data is the reason given first.
  if (result.kind === 'record') {
    const r = result.record;
    if (hasControl(r.task) || hasControl(r.flags) || hasControl(r.device) || hasControl(r.driver) || hasControl(r.dev) || hasControl(r.prefix)) {
      return binaryData(line);
    }
    return result;
  }
  if (CONTROL_RE.test(line)) return binaryData(line);
  // A line skipped as not IOMMU output that still holds a whole IOMMU event further on: a
  // record whose start was damaged, or two lines run together (a cut line, then a record).
  // Counted as malformed, not skipped as some other event: the record would be lost unseen.
  if (result.kind === 'skip' && (result.why === 'other-event' || result.why === 'other-text') && line.includes('IOMMU:')) {
    const m = EMBEDDED_RE.exec(line);
    if (m) {
      const at = m.index + m[0].length - m[0].trimStart().length;
      return {
        kind: 'error',
        reason: `an IOMMU event (${m[1]}) at column ${at + 1} follows text that is not an IOMMU record (${JSON.stringify(show(line.slice(0, at).trimEnd()))}): two lines run together, or a damaged line start; not stored`,
      };
    }
  }
  return result;
}

function tooLongLine(length: number): ParsedLine {
  return { kind: 'error', reason: `line is ${length} characters long (limit ${MAX_LINE_LENGTH}); not parsed` };
}

function hasControl(s: string | undefined): boolean {
  return s !== undefined && CONTROL_RE.test(s);
}

function binaryData(line: string): ParsedLine {
  const at = line.search(CONTROL_RE);
  const code = line.charCodeAt(at).toString(16).padStart(2, '0');
  return { kind: 'error', reason: `binary data: control character 0x${code} at column ${at + 1}` };
}

function parseText(line: string, cut: boolean): ParsedLine {
  const first = firstNonSpace(line);
  if (first < 0) return SKIP_BLANK;
  if (line.charCodeAt(first) === 0x23 /* # */) return SKIP_HEADER;
  if (TRACE_CMD_HEADER_RE.test(line)) return SKIP_HEADER;

  // A printk time stamp first means the kernel log, whatever follows it.
  const stamped = line.charCodeAt(first) === 0x5b /* [ */ && STAMP_RE.test(line.slice(first));
  const head = stamped ? null : FTRACE_HEAD_RE.exec(line);
  if (head) return parseFtrace(line, head, cut);
  return parseKernelLog(trimSpaces(line), cut);
}

/** Drops trailing spaces and tabs (only those: other white space is data, or binary). */
function trimSpaces(s: string): string {
  let end = s.length;
  while (end > 0) {
    const c = s.charCodeAt(end - 1);
    if (c !== 0x20 && c !== 0x09) break;
    end--;
  }
  return end === s.length ? s : s.slice(0, end);
}

function firstNonSpace(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09) return i;
  }
  return -1;
}

function smallInt(text: string, what: string, max: number): number {
  if (text.length > 10 || Number(text) > max) fail(`${what} ${show(text)} is out of range (max ${max})`);
  return Number(text);
}

/** A `SECONDS.FRACTION` timestamp (ftrace, printk) in nanoseconds; undefined without a fraction. Exported for reroute.ts, which re-reads stored times. */
export function nanoseconds(ts: string): bigint | undefined {
  const dot = ts.indexOf('.');
  // Without a fraction it is a raw counter (trace_clock counter, x86-tsc), not seconds.
  if (dot < 0) return undefined;
  const fracLen = ts.length - dot - 1;
  if (dot <= 7 && fracLen <= 9) {
    // Exact in doubles: seconds < 9e6 times 1e9 stays below 2^53.
    const sec = Number(ts.slice(0, dot));
    if (sec < 9_000_000) return BigInt(sec * 1e9 + Number(ts.slice(dot + 1)) * 10 ** (9 - fracLen));
  }
  const frac = ts.slice(dot + 1);
  return BigInt(ts.slice(0, dot) + (fracLen >= 9 ? frac.slice(0, 9) : frac.padEnd(9, '0')));
}

// ---------------------------------------------------------------------------------------------
// ftrace and trace-cmd

function parseFtrace(line: string, head: RegExpExecArray, cut: boolean): ParsedLine {
  const task = head[1] ?? '';
  const pid = smallInt(head[2] ?? '', 'ftrace: pid', 0x7fffffff);
  const tgidText = head[3];
  const tgid = tgidText === undefined || tgidText.charCodeAt(0) === 0x2d /* - */ ? undefined : smallInt(tgidText, 'ftrace: tgid', 0x7fffffff);
  const cpu = smallInt(head[4] ?? '', 'ftrace: cpu', 0xffffff);

  // After `[CPU] `: [FLAGS] TIMESTAMP: EVENT: BODY
  let p = head[0].length;
  p = skipSpaces(line, p);
  let tok = tokenAt(line, p);
  if (tok === '') fail(`ftrace: line ends after the CPU column [${head[4]}] (truncated?)`);
  let flags: string | undefined;
  if (!(tok.endsWith(':') && TIMESTAMP_RE.test(tok.slice(0, -1)))) {
    if (TIMESTAMP_RE.test(tok) && p + tok.length === line.length) fail(`ftrace: line ends inside the timestamp ${tok} (truncated?)`);
    if (tok.length !== 4 && tok.length !== 5 && tok.length !== 7) {
      fail(`ftrace: flags column ${JSON.stringify(show(tok))} has ${tok.length} characters (expected 4, 5 or 7, or none)`);
    }
    flags = tok;
    p = skipSpaces(line, p + tok.length);
    tok = tokenAt(line, p);
    if (tok === '') fail(`ftrace: line ends after the flags column ${flags} (truncated?)`);
    if (!(tok.endsWith(':') && TIMESTAMP_RE.test(tok.slice(0, -1)))) {
      if (TIMESTAMP_RE.test(tok) && p + tok.length === line.length) fail(`ftrace: line ends inside the timestamp ${tok} (truncated?)`);
      fail(`ftrace: expected "SECONDS.FRACTION:" after the flags column, found ${JSON.stringify(show(tok))}`);
    }
  }
  const timestamp = tok.slice(0, -1);
  p = skipSpaces(line, p + tok.length);

  // EVENT:
  const evTok = tokenAt(line, p);
  if (evTok === '') fail(`ftrace: line ends after the timestamp ${timestamp}: (truncated?)`);
  if (!evTok.endsWith(':')) {
    // Function tracer lines (`func <-parent`) and other text without an event name.
    if (p + evTok.length === line.length) {
      if (FTRACE_EVENTS.has(evTok)) fail(`${evTok}: line ends after the event name (truncated?)`);
      if (cut && isEventNameStart(evTok)) fail(`ftrace: line ends inside the event name ${JSON.stringify(show(evTok))} (truncated?)`);
    }
    return { kind: 'skip', why: 'other-event', event: show(evTok) };
  }
  // `iommu:map:` when a tool prints the event system too.
  const name = evTok.startsWith('iommu:') ? evTok.slice(6, -1) : evTok.slice(0, -1);
  const kind = FTRACE_EVENTS.get(name);
  if (kind === undefined) {
    // `iommu:` and nothing after it, at the end of a cut input.
    if (cut && p + evTok.length === line.length && isEventNameStart(evTok))
      fail(`ftrace: line ends inside the event name ${JSON.stringify(show(evTok))} (truncated?)`);
    return { kind: 'skip', why: 'other-event', event: show(name) };
  }
  const afterName = p + evTok.length;
  const bodyStart = skipSpaces(line, afterName);
  const source: TraceSource = bodyStart - afterName >= 2 ? 'trace-cmd' : 'ftrace';
  const body = trimSpaces(line.slice(bodyStart));

  const record: TraceRecord = { event: kind, source, task, pid };
  if (tgid !== undefined) record.tgid = tgid;
  record.cpu = cpu;
  if (flags !== undefined) record.flags = flags;
  record.timestamp = timestamp;
  const ns = nanoseconds(timestamp);
  if (ns !== undefined) record.timestampNs = ns;
  parseBody(kind, name, body, record);
  return { kind: 'record', record };
}

/** Is `tok` the start of an IOMMU event name (`unm`, `iommu:un`, `iommu:`), as a line cut inside it ends? */
function isEventNameStart(tok: string): boolean {
  for (const e of FTRACE_EVENTS.keys()) if (e.startsWith(tok) || `iommu:${e}:`.startsWith(tok)) return true;
  return false;
}

function skipSpaces(s: string, p: number): number {
  while (p < s.length && s.charCodeAt(p) === 0x20) p++;
  return p;
}

/** The text from p to the next space or the end. */
function tokenAt(s: string, p: number): string {
  const sp = s.indexOf(' ', p);
  return sp < 0 ? s.slice(p) : s.slice(p, sp);
}

// ---------------------------------------------------------------------------------------------
// Kernel log

function parseKernelLog(line: string, cut: boolean): ParsedLine {
  let s = line.slice(firstNonSpace(line));
  let timestamp: string | undefined;
  let timestampNs: bigint | undefined;
  let pid: number | undefined;
  let cpu: number | undefined;

  let m = LEVEL_RE.exec(s);
  if (m) s = s.slice(m[0].length);
  m = DECODE_RE.exec(s);
  if (m) s = s.slice(m[0].length);
  const syslog = SYSLOG_RE.exec(s);
  if (syslog) {
    s = s.slice(syslog[0].length);
    timestamp = syslog[1];
  }
  m = STAMP_RE.exec(s);
  if (m) {
    s = s.slice(m[0].length);
    timestamp = m[1] ?? '';
    timestampNs = nanoseconds(timestamp);
  } else {
    m = CTIME_RE.exec(s);
    if (m) {
      s = s.slice(m[0].length);
      timestamp = m[1];
    }
  }
  if (!syslog) {
    m = KERNEL_TAG_RE.exec(s);
    if (m) s = s.slice(m[0].length);
  }
  m = CALLER_RE.exec(s);
  if (m) {
    s = s.slice(m[0].length);
    if (m[1] === 'T') pid = smallInt(m[2] ?? '', 'dmesg: caller task id', 0x7fffffff);
    else cpu = smallInt(m[2] ?? '', 'dmesg: caller cpu', 0xffffff);
  }
  if (s === '') return SKIP_TEXT;

  let record: TraceRecord;
  const tp = TP_RE.exec(s);
  if (tp) {
    const name = tp[1] ?? '';
    const kind = FTRACE_EVENTS.get(name) ?? fail(`internal: unknown event ${name}`);
    record = { event: kind, source: 'dmesg-tp' };
    parseBody(kind, name, tp[2] ?? '', record);
  } else {
    const dbg = parseDebugLine(s);
    if (dbg === undefined) {
      if (cut) {
        const start = cutMessageStart(s);
        if (start !== undefined) fail(`dmesg: line ends after ${JSON.stringify(show(start))}, the start of an IOMMU message (truncated?)`);
      }
      return SKIP_TEXT;
    }
    record = dbg;
  }
  if (pid !== undefined) record.pid = pid;
  if (cpu !== undefined) record.cpu = cpu;
  if (timestamp !== undefined) record.timestamp = timestamp;
  if (timestampNs !== undefined) record.timestampNs = timestampNs;
  return { kind: 'record', record };
}

/** What an iommu.c debug message reads up to its first value (see parseDebugLine). */
const DEBUG_STARTS = ['unmap this: iova', 'unmapped: iova', 'mapping: iova', 'map: iova'];

/**
 * For the last line of a cut input: the text at its end that an IOMMU message would start with
 * (`unm`, `map: IOMM`, `iommu: unmap th`, `unmapped: io`), or undefined. A tracepoint starts the
 * message; a debug keyword starts it or follows `: ` (after a prefix such as `iommu: `).
 */
function cutMessageStart(s: string): string | undefined {
  const tp = /^([a-z_]+)(?::( *)(.*))?$/.exec(s);
  if (tp) {
    const name = tp[1] ?? '';
    if (tp[2] === undefined) {
      for (const e of FTRACE_EVENTS.keys()) if (e.startsWith(name)) return s;
    } else if (FTRACE_EVENTS.has(name) && (tp[3] === '' || (tp[2] !== '' && 'IOMMU:'.startsWith(tp[3] ?? '')))) {
      return s;
    }
  }
  for (let i = 0; ;) {
    const tail = s.slice(i);
    if (tail !== '' && DEBUG_STARTS.some((d) => d.startsWith(tail))) return tail;
    const k = s.indexOf(': ', i);
    if (k < 0) return undefined;
    i = k + 2;
  }
}

/** The iommu.c pr_debug messages, longest keyword first (`map` is a suffix of none of the others). */
const DEBUG_KEYWORDS: ReadonlyArray<readonly [string, TraceEventKind]> = [
  ['unmap this', 'debug_unmap'],
  ['unmapped', 'debug_unmapped'],
  ['mapping', 'debug_mapping'],
  ['map', 'debug_map'],
];

/**
 * `[PREFIX: ]KEYWORD: iova 0x.. ...`. PREFIX is `iommu` (pr_fmt), nothing (v3.2), a device or
 * a dynamic-debug `module:function:line:` prefix. Returns undefined for other messages.
 */
function parseDebugLine(msg: string): TraceRecord | undefined {
  const k = msg.indexOf(': iova');
  if (k < 0) return undefined;
  const after = msg.charCodeAt(k + 6);
  if (!(Number.isNaN(after) || after === 0x20)) return undefined;
  const headText = msg.slice(0, k);
  let event: TraceEventKind | undefined;
  let keyword = '';
  let prefix = '';
  for (const [kw, ev] of DEBUG_KEYWORDS) {
    if (headText === kw || (headText.endsWith(kw) && headText.charCodeAt(headText.length - kw.length - 1) === 0x20)) {
      event = ev;
      keyword = kw;
      prefix = headText.slice(0, headText.length - kw.length).trimEnd();
      break;
    }
  }
  if (event === undefined) return undefined;
  if (prefix.endsWith(':')) prefix = prefix.slice(0, -1);
  const ctx = `debug ${keyword}:`;

  // key value pairs: `iova 0x.. pa 0x.. size 0x..[ count N]`
  let iova: string | undefined;
  let pa: string | undefined;
  let size: string | undefined;
  let pgsize: string | undefined;
  let count: string | undefined;
  const n = msg.length;
  let p = k + 2;
  for (;;) {
    p = skipSpaces(msg, p);
    if (p >= n) break;
    let q = msg.indexOf(' ', p);
    if (q < 0) q = n;
    const key = msg.slice(p, q);
    p = skipSpaces(msg, q);
    if (p >= n) fail(`${ctx} ${show(key)} has no value (truncated line?)`);
    q = msg.indexOf(' ', p);
    if (q < 0) q = n;
    const val = msg.slice(p, q);
    p = q;
    if (key === 'iova' && iova === undefined) iova = val;
    else if (key === 'pa' && pa === undefined && (event === 'debug_map' || event === 'debug_mapping')) pa = val;
    else if (key === 'size' && size === undefined && event !== 'debug_mapping') size = val;
    else if (key === 'pgsize' && pgsize === undefined && event === 'debug_mapping') pgsize = val;
    else if (key === 'count' && count === undefined && event === 'debug_mapping') count = val;
    else if (key === 'iova' || key === 'pa' || key === 'size' || key === 'pgsize' || key === 'count') {
      fail(
        (key === 'iova' ? iova : key === 'pa' ? pa : key === 'size' ? size : key === 'pgsize' ? pgsize : count) !== undefined
          ? `${ctx} ${key} appears twice`
          : `${ctx} unexpected field ${JSON.stringify(key)}`,
      );
    } else fail(`${ctx} unexpected field ${JSON.stringify(show(key))}`);
  }
  const record: TraceRecord = { event, source: 'dmesg' };
  if (prefix !== '') record.prefix = prefix;
  record.iova = hexValue(ctx, 'iova', iova ?? fail(`${ctx} missing iova`), ' ');
  switch (event) {
    case 'debug_map':
      record.paddr = hexValue(ctx, 'pa', pa ?? fail(`${ctx} missing pa`), ' ');
      record.size = hexValue(ctx, 'size', size ?? fail(`${ctx} missing size`), ' ');
      break;
    case 'debug_mapping': {
      record.paddr = hexValue(ctx, 'pa', pa ?? fail(`${ctx} missing pa`), ' ');
      const pg = pgsize ?? fail(`${ctx} missing pgsize`);
      // v3.2 printed pgsize in decimal (%lu), later kernels 0x%zx.
      record.pgsize = isHexPrefixed(pg) ? hexValue(ctx, 'pgsize', pg, ' ') : decValue(ctx, 'pgsize', pg, ' ');
      if (count !== undefined) record.count = decValue(ctx, 'count', count, ' ');
      break;
    }
    case 'debug_unmap':
      record.size = hexValue(ctx, 'size', size ?? fail(`${ctx} missing size`), ' ');
      break;
    default: {
      // debug_unmapped. v3.2 printed `size %lx` (hex without 0x), later kernels 0x%zx.
      const sz = size ?? fail(`${ctx} missing size`);
      record.unmappedSize = isHexPrefixed(sz) ? hexValue(ctx, 'size', sz, ' ') : bareHexValue(ctx, 'size', sz, ' ');
      break;
    }
  }
  return record;
}

function isHexPrefixed(s: string): boolean {
  return s.length >= 2 && s.charCodeAt(0) === 0x30 && (s.charCodeAt(1) | 0x20) === 0x78;
}

// ---------------------------------------------------------------------------------------------
// Values. The text's shape is checked here. A value whose digit count proves it below 2^64
// (at most 16 significant hex digits, at most 19 decimal digits) is converted directly, as this
// runs several times per line; any longer one goes to core/address.ts parseAddress, which owns
// the 64-bit range check (its AddressError becomes "does not fit in 64 bits").

function viaParseAddress(ctx: string, field: string, text: string, sep: string, canonical: string): bigint {
  try {
    return parseAddress(canonical, field);
  } catch (e) {
    // The shape was checked before, so the only AddressError left is "over 64 bits".
    if (e instanceof AddressError) fail(`${ctx} ${field}${sep}${show(text)} does not fit in 64 bits`);
    throw e;
  }
}

function noValue(ctx: string, field: string, sep: string): never {
  fail(`${ctx} ${field}${sep.trim()} has no value (truncated line?)`);
}

function hexValue(ctx: string, field: string, text: string, sep: string): bigint {
  if (text === '') noValue(ctx, field, sep);
  if (!HEX_RE.test(text)) fail(`${ctx} ${field}${sep}${show(text)} is not a hex number (expected 0x...)`);
  if (significantDigits(text, 2) <= 16) return BigInt(text);
  return viaParseAddress(ctx, field, text, sep, text);
}

function bareHexValue(ctx: string, field: string, text: string, sep: string): bigint {
  if (!BARE_HEX_RE.test(text)) fail(`${ctx} ${field}${sep}${show(text)} is not a hex number`);
  if (significantDigits(text, 0) <= 16) return BigInt(`0x${text}`);
  return viaParseAddress(ctx, field, text, sep, `0x${text}`);
}

function decValue(ctx: string, field: string, text: string, sep: string): bigint {
  if (text === '') noValue(ctx, field, sep);
  if (!DEC_RE.test(text)) fail(`${ctx} ${field}${sep}${show(text)} is not a decimal number`);
  // Up to 15 digits the value is below 2^53, exact as a Number, and that conversion is cheap.
  if (text.length <= 15) return BigInt(Number(text));
  if (significantDigits(text, 0) <= 19) return BigInt(text);
  return viaParseAddress(ctx, field, text, sep, text);
}

/** Digits after `from`, not counting leading zeros. */
function significantDigits(text: string, from: number): number {
  let i = from;
  while (i < text.length - 1 && text.charCodeAt(i) === 0x30) i++;
  return text.length - i;
}

// ---------------------------------------------------------------------------------------------
// Event bodies (ftrace, trace-cmd and tp_printk share them)

function parseBody(kind: TraceEventKind, name: string, body: string, record: TraceRecord): void {
  if (body === '') fail(`${name}: empty body (truncated line?)`);
  switch (kind) {
    case 'map':
    case 'unmap':
      parseMapUnmap(kind, body, record);
      return;
    case 'io_page_fault':
      parseFault(body, record);
      return;
    case 'attach':
    case 'detach':
      parseDeviceEvent(name, body, record);
      return;
    case 'add_to_group':
    case 'remove_from_group':
      parseGroupEvent(name, body, record);
      return;
    default:
      fail(`internal: ${name} has no body parser`);
  }
}

function afterIommuTag(name: string, body: string, space: boolean): string {
  const tag = space ? 'IOMMU: ' : 'IOMMU:';
  if (!body.startsWith(tag)) {
    if (tag.startsWith(body)) fail(`${name}: body ends after ${JSON.stringify(body)} (truncated line?)`);
    fail(`${name}: body does not start with ${JSON.stringify(tag)}: ${JSON.stringify(show(body))}`);
  }
  return body.slice(tag.length);
}

function parseMapUnmap(ev: 'map' | 'unmap', body: string, record: TraceRecord): void {
  const text = afterIommuTag(ev, body, true);
  let iova: string | undefined;
  let end: string | undefined;
  let paddr: string | undefined;
  let size: string | undefined;
  let unmapped: string | undefined;
  let dev: string | undefined;
  let fields = 0;
  const n = text.length;
  let p = 0;
  for (;;) {
    p = skipSpaces(text, p);
    if (p >= n) break;
    let q = text.indexOf(' ', p);
    if (q < 0) q = n;
    if (q === p + 1 && text.charCodeAt(p) === 0x2d /* - */) {
      if (iova === undefined || end !== undefined || fields !== 1) fail(`${ev}: unexpected "-" (the range form is "iova=0x... - 0x...")`);
      p = skipSpaces(text, q);
      if (p >= n) fail(`${ev}: missing end address after "iova=${show(iova)} -" (truncated line?)`);
      q = text.indexOf(' ', p);
      if (q < 0) q = n;
      end = text.slice(p, q);
      p = q;
      continue;
    }
    const eq = text.indexOf('=', p);
    if (eq <= p || eq >= q) fail(`${ev}: unexpected text ${JSON.stringify(show(text.slice(p, q)))}`);
    const key = text.slice(p, eq);
    const val = text.slice(eq + 1, q);
    p = q;
    let dup = false;
    switch (key) {
      case 'dev':
        if (fields !== 0 || dev !== undefined) fail(`${ev}: dev= must come first, right after "IOMMU: "`);
        dev = val;
        continue;
      case 'iova':
        dup = iova !== undefined;
        iova = val;
        break;
      case 'paddr':
        if (ev !== 'map') fail(`${ev}: unexpected field paddr= (only map has it)`);
        dup = paddr !== undefined;
        paddr = val;
        break;
      case 'size':
        dup = size !== undefined;
        size = val;
        break;
      case 'unmapped_size':
        if (ev !== 'unmap') fail(`${ev}: unexpected field unmapped_size= (only unmap has it)`);
        dup = unmapped !== undefined;
        unmapped = val;
        break;
      default:
        fail(`${ev}: unknown field ${JSON.stringify(show(key))}=`);
    }
    if (dup) fail(`${ev}: ${key}= appears twice`);
    fields++;
  }
  if (dev !== undefined) record.dev = dev;
  if (iova === undefined) fail(`${ev}: missing iova=`);
  const iovaV = hexValue(ev + ':', 'iova', iova, '=');
  record.iova = iovaV;
  let endV: bigint | undefined;
  if (end !== undefined) {
    if (!HEX_RE.test(end)) fail(`${ev}: range end ${show(end)} is not a hex number (expected 0x...)`);
    endV = significantDigits(end, 2) <= 16 ? BigInt(end) : viaParseAddress(`${ev}:`, 'range end', end, ' ', end);
    record.iovaEnd = endV;
  }
  if (ev === 'map') {
    if (paddr === undefined) fail(`map: missing paddr=`);
    record.paddr = hexValue('map:', 'paddr', paddr, '=');
  }
  if (size === undefined) fail(`${ev}: missing size=`);
  const sizeV = decValue(ev + ':', 'size', size, '=');
  record.size = sizeV;
  if (ev === 'unmap') {
    if (unmapped === undefined) fail(`unmap: missing unmapped_size=`);
    record.unmappedSize = decValue('unmap:', 'unmapped_size', unmapped, '=');
  }
  if (endV !== undefined) {
    // The kernel prints iova + size computed in u64, so it wraps at 2^64.
    const expected = (iovaV + sizeV) & U64_MAX;
    if (endV !== expected) {
      fail(`${ev}: range end ${show(end ?? '')} is not iova + size (${hex64(iovaV)} + ${sizeV} = ${hex64(expected)})`);
    }
  }
}

function parseFault(body: string, record: TraceRecord): void {
  const rest = afterIommuTag('io_page_fault', body, false);
  const at = rest.lastIndexOf(' iova=');
  if (at < 0) fail(`io_page_fault: missing iova=`);
  const who = rest.slice(0, at);
  const sp = who.indexOf(' ');
  if (sp < 0) fail(`io_page_fault: expected "IOMMU:DRIVER DEVICE iova=...", found no device name`);
  record.driver = who.slice(0, sp);
  record.device = who.slice(sp + 1);
  if (record.device === '') fail(`io_page_fault: empty device name`);
  const kv = rest.slice(at + 1).split(' ');
  const iovaTok = kv[0] ?? '';
  record.iova = hexValue('io_page_fault:', 'iova', iovaTok.slice(5), '=');
  const flagsTok = kv[1];
  if (flagsTok === undefined) fail(`io_page_fault: missing flags=`);
  if (!flagsTok.startsWith('flags=')) fail(`io_page_fault: expected flags= after iova, found ${JSON.stringify(show(flagsTok))}`);
  if (kv.length > 2) fail(`io_page_fault: unexpected text after flags=: ${JSON.stringify(show(kv.slice(2).join(' ')))}`);
  const flags = hexValue('io_page_fault:', 'flags', flagsTok.slice(6), '=');
  if (flags > 0xffffffffn) fail(`io_page_fault: flags=${show(flagsTok.slice(6))} does not fit in 32 bits`);
  record.faultFlags = Number(flags);
}

function parseDeviceEvent(name: string, body: string, record: TraceRecord): void {
  const rest = afterIommuTag(name, body, true);
  if (!rest.startsWith('device=')) {
    if ('device='.startsWith(rest)) fail(`${name}: missing device= (truncated line?)`);
    fail(`${name}: expected "device=NAME", found ${JSON.stringify(show(rest))}`);
  }
  const device = rest.slice(7);
  if (device === '') fail(`${name}: device= has no value (truncated line?)`);
  record.device = device;
}

function parseGroupEvent(name: string, body: string, record: TraceRecord): void {
  const rest = afterIommuTag(name, body, true);
  if (!rest.startsWith('groupID=')) {
    if ('groupID='.startsWith(rest)) fail(`${name}: missing groupID= (truncated line?)`);
    fail(`${name}: expected "groupID=N device=NAME", found ${JSON.stringify(show(rest))}`);
  }
  const sp = rest.indexOf(' ');
  const idText = sp < 0 ? rest.slice(8) : rest.slice(8, sp);
  if (idText === '') fail(`${name}: groupID= has no value (truncated line?)`);
  if (!DEC_RE.test(idText)) fail(`${name}: groupID=${show(idText)} is not a decimal number`);
  if (idText.length > 10 || Number(idText) > 0x7fffffff) fail(`${name}: groupID=${show(idText)} does not fit in 31 bits`);
  record.groupId = Number(idText);
  if (sp < 0) fail(`${name}: missing device= (truncated line?)`);
  const rest2 = rest.slice(sp + 1);
  if (!rest2.startsWith('device=')) {
    if ('device='.startsWith(rest2)) fail(`${name}: missing device= (truncated line?)`);
    fail(`${name}: expected device= after groupID=, found ${JSON.stringify(show(rest2))}`);
  }
  const device = rest2.slice(7);
  if (device === '') fail(`${name}: device= has no value (truncated line?)`);
  record.device = device;
}
