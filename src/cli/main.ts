/**
 * iommu-ledger on the command line. Exit codes: 0 fine, 1 findings under --fail-on (or a
 * failed verify/check), 2 usage or input errors (the message says what to do), 75 the ledger
 * was busy (another writer held it too long: retry), 70 a bug.
 */
import { existsSync, rmSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { Command, CommanderError, Option } from 'commander';
import { formatSize, hex, parseAddress, parseSize } from '../core/address.js';
import { BUILTIN_PROFILES, pageSizes, SEMANTICS, type Semantics } from '../core/profile.js';
import type { FindingView, Queries } from '../projections/queries.js';
import { describeVerdicts } from '../projections/verdicts.js';
import { InputError, USER_ERRORS } from './errors.js';
import { json, runJson, runRows, table } from './format.js';
import { collectGarbage } from './gc.js';
import type { ImportOptions } from './import.js';
import type { CheckpointToOptions } from './checkpoint.js';
import { withProgress } from './progress.js';

// Heavier layers load on demand: a query should not pay for zod, an import not for the queries.
const ledgerLib = () => import('../projections/ledger.js');
const queriesLib = () => import('../projections/queries.js');

/** Exit with code 1 (findings) without treating it as an error. */
class Findings extends Error {}

interface Globals {
  db: string;
  json?: boolean;
}

function buildProgram(io: IO): Command {
  const program = new Command();
  program
    .name('iommu-ledger')
    .description('An auditable, event-sourced ledger of IOMMU map/unmap commands: import kernel traces, ask when, by whom and why a region was over-unmapped or left mapped.')
    .addOption(new Option('--db <path>', 'ledger file').default(process.env.IOMMU_LEDGER_DB || './iommu-ledger.db', '$IOMMU_LEDGER_DB or ./iommu-ledger.db'))
    .option('--json', 'machine-readable output (addresses as "0x" strings)')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => io.err(s), writeOut: (s) => io.out(s) })
    .addHelpText(
      'after',
      `
  Examples:
    iommu-ledger demo                                  build a ledger from examples/ and audit it
    iommu-ledger import /sys/kernel/tracing/trace --profile intel-vtd
    iommu-ledger apply examples/scenario.jsonl
    iommu-ledger audit over-unmaps --fail-on over-unmap
    iommu-ledger explain 0x202010 --domain gpu0
    iommu-ledger state --domain gpu0 --at 5 --json
    iommu-ledger replay --semantics strict --out strict.db`,
    );

  const g = (): Globals => program.opts<Globals>();
  const out = (s: string): void => {
    io.out(s.endsWith('\n') ? s : `${s}\n`);
  };

  function addr(v: string, what = 'IOVA'): bigint {
    try {
      return parseAddress(v);
    } catch (e) {
      throw new InputError(`${what} ${JSON.stringify(v)}: ${(e as Error).message}`);
    }
  }

  function size(v: string): bigint {
    try {
      return parseSize(v);
    } catch (e) {
      throw new InputError(`size ${JSON.stringify(v)}: ${(e as Error).message}`);
    }
  }

  /**
   * Opens a ledger for writing; if this run created the file and nothing got stored (the input
   * failed), the empty file is removed again when it is closed, so a typo leaves no ledger behind.
   * Only when no other process uses it: another `apply` may have opened the new file meanwhile,
   * and removing it would lose what that one stores. So the events are counted afresh (another
   * process's commits included), and after closing, a `-wal` file still there means another
   * connection is open (SQLite removes it when the last connection closes): the file stays.
   */
  function newLedgerGuard<L extends { close(): void; db: Database.Database }>(path: string, open: () => L): L {
    const existed = existsSync(path);
    const ledger = open();
    if (!existed) {
      const close = ledger.close.bind(ledger);
      ledger.close = () => {
        let empty = false;
        try {
          empty = Number(ledger.db.prepare('SELECT count(*) FROM events').pluck().get()) === 0;
        } catch {
          // unreadable after a fault: kept, and the fault is what the command reports
        }
        close();
        if (empty && !existsSync(`${path}-wal`)) for (const suffix of ['', '-shm']) rmSync(path + suffix, { force: true });
      };
    }
    return ledger;
  }

  /** The ledger's queries; `builder` also loads the query builder the audit listings use. */
  async function queries(opts: { builder?: boolean } = {}): Promise<Queries> {
    const lib = await queriesLib();
    if (opts.builder) await lib.loadQueryBuilder();
    return new lib.Queries(g().db);
  }

  const atOption = () => new Option('--at <point>', 'as of: an event position (1234), trace seconds (511.10) or an ISO time');
  const domainOption = () => new Option('--domain <name>', 'the domain (optional when the ledger holds one)');
  const filterDomainOption = () => new Option('--domain <name>', 'only this domain (default: every domain)');

  // ---- writing ----

  program
    .command('apply')
    .description('store hand-written commands (JSON Lines, one command a line; see docs/commands.md)')
    .argument('<file>', 'a .jsonl file, or - for standard input')
    .option('--checkpoint-to <dir>', 'after the run, write a checkpoint of the ledger\'s head into this folder (see `checkpoint`)')
    .option('--checkpoint-key <pem>', 'sign those checkpoints with this Ed25519 private key')
    .action(async (file: string, o: CheckpointToOptions) => {
      const { Ledger } = await ledgerLib();
      const { applyFile } = await import('./apply.js');
      const cp = await import('./checkpoint.js');
      const plan = cp.planRunCheckpoint(o);
      const ledger = newLedgerGuard(g().db, () => new Ledger(g().db, { durable: true }));
      try {
        const s = await applyFile(ledger, file);
        const written = plan && cp.writeRunCheckpoint(ledger.db, plan);
        if (g().json) return out(json(plan ? { ...s, checkpoint: written ?? null } : s));
        out(
          `${s.source}: ${s.commands} commands, ${s.stored} stored, ${s.duplicates} already in the ledger` +
            (s.rejected ? `, ${s.rejected} refused by the domain (stored with their errno)` : '') +
            `; ${s.overUnmaps} over-unmap(s)${describeVerdicts(s.verdicts)}, ${s.leftMapped} unmap(s) left pages mapped. Ledger: ${g().db}`,
        );
        if (plan) out(cp.runCheckpointLine(written));
      } finally {
        ledger.close();
      }
    });

  program
    .command('import')
    .description('import kernel output: ftrace text, trace-cmd report, or dmesg (tp_printk and iommu.c debug lines)')
    .argument('<file>', 'a trace file, or - for standard input')
    .option('--profile <name>', 'the hardware (see `profiles`); by default inferred from the trace and said')
    .addOption(new Option('--semantics <s>', 'override the profile\'s unmap behaviour').choices([...SEMANTICS]))
    .option('--domain <name>', 'put every record in this one domain')
    .addOption(new Option('--domain-by <how>', 'how to split records into domains').choices(['infer', 'dev']).default('infer').conflicts('domain'))
    .option('--strict', 'fail on the first malformed line and store nothing')
    .option('--follow', 'keep reading a growing file (Ctrl-C to stop)')
    .option('--caller <name>', 'caller name for records (default: the task name)')
    .option('--skew <us>', 'clock skew between CPUs to allow for when ordering records, in microseconds (default 20)')
    .option('--checkpoint-to <dir>', 'after the run, write a checkpoint of the ledger\'s head into this folder (see `checkpoint`)')
    .option('--checkpoint-key <pem>', 'sign those checkpoints with this Ed25519 private key')
    .action(async (file: string, o: ImportOptions & { skew?: string } & CheckpointToOptions) => {
      const { Ledger } = await ledgerLib();
      const { importFile } = await import('./import.js');
      const cp = await import('./checkpoint.js');
      const plan = cp.planRunCheckpoint(o);
      const ledger = newLedgerGuard(g().db, () => new Ledger(g().db, { durable: true }));
      try {
        const { skew, checkpointTo: _to, checkpointKey: _key, ...rest } = o;
        const s = await withProgress('import', (tick) => importFile(ledger, file, { ...rest, skewUs: skew, onProgress: tick }));
        const written = plan && cp.writeRunCheckpoint(ledger.db, plan);
        if (g().json) return out(json(plan ? { ...s, checkpoint: written ?? null } : s));
        out(s.report.join('\n'));
        if (plan) out(cp.runCheckpointLine(written));
      } finally {
        ledger.close();
      }
    });

  // ---- questions ----

  program
    .command('state')
    .description('the pages mapped in a domain (now, or --at a past event)')
    .addOption(domainOption())
    .addOption(atOption())
    .option('--hw', 'also show the page-table structure (entries and tables per level)')
    .action(async (o: { domain?: string; at?: string; hw?: boolean }) => {
      const q = await queries();
      const s = q.stateAt(o.domain, o.at);
      const callers = q.callersOfRuns(s.runs);
      const callerOf = (p: number) => {
        const c = callers.get(p);
        if (c === undefined) throw new Error(`internal: the map event #${p} of a run is not stored`);
        return c;
      };
      if (g().json) {
        const payload: Record<string, unknown> = {
          domain: s.domain.name,
          profile: s.domain.profile.name,
          at: s.at,
          pages: runJson(s.runs, callerOf),
        };
        if (o.hw) payload.hardware = hwJson(q, o.domain, o.at);
        // The pages hold no bigints (runJson made their text): no replacer to call on every value.
        return out(o.hw ? json(payload) : JSON.stringify(payload, null, 2));
      }
      const r = s.runs;
      let bytes = 0n;
      for (let i = 0; i < r.n; i++) bytes += BigInt(r.count[i]!) << BigInt(r.shift[i]!);
      const notYet = s.at < s.domain.createdAt ? ` (the domain was created at event #${s.domain.createdAt})` : '';
      // Read before anything is printed: a hardware checkpoint that cannot be read leaves no half answer.
      const hw = o.hw ? hwText(q, o.domain, o.at) : undefined;
      out(`domain ${s.domain.name} (${s.domain.profile.name}, ${s.domain.profile.semantics} unmap) as of event #${s.at}: ${r.n} run(s), ${formatSize(bytes)} mapped${notYet}`);
      if (r.n) out(table(['IOVA', 'END', 'PADDR', 'PAGE', 'COUNT', 'PROT', 'MAPPED BY'], runRows(r, callerOf), { right: [4] }));
      if (hw !== undefined) out(`\n${hw}`);
    });

  function hwJson(q: Queries, domain?: string, at?: string): unknown {
    const h = q.hardware(domain, at);
    return { format: h.domain.profile.format.name, ...h.stats, invalidations: h.invalidations };
  }

  function hwText(q: Queries, domain?: string, at?: string): string {
    const h = q.hardware(domain, at);
    const f = h.domain.profile.format;
    const lines = [
      `page tables (${f.description}):`,
      table(
        ['LEVEL', 'ENTRY MAPS', 'LEAF ENTRIES', 'TABLES', 'TABLE BYTES'],
        h.stats.levels.map((l, i) => [l.name, formatSize(1n << BigInt(f.levels[i]!.shift)), String(l.entries), String(l.tables), String(l.tables * l.tableBytes)]),
        { right: [2, 3, 4] },
      ),
      `table memory: ${h.stats.tableMemoryBytes} bytes; ${h.stats.runs} run(s), ${formatSize(h.stats.mappedBytes)} mapped`,
    ];
    if (h.invalidations) lines.push(`IOTLB invalidations up to event #${h.invalidations.asOf}: ${h.invalidations.count} range(s), ${formatSize(h.invalidations.bytes)}`);
    return lines.join('\n');
  }

  program
    .command('walk')
    .description('the page-table walk the hardware does for an IOVA')
    .argument('<iova>')
    .addOption(domainOption())
    .addOption(atOption())
    .action(async (iovaText: string, o: { domain?: string; at?: string }) => {
      const iova = addr(iovaText);
      const w = (await queries()).walk(o.domain, iova, o.at);
      if (g().json) return out(json({ domain: w.domain.name, at: w.at, iova, ...(w.outside ? { outside: true } : {}), steps: w.steps.map((s) => ({ ...s, run: undefined, mappedBy: s.run?.origin.ref })) }));
      if (w.outside) {
        const bits = w.domain.profile.iovaBits;
        return out(`${hex(iova)} is beyond the ${bits}-bit IOVA space of ${w.domain.name} (which ends at ${hex((1n << BigInt(bits)) - 1n)}): no page-table walk reaches it, and a DMA there faults.`);
      }
      out(`walk of ${hex(iova)} in ${w.domain.name} (${w.domain.profile.format.name}) as of event #${w.at}:`);
      out(
        table(
          ['LEVEL', 'INDEX', 'ENTRY', 'OUTPUT'],
          w.steps.map((s) => [
            s.levelName,
            String(s.index),
            s.kind === 'page' ? `page ${formatSize(s.pageSize!)}${s.repeat! > 1 ? ` (entry ${s.repeatIndex! + 1} of ${s.repeat} repeated)` : ''}` : s.kind,
            s.output !== undefined ? `${hex(s.output)} (mapped by #${s.run!.origin.ref})` : '',
          ]),
        ),
      );
      const last = w.steps[w.steps.length - 1];
      if (last?.kind === 'invalid') out(`${hex(iova)} is not mapped: the walk ends at an invalid ${last.levelName} entry (an access here is an IO page fault).`);
    });

  program
    .command('history')
    .description('every event that touched an IOVA range, in order')
    .argument('<iova>')
    .argument('[size]', 'range size (default: one byte)')
    .addOption(domainOption())
    .addOption(atOption())
    .action(async (iovaText: string, sizeText: string | undefined, o: { domain?: string; at?: string }) => {
      const start = addr(iovaText);
      const bytes = sizeText === undefined ? 1n : size(sizeText);
      if (bytes === 0n) throw new InputError(`size ${JSON.stringify(sizeText)}: give at least one byte`);
      // A range past the end of the 64-bit space is cut there (nothing can be mapped beyond it).
      let end = start + bytes;
      if (end > 1n << 64n) end = 1n << 64n;
      const { whoText } = await queriesLib();
      const h = (await queries()).history(o.domain, start, end, o.at);
      if (g().json) return out(json(h.events.map((e) => ({ ...e }))));
      out(`history of ${hex(start)}..${hex(end)} in ${h.domain.name} up to event #${h.at}: ${h.events.length} event(s)`);
      out(table(['#', 'TIME', 'EVENT', 'WHAT', 'WHO'], h.events.map((e) => [String(e.position), e.time ?? '', e.type, eventWhat(e.body), whoText(e.who)]), { right: [0] }));
    });

  function eventWhat(b: Record<string, unknown>): string {
    if (b.inferred === 'before-trace') return `${b.iova}+${formatSize(BigInt(b.size as string))} mapped before the trace began (inferred from the unmap after it)`;
    if (typeof b.paddr === 'string') return `${b.iova}+${formatSize(BigInt(b.size as string))} -> ${b.paddr}${b.ok ? '' : ` ${b.errno}`}`;
    if (typeof b.unmapped === 'string') {
      const req = BigInt(b.size as string);
      const got = BigInt(b.unmapped);
      return `${b.iova}+${formatSize(req)} unmapped ${formatSize(got)}${got > req ? ' (OVER-UNMAP)' : ''}${b.ok ? '' : ` ${b.errno}`}`;
    }
    if (typeof b.iova === 'string') return `${b.iova}${b.device ? ` ${b.device}` : ''}`;
    if (typeof b.device === 'string') return b.device;
    return '';
  }

  program
    .command('blame')
    .description('which event made the page at an IOVA what it is, and the chain before it')
    .argument('<iova>')
    .addOption(domainOption())
    .addOption(atOption())
    .action(async (iovaText: string, o: { domain?: string; at?: string }) => {
      const { describePage, whoText } = await queriesLib();
      const b = (await queries()).blame(o.domain, addr(iovaText), o.at);
      if (g().json) return out(json(b));
      out(
        b.page
          ? `${hex(b.iova)} is mapped as of #${b.at}: ${describePage(b.page)}, by event #${b.cause!.position} (${b.cause!.body.inferred === 'before-trace' ? 'mapped before the trace began: inferred, physical address unknown' : whoText(b.cause!.who)})`
          : b.cause
            ? `${hex(b.iova)} is not mapped as of #${b.at}: removed by event #${b.cause.position} (${b.cause.type}, ${whoText(b.cause.who)})`
            : `${hex(b.iova)} was never mapped up to #${b.at}`,
      );
      if (b.chain.length) {
        out(
          table(
            ['FROM', 'TO', 'PAGES', 'MAPPED BY', 'ENDED BY'],
            b.chain.map((c) => [`#${c.began.position}`, c.ended ? `#${c.ended.position}` : 'live', describePage(c.page), `#${c.page.mappedBy}`, c.ended ? `${c.ended.type} by ${whoText(c.ended.who)}` : '']),
          ),
        );
      }
    });

  program
    .command('explain')
    .description('a plain answer: when, by whom and why this IOVA is mapped or not')
    .argument('<iova>')
    .addOption(domainOption())
    .addOption(atOption())
    .action(async (iovaText: string, o: { domain?: string; at?: string }) => {
      const e = (await queries()).explain(o.domain, addr(iovaText), o.at);
      if (g().json) return out(json({ text: e.text, blame: e.blame, findings: e.findings.map(findingJson), faults: e.faults, removed: e.removed }));
      out(e.text);
    });

  program
    .command('diff')
    .description('pages added and removed between two points')
    .argument('<from>', 'position or time')
    .argument('[to]', 'position or time (default: now)')
    .addOption(domainOption())
    .action(async (from: string, to: string | undefined, o: { domain?: string }) => {
      const { describePage } = await queriesLib();
      const d = (await queries()).diff(o.domain, from, to);
      if (g().json) return out(json(d));
      out(`${d.domain.name}: from #${d.from} to #${d.to}: ${d.added.length} run(s) added, ${d.removed.length} removed`);
      for (const p of d.removed) out(`- ${describePage(p)}  (mapped by #${p.mappedBy}, removed at #${p.validTo})`);
      for (const p of d.added) out(`+ ${describePage(p)}  (mapped by #${p.mappedBy}, since #${p.validFrom})`);
    });

  /** A finding for --json, its 64-bit values already "0x" text (thousands are printed: no replacer needed). */
  function findingJson(f: FindingView) {
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
      ...(f.step ? { stepped: f.step.verdict === 'stepped', step: f.step } : {}),
    };
  }

  type FailOn = 'over-unmap' | 'left-mapped' | 'divergence';

  program
    .command('audit')
    .description('findings: over-unmaps, left-mapped ranges, faults, divergences between the trace and the profile')
    .addArgument(new Command().createArgument('<what>', 'what to list').choices(['over-unmaps', 'left-mapped', 'faults', 'divergences']))
    .addOption(filterDomainOption())
    .option('--caller <name>', 'only this caller')
    .option('--all', 'over-unmaps: list the stepped ones too (the caller consumed the returned size; hidden by default)')
    .addOption(new Option('--fail-on <kinds...>', 'exit 1 when any such finding exists (for CI gates; over-unmap counts the harmful ones)').choices(['over-unmap', 'left-mapped', 'divergence']))
    .action(async (what: string, o: { domain?: string; caller?: string; all?: boolean; failOn?: FailOn[] }) => {
      const q = await queries({ builder: true });
      if (what === 'faults') {
        const f = q.faults(o.domain !== undefined ? { domain: o.domain } : {});
        if (g().json) out(json(f));
        else {
          out(`${f.length} IO page fault(s)`);
          if (f.length) out(table(['#', 'DOMAIN', 'IOVA', 'DEVICE', 'CAUSE', 'BY EVENT'], f.map((x) => [String(x.position), x.domain, hex(x.iova), x.device ?? '', x.cause, x.causePosition ? `#${x.causePosition}` : ''])));
        }
      } else {
        const kind = what === 'over-unmaps' ? 'over-unmap' : what === 'left-mapped' ? 'left-mapped' : 'divergence';
        const filter: Parameters<Queries['findings']>[0] = { kind };
        if (o.domain !== undefined) filter.domain = o.domain;
        if (o.caller !== undefined) filter.caller = o.caller;
        // Over-unmaps: the harmful ones unless --all; the stepped ones are counted.
        let hidden = 0;
        if (kind === 'over-unmap' && !o.all) {
          hidden = q.findings({ ...filter, stepped: true }).length;
          filter.stepped = false;
        }
        const f = q.findings(filter);
        if (g().json) out(JSON.stringify(f.map(findingJson), null, 2));
        else printFindings(what, f, hidden);
        const stale = q.staleProjections();
        if (stale && kind === 'over-unmap') process.stderr.write(`note: this ledger predates ${stale}; run 'iommu-ledger rebuild' for the verdicts\n`);
      }
      for (const k of o.failOn ?? []) {
        const filter: Parameters<Queries['findings']>[0] = { kind: k, ...(k === 'over-unmap' ? { stepped: false } : {}) };
        if (o.domain !== undefined) filter.domain = o.domain;
        if (o.caller !== undefined) filter.caller = o.caller;
        const n = q.findings(filter).length;
        if (n) throw new Findings(`--fail-on ${k}: ${n} finding(s)`);
      }
    });

  function printFindings(what: string, f: FindingView[], hidden = 0): void {
    if (what === 'over-unmaps') {
      const stepped = f.filter((x) => x.stepped).length;
      const harmful = f.length - stepped;
      out(
        hidden
          ? `${harmful} harmful over-unmap(s): unmaps that removed more than was asked, and somebody still relied on it; ${hidden} stepped one(s) hidden (the caller consumed the returned size: --all lists them)`
          : stepped
            ? `${f.length} over-unmap(s): unmaps that removed more than was asked; ${harmful} harmful, ${stepped} stepped (the caller consumed the returned size)`
            : `${f.length} over-unmap(s): unmaps that removed more than was asked`,
      );
      if (!f.length) return;
      out(
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
      );
    } else if (what === 'left-mapped') {
      out(`${f.length} unmap(s) left part of the requested range mapped`);
      if (!f.length) return;
      out(
        table(
          ['#', 'DOMAIN', 'CALLER', 'REQUESTED', 'UNMAPPED', 'STILL MAPPED', 'RESULT'],
          f.map((x) => [String(x.position), x.domain, x.caller, `${hex(x.requested.iova)}+${formatSize(x.requested.size)}`, formatSize(x.unmappedSize), x.leftMapped.map((l) => `${hex(l.iova)}+${formatSize(l.size)}`).join(', '), x.ok ? 'ok' : (x.errno ?? 'error')]),
        ),
      );
    } else {
      out(`${f.length} divergence(s): the trace's unmapped_size differs from the profile's prediction`);
      if (!f.length) return;
      out(
        table(
          ['#', 'DOMAIN', 'CALLER', 'REQUESTED', 'OBSERVED', 'PREDICTED'],
          f.map((x) => [String(x.position), x.domain, x.caller, `${hex(x.requested.iova)}+${formatSize(x.requested.size)}`, formatSize(x.unmappedSize), formatSize(x.predicted)]),
        ),
      );
      out('Many divergences usually mean a wrong --profile: try `iommu-ledger replay --profile NAME --out other.db` and compare.');
    }
  }

  program
    .command('callers')
    .description('per caller and call site: how its unmaps relate to its maps, what they do under each unmap behaviour, and what to change')
    .addOption(filterDomainOption())
    .option('--caller <name>', 'only this caller')
    .option('--examples <n>', 'worst examples per site', '3')
    .addHelpText(
      'after',
      `
Classes: exact (one whole map), spans (several whole maps), cuts (inside one map),
straddles (across a map's edge), misses (nothing mapped); OTHERS' = reached another caller's map.
Each partial unmap is tried under legacy, split and strict unmap on the pages live at that moment.

Examples:
  iommu-ledger callers
  iommu-ledger callers --caller vfio --examples 10
  iommu-ledger callers --json | jq '.[] | {caller, site, readiness, advice}'`,
    )
    .action(async (o: { domain?: string; caller?: string; examples: string }) => {
      const examples = Number(o.examples);
      if (!Number.isInteger(examples) || examples < 0) throw new InputError(`--examples ${JSON.stringify(o.examples)}: give a whole number`);
      const q = await queries();
      const stale = q.staleProjections();
      if (stale) io.err(`warning: this ledger was upgraded (${stale}); run 'iommu-ledger rebuild' to fill in the caller analysis\n`);
      const c = q.callers({ ...(o.domain !== undefined ? { domain: o.domain } : {}), ...(o.caller !== undefined ? { caller: o.caller } : {}), examples });
      if (g().json) return out(json(c));
      if (!c.length) return out(o.caller !== undefined ? `no commands by caller ${JSON.stringify(o.caller)}` : 'no map or unmap commands yet');
      out(
        table(
          ['DOMAIN', 'CALLER', 'SITE', 'MAPS', 'UNMAPS', 'EXACT', 'WHOLE MAPS', 'CUTS', 'STRADDLES', 'MISSES', "OTHERS'", 'READY'],
          c.map((x) => [x.domain, x.caller, x.site, x.maps, x.unmaps, x.exact, x.spans, x.cuts, x.straddles, x.misses, x.foreign, `${Math.round(x.readiness * 100)}%`]),
          { right: [3, 4, 5, 6, 7, 8, 9, 10, 11] },
        ),
      );
      const { exampleText } = await import('../projections/callers.js');
      for (const x of c) {
        if (x.exact + x.spans === x.unmaps && !x.foreign && !x.behaviours.legacy.leftMapped) continue;
        out('');
        out(`${x.caller}${x.site ? ` at ${x.site}` : ''} (domain ${x.domain}): ${x.verdict.join('; ')}.`);
        const b = x.behaviours;
        out(
          `  under legacy: ${b.legacy.overUnmaps} over-unmap (${formatSize(b.legacy.overBytes)}), ${b.legacy.leftMapped} leave mapped (${formatSize(b.legacy.leftBytes)});` +
            ` split: ${b.split.overUnmaps} over, ${b.split.leftMapped} leave mapped; strict: ${b.strict.refused} refused`,
        );
        for (const e of x.examples) out(`  ${exampleText(e)}`);
        if (x.advice) out(`  change: ${x.advice}`);
      }
    });

  program
    .command('verify')
    .description('walk the hash chain: report the first event that was changed, removed or reordered')
    .option('--checkpoint <file...>', 'also prove that the ledger still extends these checkpoints (files, or folders of them)')
    .option('--pubkey <pem>', 'the checkpoints must be signed by this Ed25519 public key')
    .action(async (o: { checkpoint?: string[]; pubkey?: string }) => {
      const { Ledger } = await ledgerLib();
      const cp = o.checkpoint || o.pubkey !== undefined ? await import('./checkpoint.js') : undefined;
      if (o.pubkey !== undefined && !o.checkpoint) throw new InputError('--pubkey checks the signatures of checkpoints: give --checkpoint FILE too');
      // Bad checkpoint files and keys fail (exit 2) before the chain is walked.
      const loaded = cp && o.checkpoint ? cp.loadCheckpoints(o.checkpoint, o.pubkey) : undefined;
      const ledger = new Ledger(g().db, { mustExist: true });
      try {
        const r = await withProgress('verify', async (tick) => ledger.store.verify((n) => {
            tick(n, ledger.lastPosition);
            collectGarbage();
          }));
        // Every page of the file too: damage outside the events (a projection's page) fails
        // here, and the damage report follows (exit 1; events/damage.ts).
        (await import('../events/damage.js')).assertFileIntact(ledger.db, g().db);
        const checks = cp && loaded ? cp.checkCheckpoints(ledger.db, loaded, r) : undefined;
        if (g().json) out(json(checks ? { ...r, checkpoints: checks } : r));
        else out([r.message, ...(checks ?? []).map((c) => c.message)].join('\n'));
        const failed = (checks ?? []).filter((c) => !c.ok);
        const more = failed.length > 1 ? ` (${failed.length} of ${checks!.length} checkpoints fail)` : '';
        if (!r.ok) throw new Findings(`the hash chain is broken${failed.length ? `; ${failed.length} checkpoint(s) not confirmed` : ''}`);
        if (failed.length) throw new Findings(`${failed[0]!.message}${more}`);
      } finally {
        ledger.close();
      }
    });

  program
    .command('checkpoint')
    .description('write the head of the verified hash chain (position, hash, time), optionally signed, to keep outside the ledger')
    .option('--out <file>', 'write it to this new file, or into this folder (default: print it)')
    .option('--key <pem>', 'sign it with this Ed25519 private key (openssl genpkey -algorithm ed25519)')
    .addHelpText(
      'after',
      `
A later 'iommu-ledger verify --checkpoint FILE' proves that the ledger still holds the events the
checkpoint covers, unchanged: it catches a cut-off tail, a rewrite re-hashed from the edit on, and
a fork. Keep checkpoints where whoever can write the ledger cannot (another machine, a CI log).

Examples:
  iommu-ledger checkpoint --out checkpoints/
  iommu-ledger checkpoint --key signing.pem --out cp.json
  iommu-ledger verify --checkpoint cp.json --pubkey signing.pub.pem`,
    )
    .action(async (o: { out?: string; key?: string }) => {
      const { Ledger } = await ledgerLib();
      const { takeCheckpoint } = await import('./checkpoint.js');
      const ledger = new Ledger(g().db, { mustExist: true });
      try {
        // The chain is walked first: a checkpoint must not vouch for a history already tampered with.
        const r = await withProgress('verify', async (tick) => ledger.store.verify((n) => {
            tick(n, ledger.lastPosition);
            collectGarbage();
          }));
        if (!r.ok) {
          out(r.message);
          throw new Findings(`the hash chain is broken at position ${r.firstBad}: no checkpoint written (it would vouch for a tampered history); see 'iommu-ledger verify'`);
        }
        const t = takeCheckpoint(ledger.db, { position: r.events, hash: r.head! }, o);
        if (g().json || t.file === undefined) return out(t.text);
        out(`checkpoint of ${g().db} at position ${t.checkpoint.position} (head ${t.checkpoint.head})${t.checkpoint.signature ? `, signed with key ${t.checkpoint.signature.key.slice(0, 16)}…` : ''}, written to ${t.file}`);
      } finally {
        ledger.close();
      }
    });

  program
    .command('rebuild')
    .description('recompute every projection from the events alone (after verifying the hash chain)')
    .option('--accept-broken-chain', 'rebuild even when the hash chain is broken: the projections then follow the events as they are now')
    .action(async (o: { acceptBrokenChain?: boolean }) => {
      const { Ledger } = await ledgerLib();
      const ledger = new Ledger(g().db, { mustExist: true });
      try {
        const r = await withProgress('rebuild', async (tick) => ledger.rebuild((n, total) => {
            tick(n, total);
            collectGarbage();
          }, { acceptBrokenChain: o.acceptBrokenChain ?? false }));
        if (g().json) return out(json({ events: r.events, mismatches: r.mismatches, chain: { ok: r.chain.ok, ...(r.chain.ok ? {} : { firstBad: r.chain.firstBad, problem: r.chain.problem }), message: r.chain.message } }));
        if (!r.chain.ok) io.err(`iommu-ledger: warning: rebuilt from a broken hash chain (--accept-broken-chain): ${r.chain.message}; the projections follow the events as they are now\n`);
        out(`rebuilt the projections from ${r.events} events` + (r.mismatches ? `; ${r.mismatches} stored outcome(s) differ from what the core computes now` : '; every stored outcome matches the core'));
      } finally {
        ledger.close();
      }
    });

  program
    .command('replay')
    .description('what if: re-run the ledger\'s commands under another profile or unmap behaviour into a new ledger, and compare')
    .addOption(new Option('--semantics <s>', 'unmap behaviour to use').choices([...SEMANTICS]))
    .option('--profile <name>', 'hardware profile to use')
    .requiredOption('--out <path>', 'the new ledger file (the original is never changed)')
    .addOption(new Option('--domain <name>', 'change the profile or behaviour of this domain only (every domain is replayed)'))
    .action(async (o: { semantics?: Semantics; profile?: string; out: string; domain?: string }) => {
      if (!o.semantics && !o.profile) throw new InputError('replay: give --semantics and/or --profile');
      const { replayLedger } = await import('./replay.js');
      const r = await replayLedger(g().db, o.out, o);
      if (g().json) return out(json(r));
      out(r.report.join('\n'));
    });

  program
    .command('migrate')
    .description('make callers symmetric (unmap exactly what was mapped) by a script or a built-in strategy, into a new ledger, verified by replay under strict unmap')
    .option('--script <file>', 'a migration module (TypeScript or JavaScript) whose default export is defineMigration({...})')
    .option('--strategy <name>', 'a built-in strategy for every command: split-maps, widen-unmaps, unmap-as-mapped (callers that step by the returned size), flag (or keep: copy as is)')
    .option('--caller <name>', "only this caller's commands are migrated; the others are kept as they are")
    .requiredOption('--out <path>', 'the migrated ledger (a new file; the source is never changed)')
    .option('--report <stem>', 'write the report to STEM.md and STEM.json (default: next to --out)')
    .option('--fail-on-regression', 'exit 1 if a check finds a regression (for CI)')
    .addHelpText(
      'after',
      `
Checks (printed, and in the report), per caller and in total: 1. no map the source stored as ok
is refused; 2. no unmap that removed something removes nothing (unless the same caller's earlier
unmap removed those pages ahead of the source), strict unmap refuses none the source carried out,
and none removes pages the source still maps beyond the steps of the same teardown; 3. each
domain maps the same pages at the end; 4. every fault hits a mapped page in both ledgers or in
neither; 5. every caller believes the same ranges mapped at the end; 6. nothing flagged,
over-unmapped or left mapped. A difference that follows from a bug fixed, or from a command kept
as it is, is no regression. Also the cost.

Examples:
  iommu-ledger migrate --strategy split-maps --out migrated.db
  iommu-ledger migrate --strategy widen-unmaps --caller kvm --out migrated.db --fail-on-regression
  iommu-ledger migrate --strategy unmap-as-mapped --caller vfio-dma --out migrated.db
  iommu-ledger --db iommu-ledger-demo.db migrate --script scripts/migrations/demo-symmetric.ts --out migrated.db`,
    )
    .action(async (o: { script?: string; strategy?: string; caller?: string; out: string; report?: string; failOnRegression?: boolean }) => {
      const { runMigrate } = await import('./migrate.js');
      const r = await runMigrate(g().db, o);
      if (g().json) out(json(r.report));
      else out(r.summary.join('\n'));
      if (o.failOnRegression && !r.result.passed) throw new Findings('--fail-on-regression: the migrated history does not verify (see the report)');
    });

  program
    .command('profiles')
    .description('the built-in hardware profiles')
    .action(() => {
      if (g().json) return out(json(BUILTIN_PROFILES.map((p) => ({ ...p, pageSizes: pageSizes(p.pgsizeBitmap).map(formatSize) }))));
      out(
        table(
          ['PROFILE', 'PAGE SIZES', 'IOVA BITS', 'UNMAP', 'FORMAT', 'KERNEL'],
          BUILTIN_PROFILES.map((p) => {
            const sizes = pageSizes(p.pgsizeBitmap).map(formatSize);
            return [p.name, sizes.length > 6 ? `${sizes[0]}..${sizes[sizes.length - 1]} (${sizes.length} sizes)` : sizes.join('|'), String(p.iovaBits), p.semantics, p.format.name, p.kernelRef];
          }),
        ),
      );
    });

  program
    .command('demo')
    .description('build a ledger from the bundled examples and show what it finds (the first thing to run)')
    .option('--out <path>', 'where to write the demo ledger', './iommu-ledger-demo.db')
    .action(async (o: { out: string }) => {
      const { runDemo } = await import('./demo.js');
      await runDemo(o.out, out, g().json ?? false);
    });
  return program;
}

