/**
 * Every test run writes its temporary files (ledgers, traces, CLI outputs) under one directory of
 * its own, removed when the run ends: TMPDIR points there for the workers and for every CLI
 * process the tests start, so os.tmpdir() and mkdtemp land inside it. Without this, each run left
 * a few thousand ledgers in the system's temporary directory (222,167 of them, 79 GB, filled the
 * disk on 2026-12-07).
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'iommu-ledger-run-'));
  // As /tmp itself: the tests that run a command as another user (nobody) reach their files.
  chmodSync(root, 0o1777);
  process.env.TMPDIR = root;
  return () => {
    rmSync(root, { recursive: true, force: true });
  };
}
