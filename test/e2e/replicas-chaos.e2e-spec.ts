/**
 * The short chaos run in CI (test/chaos/chaos.ts): three replicas as real processes, four users
 * writing one request at a time through any replica, random PostgreSQL outages per replica,
 * SIGKILL and SIGTERM with restarts on the same volume, lost answers retried with their key on
 * another replica; then the database against every acknowledgement. The long run is
 * `npm run chaos` (docs/operations.md, "Chaos runs").
 *
 * CI budget: 75 s
 */
import { jest } from '@jest/globals';
import { runChaos } from '../chaos/chaos.js';

jest.setTimeout(240_000);

describe('replicas under chaos (e2e)', () => {
  it('leaves the database exactly as the acknowledgements say, after outages, kills and restarts', async () => {
    const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const report = await runChaos({
      replicas: 3,
      users: 4,
      durationMs: Number(process.env.CHAOS_DURATION_MS ?? 30_000),
      seed,
      ...(process.env.CHAOS_LOG
        ? { log: (line: string) => process.stderr.write(`${line}\n`) }
        : {}),
    });
    const { anomalies, ...figures } = report;
    process.stderr.write(`chaos run: ${JSON.stringify(figures)}\n`);
    // Enough happened for the run to mean something: every kind of fault, and writes around them.
    expect(report.outages).toBeGreaterThanOrEqual(2);
    expect(report.kills).toBeGreaterThanOrEqual(1);
    expect(report.stops).toBeGreaterThanOrEqual(1);
    expect(report.tasksChecked).toBeGreaterThan(20);
    expect({ seed, anomalies }).toEqual({ seed, anomalies: [] });
  });
});
