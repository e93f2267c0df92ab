/**
 * The schema migrator (run at start-up and whenever PostgreSQL comes back) waits for the
 * migrations advisory lock while another replica migrates, here for longer than the pool's
 * client-side `query_timeout` (REQUEST_TIMEOUT_MS + 1 s). Once that replica is done, no pooled
 * session may be left holding the lock (or queued for it, to take it later and keep it), or no
 * other replica could start.
 */
import { jest } from '@jest/globals';
import pg from 'pg';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import { LmdbBuffer } from '../../src/modules/buffer/lmdb-buffer.js';
import { registerAndLogin } from '../support/auth.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { databaseUp, databaseUrlFor, PG_URL, startTestApp, withDatabase, type TestApp } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

jest.setTimeout(90_000);

const LOCK = "hashtext('taskd:migrations')";

describe('migrations advisory lock waited on past the query timeout (e2e)', () => {
  let proxy: FaultProxy;
  let t: TestApp;

  beforeAll(async () => {
    proxy = await FaultProxy.towards(PG_URL);
    t = await startTestApp({ databaseHostPort: proxy.hostPort, env: { REQUEST_TIMEOUT_MS: '1500' } });
  });

  afterAll(async () => {
    proxy?.pass();
    await t?.close();
    await proxy?.close();
  });

  it('does not leave the migrations lock held by a pooled connection after another replica migrated for 6 s', async () => {
    const user = await registerAndLogin(t.app);
    const database = t.app.get(PostgresAvailability);
    const buffer = t.app.get(LmdbBuffer);

    proxy.cut();
    await waitUntil('the app sees PostgreSQL down', async () => {
      await t.app.inject({ method: 'GET', url: '/health/ready' });
      return !database.isUp();
    });
    const created = await t.app.inject({ method: 'POST', url: '/api/v1/tasks', headers: user.auth, payload: { title: 'queued' } });
    expect(created.statusCode).toBe(202);

    // "Another replica" migrates for 6 s: it holds the migrations lock on its own session.
    const replica = new pg.Client({ connectionString: databaseUrlFor(t.databaseName) });
    await replica.connect();
    await replica.query(`SELECT pg_advisory_lock(${LOCK})`);
    proxy.pass();
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    await replica.query(`SELECT pg_advisory_unlock(${LOCK})`);
    await replica.end();

    // Give the app ample time to reconnect, migrate and replay.
    const drained = await waitUntil('the app is up and drained', () => database.isUp() && buffer.depth === 0, 20_000).then(
      () => true,
      () => false,
    );
    const holders = await withDatabase(t.databaseName, async (client) => {
      const { rows } = await client.query<{ pid: number; application_name: string; state: string; query: string }>(
        `SELECT a.pid, a.application_name, a.state, a.query
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()`,
      );
      return rows;
    });
    // Had a pooled session kept the lock, a second replica starting now could not migrate, so
    // would not come up while that session lived (30 s idle at the least, longer if reused).
    const second = await startTestApp({ databaseName: t.databaseName, waitForDatabase: false });
    const secondUp = await databaseUp(second.app, 10_000);
    await second.close({ keepDatabase: true });
    expect({ drained, holders, secondUp }).toEqual({ drained: true, holders: [], secondUp: true });
  });
});
