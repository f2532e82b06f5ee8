/**
 * Checkpoints on the command line: `checkpoint`, `verify --checkpoint`, and the checkpoint that
 * `import`/`apply --checkpoint-to DIR` write after each run (src/events/checkpoint.ts).
 */
import type { KeyObject } from 'node:crypto';
import {
  checkCheckpoint,
  CheckpointError,
  checkCheckpointDir,
  checkpointFiles,
  checkpointText,
  loadPrivateKey,
  loadPublicKey,
  makeCheckpoint,
  readCheckpoint,
  storedHead,
  writeCheckpointFile,
  writeCheckpointIn,
  type Checkpoint,
  type CheckpointCheck,
} from '../events/checkpoint.js';
import type { EventStore } from '../events/store.js';
import { InputError } from './errors.js';

export interface CheckpointToOptions {
  checkpointTo?: string;
  checkpointKey?: string;
}

export interface RunCheckpointPlan {
  dir: string;
  key?: KeyObject;
}

/** Checks `--checkpoint-to` and loads `--checkpoint-key` before a run stores anything. */
export function planRunCheckpoint(o: CheckpointToOptions): RunCheckpointPlan | undefined {
  if (o.checkpointTo === undefined) {
    if (o.checkpointKey !== undefined) throw new InputError('--checkpoint-key signs the checkpoints of --checkpoint-to DIR: give that too');
    return undefined;
  }
  checkCheckpointDir('--checkpoint-to', o.checkpointTo);
  return { dir: o.checkpointTo, ...(o.checkpointKey !== undefined ? { key: loadPrivateKey(o.checkpointKey, '--checkpoint-key') } : {}) };
}

/**
 * The checkpoint after a run: the ledger's head as stored (the run does not walk the whole
 * chain; `verify` does). Nothing for an empty ledger. The events are committed by then, so a
 * failure to write says so.
 */
export function writeRunCheckpoint(store: EventStore, plan: RunCheckpointPlan): { file: string; position: number; head: string } | undefined {
  const head = storedHead(store);
  if (head.position === 0) return undefined;
  try {
    const c = makeCheckpoint(store, head, plan.key);
    return { file: writeCheckpointIn(plan.dir, c), position: c.position, head: c.head };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(
      `--checkpoint-to ${plan.dir}: the checkpoint could not be written (${code ?? (e as Error).message}); the events of this run are stored all the same: write one later with 'iommu-ledger checkpoint --out ${plan.dir}'`,
    );
  }
}

/** The line a writing command prints after its report. */
export function runCheckpointLine(w: { file: string; position: number } | undefined): string {
  return w ? `checkpoint: ${w.file} (position ${w.position})` : 'checkpoint: none written (the ledger holds no event)';
}

/**
 * `checkpoint`: the head of a chain just verified, signed when a key is given, to a file, into a
 * folder, or (without --out) as the text to print.
 */
export function takeCheckpoint(
  store: EventStore,
  head: { position: number; hash: string },
  o: { out?: string; key?: string },
): { checkpoint: Checkpoint; file?: string; text: string } {
  const key = o.key !== undefined ? loadPrivateKey(o.key) : undefined;
  if (head.position === 0)
    throw new InputError("the ledger holds no event: a checkpoint of an empty ledger proves nothing; take one after 'import' or 'apply'");
  const c = makeCheckpoint(store, head, key);
  if (o.out === undefined) return { checkpoint: c, text: checkpointText(c) };
  let isDir = false;
  try {
    checkCheckpointDir('--out', o.out);
    isDir = true;
  } catch {
    // Not a folder: a file to write.
  }
  let file: string;
  try {
    file = isDir ? writeCheckpointIn(o.out, c) : writeCheckpointFile(o.out, c);
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`--out ${o.out}: the checkpoint could not be written (${code ?? (e as Error).message}); nothing was written`);
  }
  return { checkpoint: c, file, text: checkpointText(c) };
}

/** Reads every checkpoint named (files, or folders of them) before the chain is walked: bad input fails first. */
export function loadCheckpoints(
  args: string[],
  pubkey?: string,
): { checkpoints: Array<{ file: string; c: Checkpoint }>; pub?: { key: KeyObject; file: string } } {
  const pub = pubkey !== undefined ? { key: loadPublicKey(pubkey), file: pubkey } : undefined;
  const checkpoints = args.flatMap(checkpointFiles).map((file) => ({ file, c: readCheckpoint(file) }));
  return { checkpoints, ...(pub ? { pub } : {}) };
}

export function checkCheckpoints(
  store: EventStore,
  loaded: ReturnType<typeof loadCheckpoints>,
  chain: { ok: boolean; events: number; firstBad?: number },
): CheckpointCheck[] {
  return loaded.checkpoints.map(({ file, c }) => checkCheckpoint(store, file, c, chain, loaded.pub));
}
