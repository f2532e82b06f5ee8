#!/usr/bin/env node
/** The `iommu-ledger` command: runs the command line and exits with its code. */
import { quietOnClosedPipe, run } from './main.js';

quietOnClosedPipe();
run(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
