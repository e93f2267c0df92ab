/**
 * The breaker's probe: one connection outside the pool. Checks that overlap (the heartbeat, a
 * readiness request, a suspicion raised by a failed statement) share one round trip, since a
 * connection runs one statement at a time (pg refuses, for now warns about, a query sent while
 * another runs); a check that fails drops the connection, and the next one opens another.
 *
 * CI budget: 10 s
 */
import { jest } from '@jest/globals';
import pg from 'pg';
import type { AppConfig } from '../../src/config/app-config.js';
import { PostgresProbe } from '../../src/infrastructure/database/postgres-probe.js';
import { PG_URL } from '../support/test-app.js';

function probeOf(url: string): PostgresProbe {
  return new PostgresProbe({ database: { url, connectTimeoutMs: 2_000 } } as AppConfig);
}

describe('PostgreSQL probe (e2e)', () => {
  afterEach(() => {
    jest.restoreAllMocks();
  });

  it('runs one statement at a time on its connection, however many checks overlap', async () => {
    const probe = probeOf(PG_URL);
    try {
      await probe.check(2_000);
      let running = 0;
      let mostAtOnce = 0;
      let statements = 0;
      const query = pg.Client.prototype.query;
      jest.spyOn(pg.Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: unknown[]) {
        statements += 1;
        running += 1;
        mostAtOnce = Math.max(mostAtOnce, running);
        const result = (query as (...a: unknown[]) => Promise<unknown>).apply(this, args);
        void result.finally(() => (running -= 1)).catch(() => undefined);
        return result;
      } as typeof query);
      const results = await Promise.all(Array.from({ length: 10 }, () => probe.check(2_000)));
      expect(results.every((result) => result.ok)).toBe(true);
      expect(mostAtOnce).toBe(1);
      expect(statements).toBe(1);
      // Later checks make round trips of their own.
      expect((await probe.check(2_000)).ok).toBe(true);
      expect(statements).toBe(2);
    } finally {
      await probe.close();
    }
  });

  it('drops a connection that broke, and the next check opens another', async () => {
    const database = `taskd_probe_${Date.now().toString(36)}`;
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    const probe = probeOf(PG_URL.replace(/\/[^/]*$/, `/${database}`));
    try {
      expect((await probe.check(2_000)).ok).toBe(true);
      const connect = jest.spyOn(pg.Client.prototype, 'connect');
      // As PostgreSQL restarting would: the probe's connection is cut from the server's side.
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [database]);
      // The first check may still find the dead connection (and fail); either way exactly one
      // new connection is opened, and the probe answers again.
      await probe.check(2_000);
      expect((await probe.check(2_000)).ok).toBe(true);
      expect(connect).toHaveBeenCalledTimes(1);
    } finally {
      await probe.close();
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.end();
    }
  });
});
