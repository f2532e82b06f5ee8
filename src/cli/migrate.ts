/**
 * `iommu-ledger migrate`: loads a migration (a script, or a built-in strategy), runs it into a
 * new ledger, and writes the report next to it (Markdown and JSON).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LedgerOpenError } from '../events/db.js';
import { builtinMigration, checkMigration, STRATEGIES, type Migration, type StrategyName } from '../migrate/define.js';
import { migrate, type MigrationResult } from '../migrate/engine.js';
import { withWords } from './render/callers.js';
import { stepText } from './render/verdicts.js';
import { buildReport, callerLines, checkLines, markdown, regressionLines, reportJson, type Report } from '../migrate/report.js';
import { Queries } from '../projections/queries.js';
import { InputError } from './errors.js';
import { discardTemporary, publishTemporary, temporaryPathFor } from './newfile.js';
import { collectGarbage } from './gc.js';
import { withProgress } from './progress.js';

export interface MigrateCliOptions {
  script?: string;
  strategy?: string;
  caller?: string;
  out: string;
  report?: string;
}

/** Loads a migration script (.ts through tsx, or .js/.mjs); its default export is the migration. */
export async function loadMigration(file: string): Promise<Migration> {
  const path = resolve(file);
  if (!existsSync(path)) throw new InputError(`--script ${file}: no such file`);
  let mod: Record<string, unknown>;
  try {
    if (/\.[mc]?ts$/.test(path)) {
      const { tsImport } = await import('tsx/esm/api');
      mod = (await tsImport(pathToFileURL(path).href, import.meta.url)) as Record<string, unknown>;
    } else {
      mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    }
  } catch (e) {
    throw new InputError(`--script ${file}: cannot load it: ${(e as Error).message.split('\n')[0]}`);
  }
  // The default export, or one named `migration`; tsx may wrap a module once more in `default`.
  const isMigration = (x: unknown): x is object => !!x && typeof x === 'object' && 'rules' in x;
  const seen: unknown[] = [mod.default, mod.migration];
  for (const x of [mod.default, mod.migration])
    if (x && typeof x === 'object') seen.push((x as Record<string, unknown>).default, (x as Record<string, unknown>).migration);
  const m = seen.find(isMigration) ?? seen.find((x) => !!x && typeof x === 'object' && 'name' in x);
  if (m === undefined) throw new InputError(`--script ${file}: export the migration as the default export (export default defineMigration({...}))`);
  return checkMigration(m, file);
}

export async function runMigrate(db: string, o: MigrateCliOptions): Promise<{ result: MigrationResult; report: Report; files: string[]; summary: string[] }> {
  if (!o.script === !o.strategy) throw new InputError('migrate: give --script FILE or --strategy NAME (one of them)');
  // The new ledger is written under a temporary name and renamed to --out when complete, and a
  // script that calls process.exit (when loaded, or in a transform) is stopped: it cannot end
  // the run with its own exit code and an empty --out.
  const tmp = temporaryPathFor(o.out);
  const trap = trapExit(o.script ?? o.strategy!, o.out, tmp);
  try {
    return await migrateInto(db, o, tmp, trap);
  } finally {
    trap.restore();
  }
}

/** While a migration runs, process.exit throws instead of exiting (see runMigrate). */
function trapExit(script: string, out: string, tmp: string) {
  const real = process.exit;
  const state: { code?: string } = {};
  const why = () =>
    `--script ${script} called process.exit(${state.code}) during the migration: nothing was written to ${out}; a migration script returns commands and must not end the process`;
  process.exit = ((code?: number | string | null) => {
    state.code ??= code === undefined || code === null ? '' : String(code);
    throw new InputError(why());
  }) as typeof process.exit;
  // An exit that gets past the trap (process.reallyExit): no temporary file left, and no exit 0.
  const onExit = () => {
    discardTemporary(tmp);
    if (!process.exitCode) process.exitCode = 2;
    process.stderr.write(`iommu-ledger: the migration ended the process before it was done: nothing was written to ${out}\n`);
  };
  process.on('exit', onExit);
  return {
    /** Throws when the script called process.exit, even if it caught what that threw. */
    check: () => {
      if (state.code !== undefined) throw new InputError(why());
    },
    restore: () => {
      process.exit = real;
      process.off('exit', onExit);
    },
  };
}

