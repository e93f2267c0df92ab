/**
 * The long chaos run, from the command line (test/chaos/chaos.ts says what it does and checks):
 *
 *   npm run chaos -- [--duration-seconds 300] [--replicas 3] [--users 6] [--seed N] [--runs 1]
 *
 * Needs PostgreSQL and Redis as the e2e suites do (TEST_DATABASE_URL, TEST_REDIS_URL). Prints one
 * JSON report per run and exits 1 if any run found an anomaly; a failing run is replayed by its
 * seed (the conductor's and the clients' choices; timing still varies).
 */
import { parseArgs } from 'node:util';
import { runChaos } from './chaos.js';

const { values } = parseArgs({
  options: {
    'duration-seconds': { type: 'string', default: '300' },
    replicas: { type: 'string', default: '3' },
    users: { type: 'string', default: '6' },
    seed: { type: 'string' },
    runs: { type: 'string', default: '1' },
    quiet: { type: 'boolean', default: false },
  },
});

let failed = false;
for (let run = 0; run < Number(values.runs); run += 1) {
  const seed =
    values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed) + run;
  const report = await runChaos({
    replicas: Number(values.replicas),
    users: Number(values.users),
    durationMs: Number(values['duration-seconds']) * 1000,
    seed,
    ...(values.quiet
      ? {}
      : { log: (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`) }),
  });
  process.stdout.write(`${JSON.stringify(report)}\n`);
  failed ||= report.anomalies.length > 0;
}
process.exit(failed ? 1 : 0);
