/**
 * Checkpoints of the hash chain: the head (position and hash) of a ledger at one moment, kept
 * outside it, optionally signed with Ed25519 (Node's crypto). A later ledger *extends* a
 * checkpoint when it still holds that position and the chain hash there is the same: since each
 * hash covers every event before it, the events up to the checkpoint are then exactly those that
 * were checkpointed. This is what catches a cut-off tail (fewer events), a rewrite re-hashed from
 * the edit on (another hash at the position), and a fork (another copy that went its own way).
 * Like the event store, this module knows nothing of IOMMUs.
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, linkSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { LedgerFault } from '../core/errors.js';
import type { DB } from './db.js';
import type { EventStore } from './store.js';

/** The `format` of a checkpoint file. */
export const CHECKPOINT_FORMAT = 'iommu-ledger-checkpoint/1';

/** Bad input about checkpoints (a file or key that cannot be read): exit code 2. */
export class CheckpointError extends LedgerFault {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

export interface Checkpoint {
  format: typeof CHECKPOINT_FORMAT;
  /** The ledger's id: the chain hash of its first event (absent for an empty ledger). */
  ledger?: string;
  /** The last position covered (the number of events, positions being 1..N). */
  position: number;
  /** The chain hash at `position` (64 zeros at position 0). */
  head: string;
  /** When the checkpoint was made (ISO, UTC). */
  time: string;
  signature?: { algorithm: 'ed25519'; key: string; value: string };
}

const HEX64 = /^[0-9a-f]{64}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z$/;
const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * The bytes a signature covers: one field a line, so that other tools can check it
 * (`openssl pkeyutl -verify -rawin`). Every field is validated to hold no line break.
 */
export function signedText(c: Omit<Checkpoint, 'signature'>, key: string): string {
  return `${CHECKPOINT_FORMAT}\nledger ${c.ledger ?? '-'}\nposition ${c.position}\nhead ${c.head}\ntime ${c.time}\nkey ${key}\n`;
}

/** A key's id: SHA-256 of its public key (SubjectPublicKeyInfo, DER), hex. */
export function keyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

function readKeyFile(option: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CheckpointError(`${option} ${file}: ${code === 'ENOENT' ? 'no such file' : `cannot read it (${code ?? (e as Error).message})`}`);
  }
}