/** Errors that mean the ledger's content is broken (exit 1, like a failed verify): named, so their layers need not load. */
const LEDGER_BROKEN = new Set(['CorruptEventError', 'CorruptProjectionError', 'BrokenChainError']);

/** Where a run writes: the process's streams, or a test's buffers. */
export interface IO {
  out: (s: string) => void;
  err: (s: string) => void;
}

const processIO: IO = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

/** Runs one command line (arguments after the program name); resolves to the exit code. */
export async function run(argv: string[], io: IO = processIO): Promise<number> {
  const program = buildProgram(io);
  // The subcommand that runs: a fault's message says what it left as it was.
  let command: string | undefined;
  program.hook('preAction', (_program, action) => {
    command = action.name();
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    // A finding, or a ledger found broken: an event changed outside iommu-ledger, a projection that
    // cannot be read (`rebuild` recomputes it), a hash chain `rebuild` refuses to follow.
    if (e instanceof Findings || (e instanceof Error && LEDGER_BROKEN.has(e.name))) {
      io.err(`iommu-ledger: ${(e as Error).message}\n`);
      return 1;
    }
    if (e instanceof Error && USER_ERRORS.has(e.name)) {
      io.err(`iommu-ledger: ${(e as Error).message}\n`);
      return 2;
    }
    // A projection table or index dropped outside iommu-ledger (a question reads it): `rebuild` recreates it.
    if (e instanceof Error && /^(no such (table|index|column): |table \w+ has no column named )/.test(e.message)) {
      const { missingProjection, missingProjectionError } = await import('../projections/corrupt.js');
      const missing = missingProjection(e.message);
      if (missing) {
        io.err(`iommu-ledger: ${missingProjectionError(program.opts<Globals>().db, missing).message}\n`);
        return 1;
      }
    }
    // Faults of the disk, the file system or the ledger file, mapped in events/io-errors.ts: the
    // ledger was busy, the disk is full, an I/O error (75: run it again); read-only for this user
    // (2); the file is damaged (1: `verify` says what can still be read).
    const { describeFault } = await import('../events/io-errors.js');
    const fault = describeFault(e, { db: program.opts<Globals>().db, ...(command !== undefined ? { command } : {}) });
    if (fault?.kind === 'damaged' && command === 'verify') {
      const { damageReport } = await import('../events/damage.js');
      let r: ReturnType<typeof damageReport> | undefined;
      try {
        r = damageReport(fault.path, fault.reason);
      } catch {
        // the report could not be made: the fault's own line still says what happened
      }
      if (r) {
        io.out(`${program.opts<Globals>().json ? JSON.stringify(r, null, 2) : r.lines.join('\n')}\n`);
        io.err(`iommu-ledger: ${r.message}\n`);
        return 1;
      }
    }
    if (fault) {
      io.err(`iommu-ledger: ${fault.message}\n`);
      return fault.exitCode;
    }
    io.err(`iommu-ledger: internal error: ${(e as Error).stack ?? String(e)}\n`);
    return 70;
  }
}


/** A reader that goes away early (`| head`) is not an error. */
export function quietOnClosedPipe(): void {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}