async function migrateInto(
  db: string,
  o: MigrateCliOptions,
  tmp: string,
  trap: ReturnType<typeof trapExit>,
): Promise<{ result: MigrationResult; report: Report; files: string[]; summary: string[] }> {
  let m: Migration;
  if (o.strategy) {
    if (!STRATEGIES.includes(o.strategy as StrategyName)) throw new InputError(`--strategy ${JSON.stringify(o.strategy)}: one of ${STRATEGIES.join(', ')}`);
    m = builtinMigration(o.strategy as StrategyName);
  } else {
    try {
      m = await loadMigration(o.script!);
    } finally {
      trap.check(); // a script that exits as it is loaded: said as such, not as a load failure
    }
  }
  const stem = o.report ?? o.out.replace(/\.db$/, '') + '.report';
  if (!existsSync(dirname(resolve(stem)))) throw new InputError(`--report ${stem}: the folder ${dirname(resolve(stem))} does not exist`);
  // The source is never changed, not even upgraded: it is opened read-only throughout.
  let qs0: Queries;
  try {
    qs0 = new Queries(db, { readonly: true });
  } catch (e) {
    if (e instanceof LedgerOpenError && e.olderSchema) {
      throw new InputError(
        `${e.olderSchema.path} has schema ${e.olderSchema.version}: migrate never changes its source; upgrade it first with 'iommu-ledger --db ${db} rebuild' (on a copy, if this file must stay as it is)`,
      );
    }
    throw e;
  }
  const stale = qs0.staleProjections();
  qs0.close();
  // Progress on a terminal, and a full collection now and then: the migration streams, but V8
  // lets garbage pile up for hundreds of megabytes before it collects on its own.
  if (existsSync(o.out)) throw new InputError(`${o.out} exists: migrate writes a new ledger; choose another --out or remove it`);
  const result = await withProgress('migrate', (tick) =>
    migrate(db, tmp, m, {
      ...(o.caller !== undefined ? { caller: o.caller } : {}),
      stepText,
      onProgress: (done, total) => {
        tick(done, total);
        collectGarbage();
      },
    }),
  ).catch((e: unknown) => {
    trap.check(); // the engine names a transform that threw; an exit is said as such
    throw e;
  });
  try {
    trap.check();
    publishTemporary(tmp, o.out);
  } catch (e) {
    discardTemporary(tmp);
    throw e;
  }
  result.out = o.out;
  const qs = new Queries(db, { readonly: true });
  const qo = new Queries(o.out);
  let report: Report;
  try {
    report = buildReport(result, qs.callers().map(withWords), qo.callers().map(withWords), stale);
  } finally {
    qs.close();
    qo.close();
  }
  const files = [`${stem}.md`, `${stem}.json`];
  writeFileSync(files[0]!, markdown(report));
  writeFileSync(files[1]!, reportJson(report));
  const summary = [
    ...(stale ? [`warning: ${db} was upgraded (${stale}) and not rebuilt: the 'before' caller analysis is incomplete; run 'iommu-ledger rebuild' first`] : []),
    `migrated ${result.sourceEvents} events of ${db} by '${result.migration}'${result.scope !== undefined ? ` (caller ${result.scope} only)` : ''} into ${o.out}: ${result.migratedEvents} events (the source is unchanged)`,
    `strategies: ${
      Object.entries(result.strategies)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none'
    }`,
    ...checkLines(result),
    ...regressionLines(result, 3).map((l) => `  ${l}`),
    ...callerLines(result).map((l) => `  ${l}`),
    ...report.sites
      .filter((s) => s.before && (s.before.readiness < 1 || s.before.foreign))
      .map(
        (s) =>
          `  ${s.caller}${s.site ? ` at ${s.site}` : ''}: readiness ${Math.round(s.before!.readiness * 100)}% -> ${s.after ? `${Math.round(s.after.readiness * 100)}%` : '-'}; change: ${s.change}`,
      ),
    `${result.passed ? 'PASSED' : 'FAILED'}: report in ${files.join(' and ')}`,
  ];
  return { result, report, files, summary };
}
