import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: 'forks',
    // One file at a time: ggml threads busy-wait on 2 cores, and the package test swaps build/Release.
    fileParallelism: false,
  },
});
