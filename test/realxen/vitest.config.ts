// The real-Xen rig's runner: judges the results of test/realxen/run.sh (not part of `npm test`).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/realxen/realxen.rig.ts'],
    testTimeout: 10_000,
  },
});
