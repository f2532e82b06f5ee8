#!/usr/bin/env node
/** The `iommu-ledger` command: runs the command line and exits with its code. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chainWorkerAt, setChainWorker } from '../events/chain-check.js';
import { quietOnClosedPipe, run } from './main.js';

// The bundle (package.json `bundle`) has its copy of the rebuild's hash-chain worker beside this
// entry; tsc's layout has one beside events/chain-check.js, found there.
const bundledWorker = new URL('./chain-worker.js', import.meta.url);
if (existsSync(fileURLToPath(bundledWorker))) setChainWorker(chainWorkerAt(bundledWorker));

quietOnClosedPipe();
run(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
