import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    // Each fc.assert stops after 60 s, shrinking included (test/setup/fast-check.ts).
    setupFiles: ['test/setup/fast-check.ts'],
    // One temporary directory per run, removed at its end (test/setup/temp-root.ts).
    globalSetup: ['test/setup/temp-root.ts'],
  },
});
