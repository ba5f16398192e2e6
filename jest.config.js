/** Jest runs TypeScript through ts-jest; one Temporal dev server serves the whole run. */
module.exports = {
  // Node's, and it kills what a test file left running (test/support/environment.js).
  testEnvironment: '<rootDir>/test/support/environment.js',
  transform: { '^.+\\.ts$': 'ts-jest' },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  testTimeout: 120000,
  maxWorkers: 2,
  verbose: true,
  // The Temporal SDK's native connection can keep the event loop alive after the last test.
  forceExit: true,
};
