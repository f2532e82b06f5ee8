/**
 * `iommu-ledger migrate`: loads a migration (a script, or a built-in strategy), runs it into a
 * new ledger, and writes the report next to it (Markdown and JSON).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { builtinMigration, checkMigration, STRATEGIES, type Migration, type StrategyName } from '../migrate/define.js';
import { migrate, type MigrationResult } from '../migrate/engine.js';
import { buildReport, callerLines, checkLines, markdown, regressionLines, reportJson, type Report } from '../migrate/report.js';
import { Queries } from '../projections/queries.js';
import { InputError } from './errors.js';
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
  for (const x of [mod.default, mod.migration]) if (x && typeof x === 'object') seen.push((x as Record<string, unknown>).default, (x as Record<string, unknown>).migration);
  const m = seen.find(isMigration) ?? seen.find((x) => !!x && typeof x === 'object' && 'name' in x);
  if (m === undefined) throw new InputError(`--script ${file}: export the migration as the default export (export default defineMigration({...}))`);
  return checkMigration(m, file);
}

export async function runMigrate(db: string, o: MigrateCliOptions): Promise<{ result: MigrationResult; report: Report; files: string[]; summary: string[] }> {
  if (!o.script === !o.strategy) throw new InputError('migrate: give --script FILE or --strategy NAME (one of them)');
  let m: Migration;
  if (o.strategy) {
    if (!STRATEGIES.includes(o.strategy as StrategyName)) throw new InputError(`--strategy ${JSON.stringify(o.strategy)}: one of ${STRATEGIES.join(', ')}`);
    m = builtinMigration(o.strategy as StrategyName);
  } else m = await loadMigration(o.script!);
  const stem = o.report ?? o.out.replace(/\.db$/, '') + '.report';
  if (!existsSync(dirname(resolve(stem)))) throw new InputError(`--report ${stem}: the folder ${dirname(resolve(stem))} does not exist`);
  // The source is never changed, not even upgraded: it is opened read-only throughout.
  let qs0: Queries;
  try {
    qs0 = new Queries(db, { readonly: true });
  } catch (e) {
    if ((e as Error).name === 'LedgerOpenError' && /has schema/.test((e as Error).message)) {
      throw new InputError(`${(e as Error).message.split(';')[0]}: migrate never changes its source; upgrade it first with 'iommu-ledger --db ${db} rebuild' (on a copy, if this file must stay as it is)`);
    }
    throw e;
  }
  const stale = qs0.staleProjections();
  qs0.close();
  // Progress on a terminal, and a full collection now and then: the migration streams, but V8
  // lets garbage pile up for hundreds of megabytes before it collects on its own.
  const result = await withProgress('migrate', (tick) =>
    migrate(db, o.out, m, {
      ...(o.caller !== undefined ? { caller: o.caller } : {}),
      onProgress: (done, total) => {
        tick(done, total);
        collectGarbage();
      },
    }),
  );
  const qs = new Queries(db, { readonly: true });
  const qo = new Queries(o.out);
  let report: Report;
  try {
    report = buildReport(result, qs.callers(), qo.callers(), stale);
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
    `strategies: ${Object.entries(result.strategies).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
    ...checkLines(result),
    ...regressionLines(result, 3).map((l) => `  ${l}`),
    ...callerLines(result).map((l) => `  ${l}`),
    ...report.sites
      .filter((s) => s.before && (s.before.readiness < 1 || s.before.foreign))
      .map((s) => `  ${s.caller}${s.site ? ` at ${s.site}` : ''}: readiness ${Math.round(s.before!.readiness * 100)}% -> ${s.after ? `${Math.round(s.after.readiness * 100)}%` : '-'}; change: ${s.change}`),
    `${result.passed ? 'PASSED' : 'FAILED'}: report in ${files.join(' and ')}`,
  ];
  return { result, report, files, summary };
}
