// ts-jest in ESM mode, as the official typescript-action template runs it.
import { createDefaultEsmPreset } from 'ts-jest';

const preset = createDefaultEsmPreset({ tsconfig: 'tsconfig.json' });
const shared = {
  ...preset,
  testEnvironment: 'node',
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
};

export default {
  // testTimeout is a global option (ignored inside projects); integration tests move real data.
  testTimeout: 120_000,
  reporters: ['default', '<rootDir>/tests/helpers/summary-reporter.cjs'],
  // One temp root per run, required empty at the end (tests/helpers/temp-root.mjs).
  globalSetup: '<rootDir>/tests/helpers/run-setup.mjs',
  globalTeardown: '<rootDir>/tests/helpers/run-teardown.mjs',
  projects: [
    { ...shared, displayName: 'unit', testMatch: ['<rootDir>/tests/unit/**/*.test.ts'] },
    {
      ...shared,
      displayName: 'integration',
      testMatch: ['<rootDir>/tests/integration/**/*.test.ts'],
      globalSetup: '<rootDir>/tests/helpers/global-setup.mjs',
      globalTeardown: '<rootDir>/tests/helpers/global-teardown.mjs',
    },
  ],
};
