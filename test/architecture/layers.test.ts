/**
 * Imports run one way (docs/architecture.md, "Layers"): core <- events <- projections <- migrate
 * <- cli, with src/import beside src/events (only import/store.ts, the ledger stage, uses
 * src/projections). So the read layer cannot borrow the CLI's sentences (issue 15): `Queries`,
 * the caller analysis and the verdict counts return data, and only src/cli/render words it.
 *
 * Every relative import of every file under src/ is checked, static, dynamic (`import()`) and
 * type-only, as TypeScript's pre-processor lists them (comments and strings do not count).
 * What fails is named `FILE imports SPECIFIER (LAYER)`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = join(import.meta.dirname, '..', '..', 'src');

/** What each layer may import, besides itself. */
const ALLOWED: Record<string, readonly string[]> = {
  core: [],
  events: ['core'],
  import: ['core', 'events'],
  projections: ['core', 'events'],
  migrate: ['core', 'events', 'projections'],
  cli: ['core', 'events', 'import', 'projections', 'migrate'],
};
/** The one module of src/import that uses src/projections: the ledger stage. */
const EXCEPTIONS: Record<string, readonly string[]> = { [join('import', 'store.ts')]: ['projections'] };

const layerOf = (path: string) => relative(SRC, path).split(sep)[0]!;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

describe('layers', () => {
  const files = sources(SRC);

  it('every file under src/ is in a known layer', () => {
    expect(files.length).toBeGreaterThan(50);
    expect([...new Set(files.map(layerOf))].filter((l) => !(l in ALLOWED) && !l.endsWith('.ts'))).toEqual([]);
  });

  it('no import runs back up: nothing below src/cli imports it (its renderers included), nor a layer above its own', () => {
    const found: string[] = [];
    for (const file of files) {
      const from = layerOf(file);
      if (!(from in ALLOWED)) continue;
      const allowed = [from, ...ALLOWED[from]!, ...(EXCEPTIONS[relative(SRC, file)] ?? [])];
      for (const { fileName } of ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles) {
        if (!fileName.startsWith('.')) continue;
        const to = layerOf(resolve(dirname(file), fileName));
        if (!allowed.includes(to)) found.push(`${relative(SRC, file)} imports ${fileName} (${to})`);
      }
    }
    expect(found).toEqual([]);
  });
});
