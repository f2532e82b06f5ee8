/**
 * Migration scripts: per caller or call site, how its map and unmap commands become symmetric
 * (every unmap removes exactly whole maps). A script is a TypeScript (or JavaScript) module
 * whose default export is `defineMigration({...})`; see docs/migrate.md.
 */
import { LedgerFault } from '../core/errors.js';

/**
 * Built-in strategies. `unmap-as-mapped` is for callers that step by the returned size (VFIO's
 * teardown): each unmap removes the whole maps the source's unmap removed pages of. `keep`
 * leaves commands as they are and does not report them.
 */
export type StrategyName = 'split-maps' | 'widen-unmaps' | 'unmap-as-mapped' | 'flag' | 'keep';
export const STRATEGIES: readonly StrategyName[] = ['split-maps', 'widen-unmaps', 'unmap-as-mapped', 'flag', 'keep'];

/** A command a transform emits (who/when default to the source command's). */
export interface OutCommand {
  op: 'map' | 'unmap';
  iova: bigint;
  size: bigint;
  /** Maps only. */
  paddr?: bigint;
  prot?: number;
  caller?: string;
  site?: string;
}

/** A map or unmap command of the source ledger, as a transform sees it. */
export interface SourceCommand extends OutCommand {
  /** Its position in the source ledger. */
  position: number;
  domain: string;
  task?: string;
  pid?: number;
  time?: string;
  /** Unmaps: the bytes the source's unmap removed, as stored (what the kernel reported, when imported from a trace; 0 for a refused unmap). */
  unmapped?: bigint;
}

/** A map alive in the migrated history. */
export interface LiveMap {
  /** The map's position in the migrated ledger. */
  position: number;
  iova: bigint;
  size: bigint;
  paddr: bigint;
  prot: number;
  caller?: string;
  site?: string;
}

export interface MigrationContext {
  /** Maps alive in the migrated history (so far) that the range touches, in IOVA order. */
  mapsIn(iova: bigint, size: bigint): LiveMap[];
  /** For a map: the addresses inside it where later unmaps begin or end (from a first pass). */
  cutsOf(cmd: SourceCommand): bigint[];
  /** The built-in strategies, to combine in a transform of one's own. */
  splitMaps(cmd: SourceCommand): OutCommand[];
  widenUnmaps(cmd: SourceCommand): OutCommand[];
  /**
   * For an unmap: one unmap of each whole map (as it was mapped) alive in the migrated history
   * that the pages the source's unmap removed touch; none when they touch no live map (an
   * earlier whole unmap removed them) or when the source removed nothing. A map of another
   * caller among them is not unmapped: the command is flagged instead. A map comes back unchanged.
   */
  unmapAsMapped(cmd: SourceCommand): OutCommand[];
  /** Keep the command as it is and report it as a violation (with a reason). */
  flag(cmd: SourceCommand, reason?: string): OutCommand[];
}

/** Returns the commands to issue instead (an empty list drops the command). */
export type Transform = (cmd: SourceCommand, ctx: MigrationContext) => OutCommand[];

export type Matcher = string | RegExp | ((value: string) => boolean);

export interface Rule {
  /** Which commands the rule is for; every given matcher must match. None: every command. */
  caller?: Matcher;
  site?: Matcher;
  domain?: Matcher;
  strategy: StrategyName | Transform;
}

export interface Migration {
  name: string;
  description?: string;
  /** The first rule that matches a command decides; commands no rule matches are kept as they are. */
  rules: Rule[];
}

export class MigrationError extends LedgerFault {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'MigrationError';
  }
}

/** Types a migration and checks its shape (a typo in a strategy name fails here, not mid-way). */
export function defineMigration(m: Migration): Migration {
  return checkMigration(m, 'defineMigration');
}

export function checkMigration(m: unknown, where: string): Migration {
  if (!m || typeof m !== 'object') throw new MigrationError(`${where}: a migration is an object { name, rules: [...] }`);
  const o = m as Record<string, unknown>;
  if (typeof o.name !== 'string' || !o.name) throw new MigrationError(`${where}: name: give the migration a name (a string)`);
  if (!Array.isArray(o.rules) || o.rules.length === 0) throw new MigrationError(`${where}: rules: give at least one rule, e.g. { strategy: 'split-maps' }`);
  o.rules.forEach((r: unknown, i) => {
    const at = `${where}: rules[${i}]`;
    if (!r || typeof r !== 'object') throw new MigrationError(`${at}: a rule is an object { caller?, site?, domain?, strategy }`);
    const rule = r as Record<string, unknown>;
    for (const k of Object.keys(rule)) {
      if (!['caller', 'site', 'domain', 'strategy'].includes(k)) throw new MigrationError(`${at}.${k}: unknown field (caller, site, domain, strategy)`);
    }
    for (const k of ['caller', 'site', 'domain'] as const) {
      const v = rule[k];
      if (v !== undefined && typeof v !== 'string' && !(v instanceof RegExp) && typeof v !== 'function') {
        throw new MigrationError(`${at}.${k}: a string, a RegExp or a function`);
      }
    }
    const s = rule.strategy;
    if (typeof s !== 'function' && !STRATEGIES.includes(s as StrategyName)) {
      throw new MigrationError(`${at}.strategy: ${JSON.stringify(s)} is not a strategy (${STRATEGIES.join(', ')}, or a function)`);
    }
  });
  return m as Migration;
}

function matches(m: Matcher | undefined, v: string): boolean {
  if (m === undefined) return true;
  if (typeof m === 'string') return m === v;
  if (m instanceof RegExp) return m.test(v);
  return m(v);
}

/** The rule for a command, and its label for reports ('split-maps', or 'custom:rules[2]'). */
export function ruleFor(m: Migration, cmd: { domain: string; caller?: string; site?: string }): { strategy: StrategyName | Transform; label: string } {
  for (let i = 0; i < m.rules.length; i++) {
    const r = m.rules[i]!;
    if (matches(r.caller, cmd.caller ?? '') && matches(r.site, cmd.site ?? '') && matches(r.domain, cmd.domain)) {
      return { strategy: r.strategy, label: typeof r.strategy === 'string' ? r.strategy : `custom:rules[${i}]` };
    }
  }
  return { strategy: 'keep', label: 'keep' };
}

/** A migration of one built-in strategy for every command (or one caller's). */
export function builtinMigration(strategy: StrategyName): Migration {
  return { name: strategy, rules: [{ strategy }] };
}
