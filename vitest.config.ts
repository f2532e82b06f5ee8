import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    // Each fc.assert stops after 60 s, shrinking included (test/setup/fast-check.ts).
    // The rebuild's hash-chain worker started from its TypeScript source (test/setup/chain-worker.ts).
    setupFiles: ['test/setup/fast-check.ts', 'test/setup/chain-worker.ts'],
    // One temporary directory per run, removed at its end (test/setup/temp-root.ts).
    globalSetup: ['test/setup/temp-root.ts'],
  },
});
