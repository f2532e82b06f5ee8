#!/usr/bin/env node
/** The `iommu-ledger` command: runs the command line and exits with its code. */
import { run } from './main.js';

// A reader that goes away early (`| head`) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

run(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
