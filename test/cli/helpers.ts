/** The command line in-process (run() is what bin.js calls), with its output captured. */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { run } from '../../src/cli/main.js';

export const EX = join(__dirname, '..', '..', 'examples');

export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(argv, { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

/** Changes a stored event behind iommu-ledger's back (drops the trigger that forbids it). */
export function tamper(db: string, sql: string): void {
  const raw = new Database(db);
  raw.exec('DROP TRIGGER events_no_update');
  raw.prepare(sql).run();
  raw.close();
}
