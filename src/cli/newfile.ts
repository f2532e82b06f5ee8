/**
 * A new ledger written under a temporary name beside its final path and renamed into place only
 * when it is complete (`replay --out`, `migrate --out`): a run that is killed, or that exits
 * early, never leaves a file at the final path that looks like a finished result, nor one that
 * blocks the next run ("PATH exists").
 */
import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { InputError } from './errors.js';

/** A hidden, unique name in the folder of `out` (the same file system, so the rename is atomic). */
export function temporaryPathFor(out: string): string {
  return join(dirname(out), `.${basename(out)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
}

/** Removes a temporary ledger and its SQLite side files. */
export function discardTemporary(tmp: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(tmp + suffix, { force: true });
}

/**
 * Moves a closed temporary ledger to `out`; never replaces a file that appeared at `out` in the
 * meantime (a hard link fails if the name is taken; where links are not supported, a last look
 * and a rename).
 */
export function publishTemporary(tmp: string, out: string): void {
  let linked = false;
  try {
    linkSync(tmp, out);
    linked = true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || existsSync(out)) {
      throw new InputError(
        `${out} appeared while this run was writing (another run with the same --out?): the result is kept as ${tmp}; rename it yourself, or remove it`,
      );
    }
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EXDEV') throw e;
    renameSync(tmp, out);
  }
  if (linked) rmSync(tmp, { force: true });
  // A closed ledger has no -wal left (its last connection checkpointed it); if one is there, it
  // belongs with the file.
  if (existsSync(`${tmp}-wal`)) renameSync(`${tmp}-wal`, `${out}-wal`);
  rmSync(`${tmp}-shm`, { force: true });
}
