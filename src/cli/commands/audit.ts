/** `audit`: the findings (over-unmaps, left-mapped ranges, faults, divergences); `--fail-on` gates CI. */
import { Command, Option } from 'commander';
import type { FindingView, Queries } from '../../projections/queries.js';
import { refusalOf, type Refusal } from '../../projections/refusals.js';
import { filterDomainOption, Findings, type Context } from '../context.js';
import { findingJson, findingsText, faultsText, refusedJson, refusedText } from '../render/findings.js';
import { json } from '../render/format.js';

type FailOn = 'over-unmap' | 'left-mapped' | 'divergence' | 'refused-unmap';

/** The left-mapped findings the driver refused (projections/refusals.ts). */
function refused(q: Queries, o: { domain?: string; caller?: string }): Array<{ finding: FindingView; refusal: Refusal }> {
  const profiles = new Map(q.domains().map((d) => [d.name, d.profile]));
  const filter: Parameters<Queries['findings']>[0] = { kind: 'left-mapped' };
  if (o.domain !== undefined) filter.domain = o.domain;
  if (o.caller !== undefined) filter.caller = o.caller;
  return q.findings(filter).flatMap((finding) => {
    const profile = profiles.get(finding.domain);
    const refusal = profile && refusalOf(finding, profile);
    return refusal ? [{ finding, refusal }] : [];
  });
}

export function register(program: Command, { g, out, queries }: Context): void {
  program
    .command('audit')
    .description('findings: over-unmaps, left-mapped ranges, unmaps the driver refused, faults, divergences between the trace and the profile')
    .addArgument(new Command().createArgument('<what>', 'what to list').choices(['over-unmaps', 'left-mapped', 'refused-unmaps', 'faults', 'divergences']))
    .addOption(filterDomainOption())
    .option('--caller <name>', 'only this caller')
    .option('--all', 'over-unmaps: list the stepped ones too (the caller consumed the returned size; hidden by default)')
    .addOption(
      new Option('--fail-on <kinds...>', 'exit 1 when any such finding exists (for CI gates; over-unmap counts the harmful ones)').choices([
        'over-unmap',
        'left-mapped',
        'divergence',
        'refused-unmap',
      ]),
    )
    .action(async (what: string, o: { domain?: string; caller?: string; all?: boolean; failOn?: FailOn[] }) => {
      const q = await queries({ builder: true });
      if (what === 'refused-unmaps') {
        const f = refused(q, o);
        if (g().json) out(JSON.stringify(f.map(refusedJson), null, 2));
        else for (const block of refusedText(f)) out(block);
      } else if (what === 'faults') {
        const f = q.faults(o.domain !== undefined ? { domain: o.domain } : {});
        if (g().json) out(json(f));
        else for (const block of faultsText(f)) out(block);
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
        else for (const block of findingsText(what, f, hidden)) out(block);
        const stale = q.staleProjections();
        if (stale && kind === 'over-unmap') process.stderr.write(`note: this ledger predates ${stale}; run 'iommu-ledger rebuild' for the verdicts\n`);
      }
      for (const k of o.failOn ?? []) {
        if (k === 'refused-unmap') {
          const n = refused(q, o).length;
          if (n) throw new Findings(`--fail-on ${k}: ${n} finding(s)`);
          continue;
        }
        const filter: Parameters<Queries['findings']>[0] = { kind: k, ...(k === 'over-unmap' ? { stepped: false } : {}) };
        if (o.domain !== undefined) filter.domain = o.domain;
        if (o.caller !== undefined) filter.caller = o.caller;
        const n = q.findings(filter).length;
        if (n) throw new Findings(`--fail-on ${k}: ${n} finding(s)`);
      }
    });
}
