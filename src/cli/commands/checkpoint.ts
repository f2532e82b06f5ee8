/** `checkpoint`: the head of the verified hash chain, optionally signed, to keep outside the ledger. */
import type { Command } from 'commander';
import { Findings, type Context } from '../context.js';
import { walkChain } from '../chain.js';
import { checkpointWrittenText } from '../render/integrity.js';

export function register(program: Command, { g, out, ledgerLib }: Context): void {
  program
    .command('checkpoint')
    .description('write the head of the verified hash chain (position, hash, time), optionally signed, to keep outside the ledger')
    .option('--out <file>', 'write it to this new file, or into this folder (default: print it)')
    .option('--key <pem>', 'sign it with this Ed25519 private key (openssl genpkey -algorithm ed25519)')
    .addHelpText(
      'after',
      `
A later 'iommu-ledger verify --checkpoint FILE' proves that the ledger still holds the events the
checkpoint covers, unchanged: it catches a cut-off tail, a rewrite re-hashed from the edit on, and
a fork. Keep checkpoints where whoever can write the ledger cannot (another machine, a CI log).

Examples:
  iommu-ledger checkpoint --out checkpoints/
  iommu-ledger checkpoint --key signing.pem --out cp.json
  iommu-ledger verify --checkpoint cp.json --pubkey signing.pub.pem`,
    )
    .action(async (o: { out?: string; key?: string }) => {
      const { Ledger } = await ledgerLib();
      const { takeCheckpoint } = await import('../checkpoint.js');
      const ledger = new Ledger(g().db, { mustExist: true });
      try {
        // The chain is walked first: a checkpoint must not vouch for a history already tampered with.
        const r = await walkChain(ledger);
        if (!r.ok) {
          out(r.message);
          throw new Findings(
            `the hash chain is broken at position ${r.firstBad}: no checkpoint written (it would vouch for a tampered history); see 'iommu-ledger verify'`,
          );
        }
        const t = takeCheckpoint(ledger.store, { position: r.events, hash: r.head! }, o);
        if (g().json || t.file === undefined) return out(t.text);
        out(checkpointWrittenText(g().db, t));
      } finally {
        ledger.close();
      }
    });
}
