/**
 * Jest on Node 24 in ESM mode (NestJS 12 is ESM-only), TypeScript through @swc/jest (types are
 * checked separately by `tsc --noEmit` in `npm run lint`).
 * Projects: `unit` (no I/O) and `e2e` (the real app against PostgreSQL, Redis and LMDB).
 */
const swc = [
  '@swc/jest',
  {
    jsc: {
      target: 'es2023',
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: false },
      keepClassNames: true,
    },
    module: { type: 'es6' },
    sourceMaps: 'inline',
  },
];

const common = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '^.+\\.ts$': swc },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  setupFiles: ['<rootDir>/test/support/setup-env.ts'],
};

export default {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/test/unit/**/*.spec.ts'] },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/e2e/**/*.e2e-spec.ts'],
      globalSetup: '<rootDir>/test/support/global-setup.ts',
      slowTestThreshold: 30,
    },
  ],
  testTimeout: 30_000,
  // Once every suite has passed and nothing is left open (`--detectOpenHandles` finds nothing),
  // Node's own teardown after the event loop ends can spin forever at full CPU (in
  // Environment::CleanupHandles, seen with the swc native addon's threads still alive): exit
  // explicitly instead of waiting for it.
  forceExit: true,
};
