/**
 * SQL has an owner (issue 15): the command line (`src/cli`) and the migrations to symmetric unmap
 * (`src/migrate`) run no SQL and hold no database handle of their own; they ask the modules that
 * own the tables (`src/events`, `src/projections`: the event store, the ledger, the queries,
 * `projections/meta.ts`, `projections/sources.ts`). Nothing is allowed here, by file or by line.
 *
 * What fails, named FILE:LINE:
 * - a call of `.prepare(`, `.pragma(` or `.exec(` (a RegExp's `exec` excepted);
 * - a `.db` property that is not a string: a better-sqlite3 handle (`ledger.db`, `q.db`); the
 *   global option `--db` (`g().db`, a path) is a string and passes;
 * - any other value whose type is one of better-sqlite3 or Kysely (a `DB` parameter, a statement,
 *   `q.k`, the query builder);
 * - an import of `better-sqlite3` or `kysely`.
 *
 * The source is read with the TypeScript compiler, so comments, strings and regular expressions
 * do not count, and the type of each `.db` and `.exec(` receiver is known.
 */
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const SCANNED = /[\\/]src[\\/](cli|migrate)[\\/].*\.ts$/;
const SQL_CALLS = new Set(['prepare', 'pragma', 'exec']);
const FORBIDDEN_MODULES = [/^better-sqlite3(\/|$)/, /^kysely(\/|$)/];
/** Where the types of a database handle are declared. */
const HANDLE_TYPES = /[\\/]node_modules[\\/](@types[\\/]better-sqlite3|better-sqlite3|kysely)[\\/]/;

/** A property read, or a name that stands for a value (not a property's name, an import's, a type's). */
function isValue(node: ts.Node): boolean {
  if (ts.isPropertyAccessExpression(node)) return true;
  if (!ts.isIdentifier(node)) return false;
  const p = node.parent;
  return (
    !(ts.isPropertyAccessExpression(p) && p.name === node) &&
    !ts.isImportSpecifier(p) &&
    !ts.isImportClause(p) &&
    !ts.isExportSpecifier(p) &&
    !ts.isTypeAliasDeclaration(p) &&
    !ts.isInterfaceDeclaration(p)
  );
}

/** What the rules find in one source file: `line: what: code`. */
function scan(sf: ts.SourceFile, checker: ts.TypeChecker): string[] {
  const found: string[] = [];
  const said = new Set<string>();
  const at = (node: ts.Node, what: string) => {
    const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
    // Once per line and rule: `const db = ledger.db` is one finding, not two.
    const key = `${line}: ${what}`;
    if (said.has(key)) return;
    said.add(key);
    found.push(`${key}: ${node.getText(sf).split('\n')[0]!.slice(0, 120)}`);
  };
  const forbidden = (spec: string) => FORBIDDEN_MODULES.some((re) => re.test(spec));
  const visit = (node: ts.Node, inType: boolean): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier) &&
      forbidden(node.moduleSpecifier.text)
    ) {
      at(node, `imports ${node.moduleSpecifier.text}`);
    }
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0];
      if (arg && ts.isStringLiteral(arg) && forbidden(arg.text)) at(node, `imports ${arg.text}`);
    }
    if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal) &&
      forbidden(node.argument.literal.text)
    ) {
      at(node, `imports ${node.argument.literal.text}`);
    }
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression) && SQL_CALLS.has(node.expression.name.text)) {
      const name = node.expression.name.text;
      const isRegExp = name === 'exec' && checker.typeToString(checker.getTypeAtLocation(node.expression.expression)) === 'RegExp';
      if (!isRegExp) at(node, `calls .${name}()`);
    }
    if (ts.isPropertyAccessExpression(node) && node.name.text === 'db') {
      const type = checker.getTypeAtLocation(node);
      if (!(type.flags & ts.TypeFlags.StringLike)) at(node, `uses a database handle (.db of type ${checker.typeToString(type)})`);
    } else if (!inType && isValue(node)) {
      // A value (a variable, a parameter, a property) whose type is a connection, a statement or a
      // query builder; not a method of one (its call is the rule above), not a type annotation.
      const type = checker.getTypeAtLocation(node);
      const symbol = type.aliasSymbol ?? type.getSymbol();
      const handle = type.getCallSignatures().length === 0 && symbol?.declarations?.some((d) => HANDLE_TYPES.test(d.getSourceFile().fileName));
      if (handle) at(node, `holds a database handle (of type ${checker.typeToString(type)})`);
    }
    // Types are not values: `db: DB` is found at the parameter's name, once.
    const typeBelow = inType || ts.isTypeNode(node);
    ts.forEachChild(node, (child) => visit(child, typeBelow));
  };
  visit(sf, false);
  return found;
}

/** Every finding under src/cli and src/migrate, as FILE:LINE: what: code. */
function violations(): string[] {
  const config = ts.getParsedCommandLineOfConfigFile(join(ROOT, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
  if (!config) throw new Error('cannot read tsconfig.json');
  const roots = config.fileNames.filter((f) => SCANNED.test(f));
  expect(roots.length).toBeGreaterThan(10);
  const program = ts.createProgram(roots, { ...config.options, noEmit: true });
  const checker = program.getTypeChecker();
  return roots.flatMap((file) => {
    const sf = program.getSourceFile(file);
    if (!sf) throw new Error(`not compiled: ${file}`);
    return scan(sf, checker).map((hit) => `${relative(ROOT, file)}:${hit}`);
  });
}

describe('SQL ownership', () => {
  it('src/cli and src/migrate run no SQL and hold no database handle', () => {
    expect(violations()).toEqual([]);
  });

  it('the rules find each forbidden form, and not the allowed ones', () => {
    const source = [
      "import type Database from 'better-sqlite3';",
      'declare const ledger: { db: Database.Database; store: { path: string } };',
      'declare const g: () => { db: string };',
      "ledger.db.prepare('SELECT 1').get();",
      'const path: string = g().db;',
      "/x/.exec('y');",
      "// ledger.db.prepare('in a comment')",
      'const text = \'q.db.pragma("in a string")\';',
      "declare const q: { k: import('kysely').Kysely<{}> };",
      'const builder = q.k;',
      'function count(db: Database.Database): void {}',
      'export { path, text, builder, count };',
    ].join('\n');
    const file = join(ROOT, 'src', 'cli', '__scan_probe__.ts');
    const options: ts.CompilerOptions = {
      strict: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      noEmit: true,
      skipLibCheck: true,
      types: [],
    };
    const host = ts.createCompilerHost(options);
    const { fileExists, readFile, getSourceFile } = host;
    host.fileExists = (f) => f === file || fileExists.call(host, f);
    host.readFile = (f) => (f === file ? source : readFile.call(host, f));
    host.getSourceFile = (f, v, ...rest) => (f === file ? ts.createSourceFile(f, source, v, true) : getSourceFile.call(host, f, v, ...rest));
    const program = ts.createProgram([file], options, host);
    const hits = scan(program.getSourceFile(file)!, program.getTypeChecker()).map((h) => h.split(': ').slice(0, 2).join(': '));
    expect(hits).toEqual([
      '1: imports better-sqlite3',
      '4: calls .prepare()',
      '4: uses a database handle (.db of type Database)',
      '9: imports kysely',
      '10: holds a database handle (of type Kysely<{}>)',
      '11: holds a database handle (of type Database)',
    ]);
  });
});