/** An Ed25519 private key from a PEM file (`openssl genpkey -algorithm ed25519`). */
export function loadPrivateKey(file: string, option = '--key'): KeyObject {
  const pem = readKeyFile(option, file);
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new CheckpointError(
      `${option} ${file}: not a private key in PEM (${(e as Error).message.split('\n')[0]}); make one with 'openssl genpkey -algorithm ed25519 -out ${file}'`,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new CheckpointError(
      `${option} ${file}: a ${key.asymmetricKeyType ?? 'symmetric'} key, not Ed25519; make one with 'openssl genpkey -algorithm ed25519'`,
    );
  return key;
}

/** An Ed25519 public key from a PEM file (a private key's file gives its public key too). */
export function loadPublicKey(file: string, option = '--pubkey'): KeyObject {
  const pem = readKeyFile(option, file);
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (e) {
    throw new CheckpointError(
      `${option} ${file}: not a public key in PEM (${(e as Error).message.split('\n')[0]}); make one with 'openssl pkey -in PRIVATE.pem -pubout -out ${file}'`,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new CheckpointError(`${option} ${file}: a ${key.asymmetricKeyType ?? 'symmetric'} key, not Ed25519`);
  return key;
}

/** The hash stored at a position, as lower-case hex (undefined when there is no such event). */
function hashAt(db: DB, position: number): string | undefined {
  return db.prepare<[position: number], string>('SELECT lower(hex(hash)) FROM events WHERE position = ?').pluck().safeIntegers(false).get(position);
}

/**
 * A checkpoint of the head given (taken from a verified chain, or from the last event as stored),
 * signed when a key is given.
 */
export function makeCheckpoint(store: EventStore, head: { position: number; hash: string }, key?: KeyObject): Checkpoint {
  const ledger = head.position > 0 ? hashAt(store.db, 1) : undefined;
  const c: Checkpoint = {
    format: CHECKPOINT_FORMAT,
    ...(ledger !== undefined ? { ledger } : {}),
    position: head.position,
    head: head.hash,
    time: new Date().toISOString(),
  };
  if (key) {
    const id = keyId(key);
    c.signature = { algorithm: 'ed25519', key: id, value: sign(null, Buffer.from(signedText(c, id), 'utf8'), key).toString('base64') };
  }
  return c;
}

/** The last event's position and hash as stored (not verified: the writers' own head). */
export function storedHead(store: EventStore): { position: number; hash: string } {
  const r = store.db.prepare('SELECT position, lower(hex(hash)) AS hash FROM events ORDER BY position DESC LIMIT 1').safeIntegers(false).get() as
    { position: number; hash: string } | undefined;
  return r ?? { position: 0, hash: '0'.repeat(64) };
}

export function checkpointText(c: Checkpoint): string {
  return `${JSON.stringify(c, null, 2)}\n`;
}

/** The file name a checkpoint gets in a folder: position (sortable) and the start of its head. */
export function checkpointName(c: Checkpoint): string {
  return `checkpoint-${String(c.position).padStart(12, '0')}-${c.head.slice(0, 12)}.json`;
}

/**
 * Writes a new file with the checkpoint: to a temporary name, synced, then linked to `path`
 * (which fails if `path` exists: a checkpoint is never overwritten), so no reader ever sees a
 * half-written checkpoint. Returns false when `path` exists.
 */
function writeNew(path: string, text: string): boolean {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    try {
      linkSync(tmp, path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return false;
      // File systems without hard links: a plain rename after a last look.
      if (existsSync(path)) return false;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw e;
      renameSync(tmp, path);
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  return true;
}

/** Writes the checkpoint to `path`, a new file (CheckpointError when it exists). */
export function writeCheckpointFile(path: string, c: Checkpoint): string {
  if (!writeNew(path, checkpointText(c)))
    throw new CheckpointError(`--out ${path} exists: a checkpoint is never overwritten; choose another file, or give a folder to write it in`);
  return path;
}

/**
 * Writes the checkpoint into a folder, named by `checkpointName`. A file of that name (the same
 * position and head, taken earlier) is left as it is.
 */
export function writeCheckpointIn(dir: string, c: Checkpoint): string {
  const path = join(dir, checkpointName(c));
  writeNew(path, checkpointText(c));
  return path;
}

/** A folder given for checkpoints must exist and be a folder (checked before a run stores anything). */
export function checkCheckpointDir(option: string, dir: string): void {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new CheckpointError(`${option} ${dir}: no such folder (create it first)`);
  }
  if (!isDir) throw new CheckpointError(`${option} ${dir}: not a folder`);
}

/** Reads and validates a checkpoint file; the fields the signature covers are checked exactly. */
export function readCheckpoint(file: string): Checkpoint {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CheckpointError(`--checkpoint ${file}: ${code === 'ENOENT' ? 'no such file' : `cannot read it (${code ?? (e as Error).message})`}`);
  }
  const bad = (why: string): never => {
    throw new CheckpointError(`--checkpoint ${file}: not an iommu-ledger checkpoint (${why}); write one with 'iommu-ledger checkpoint --out FILE'`);
  };
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (e) {
    return bad(`not JSON: ${(e as Error).message}`);
  }
  if (!o || typeof o !== 'object' || Array.isArray(o)) return bad('not a JSON object');
  const r = o as Record<string, unknown>;
  if (r.format !== CHECKPOINT_FORMAT) return bad(`format is ${JSON.stringify(r.format)}, expected ${JSON.stringify(CHECKPOINT_FORMAT)}`);
  if (typeof r.position !== 'number' || !Number.isSafeInteger(r.position) || r.position < 0) return bad('position: a whole number, 0 or more');
  if (typeof r.head !== 'string' || !HEX64.test(r.head)) return bad('head: 64 lower-case hex digits');
  if (r.ledger !== undefined && (typeof r.ledger !== 'string' || !HEX64.test(r.ledger))) return bad('ledger: 64 lower-case hex digits');
  if (typeof r.time !== 'string' || !ISO.test(r.time)) return bad('time: an ISO time in UTC');
  const c: Checkpoint = {
    format: CHECKPOINT_FORMAT,
    ...(r.ledger !== undefined ? { ledger: r.ledger as string } : {}),
    position: r.position,
    head: r.head,
    time: r.time,
  };
  if (r.signature !== undefined) {
    const s = r.signature as Record<string, unknown> | null;
    if (!s || typeof s !== 'object' || s.algorithm !== 'ed25519') return bad('signature.algorithm: "ed25519"');
    if (typeof s.key !== 'string' || !HEX64.test(s.key)) return bad('signature.key: 64 lower-case hex digits');
    if (typeof s.value !== 'string' || !B64.test(s.value)) return bad('signature.value: base64');
    c.signature = { algorithm: 'ed25519', key: s.key, value: s.value };
  }
  return c;
}

/** The checkpoint files a `--checkpoint` argument names: the file, or a folder's checkpoint-*.json. */
export function checkpointFiles(arg: string): string[] {
  let isDir = false;
  try {
    isDir = statSync(arg).isDirectory();
  } catch {
    // Not there: readCheckpoint says so.
  }
  if (!isDir) return [arg];
  const files = readdirSync(arg)
    .filter((f) => /^checkpoint-.*\.json$/.test(f))
    .sort()
    .map((f) => join(arg, f));
  if (!files.length) throw new CheckpointError(`--checkpoint ${arg}: the folder holds no checkpoint-*.json file`);
  return files;
}

export type CheckpointProblem = 'truncated' | 'rewritten' | 'other-ledger' | 'chain-broken' | 'unsigned' | 'other-key' | 'bad-signature';

export interface CheckpointCheck {
  file: string;
  ok: boolean;
  position: number;
  head: string;
  time: string;
  signed: boolean;
  /** True when the signature was checked with --pubkey and holds. */
  signatureVerified: boolean;
  problem?: CheckpointProblem;
  message: string;
}

/**
 * Does the ledger extend the checkpoint? `chain` is the result of walking the hash chain just
 * before: when it is intact, every stored hash is the chain's, so the hash stored at the
 * checkpoint's position is compared; when it is broken at `firstBad`, only positions before it
 * can be confirmed. With `pub`, the checkpoint must be signed by that key.
 */
export function checkCheckpoint(
  store: EventStore,
  file: string,
  c: Checkpoint,
  chain: { ok: boolean; events: number; firstBad?: number },
  pub?: { key: KeyObject; file: string },
): CheckpointCheck {
  const base = { file, position: c.position, head: c.head, time: c.time, signed: c.signature !== undefined, signatureVerified: false };
  const fail = (problem: CheckpointProblem, why: string): CheckpointCheck => ({ ...base, ok: false, problem, message: `checkpoint ${file}: ${why}` });
  const short = (h: string) => `${h.slice(0, 16)}…`;
  if (pub) {
    if (!c.signature)
      return fail(
        'unsigned',
        `it is not signed, and --pubkey ${pub.file} asks for a signed checkpoint: an unsigned one proves nothing about who took it; check it without --pubkey, or sign checkpoints with 'iommu-ledger checkpoint --key'`,
      );
    const id = keyId(pub.key);
    if (c.signature.key !== id)
      return fail(
        'other-key',
        `signed with key ${short(c.signature.key)}, not with --pubkey ${pub.file} (key ${short(id)}): give the public key it was signed with, or do not trust it`,
      );
    const good = verify(null, Buffer.from(signedText(c, id), 'utf8'), pub.key, Buffer.from(c.signature.value, 'base64'));
    if (!good)
      return fail('bad-signature', `its signature does not verify with --pubkey ${pub.file}: the checkpoint was changed after it was signed; do not trust it`);
    base.signatureVerified = true;
  }
  const sig = base.signatureVerified ? ` (signature verified with ${pub!.file})` : c.signature ? ' (signed; the signature was not checked: give --pubkey)' : '';
  const verified = chain.ok ? chain.events : (chain.firstBad ?? 1) - 1;
  if (chain.ok && c.position > chain.events) {
    const gone = c.position - chain.events;
    return fail(
      'truncated',
      `the ledger has ${chain.events} event(s), fewer than the ${c.position} the checkpoint covers: ${gone === 1 ? `event ${c.position} was` : `events ${chain.events + 1} to ${c.position} were`} removed (the ledger was cut short since ${c.time}); restore it from a copy that verifies against this checkpoint`,
    );
  }
  if (c.position > verified) {
    return fail(
      'chain-broken',
      `not confirmed: the hash chain is broken at position ${chain.firstBad}, at or before the checkpoint's position ${c.position} (see the first line)`,
    );
  }
  if (c.position > 0 && c.ledger !== undefined) {
    const first = hashAt(store.db, 1);
    if (first !== c.ledger) {
      return fail(
        'other-ledger',
        `the ledger's first event differs from the checkpoint's (ledger id ${short(first ?? '')} here, ${short(c.ledger)} in the checkpoint): it is a checkpoint of another ledger, or this ledger was rewritten from its first event and re-hashed`,
      );
    }
  }
  if (c.position > 0) {
    const here = hashAt(store.db, c.position);
    if (here !== c.head) {
      return fail(
        'rewritten',
        `the chain hash at position ${c.position} is ${short(here ?? '')} here and ${short(c.head)} in the checkpoint: events up to position ${c.position} were changed (or removed and replaced) and the chain re-hashed since ${c.time}, or this ledger forked from the one checkpointed; restore it from a copy that verifies against this checkpoint`,
      );
    }
  }
  const after = chain.ok ? `and ${chain.events - c.position} event(s) since` : `and the chain breaks later, at position ${chain.firstBad}`;
  return {
    ...base,
    ok: true,
    message: `checkpoint ${file}: extended: the ledger holds the checkpoint's ${c.position} event(s) unchanged (head ${short(c.head)}, ${c.time}), ${after}${sig}`,
  };
}
