/**
 * Only a real outage switches the instance to buffering. A pool whose every connection is busy
 * (statements waiting on a row lock) and statements cancelled by their timeout (SQLSTATE 57014)
 * are not outages: writes wait for a connection or fail with 504, never get a 202, and the
 * circuit breaker stays closed; readiness keeps answering from its own probe connection. A
 * network that silently drops everything (the fault proxy's black hole), on the other hand,
 * is noticed by the probe's heartbeat and does switch writes to the buffer.
 *
 * CI budget: 60 s
 */
import { jest } from '@jest/globals';
import type { LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { PostgresAvailability, type PostgresState } from '../../src/infrastructure/database/postgres-availability.js';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { databaseUrlFor, PG_URL, startTestApp, type TestApp } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

jest.setTimeout(60_000);

const TASKS = '/api/v1/tasks';

describe('a busy pool is not an outage (e2e)', () => {
  let proxy: FaultProxy;
  let t: TestApp;
  let alice: TestUser;
  let bob: TestUser;
  /** Every state the breaker went through since the test began. */
  let states: PostgresState[];
  let stopWatching: () => void;

  beforeAll(async () => {
    proxy = await FaultProxy.towards(PG_URL);
    t = await startTestApp({
      databaseHostPort: proxy.hostPort,
      env: { DATABASE_POOL_SIZE: '2', REQUEST_TIMEOUT_MS: '4000', DATABASE_CONNECT_TIMEOUT_MS: '500' },
    });
    alice = await registerAndLogin(t.app);
    bob = await registerAndLogin(t.app);
  });

  beforeEach(() => {
    states = [];
    stopWatching = t.app.get(PostgresAvailability).onStateChange((state) => states.push(state));
  });

  afterEach(() => stopWatching());

  afterAll(async () => {
    proxy?.pass();
    await t?.close();
    await proxy?.close();
  });

  async function createTask(user: TestUser, title: string): Promise<LightMyRequestResponse> {
    return t.app.inject({ method: 'POST', url: TASKS, headers: user.auth, payload: { title } });
  }

  /** Holds row locks on the tasks from outside the app until `release` is called. */
  async function lockTasks(ids: string[]): Promise<{ release(): Promise<void> }> {
    const client = new pg.Client({ connectionString: databaseUrlFor(t.databaseName) });
    await client.connect();
    await client.query('BEGIN');
    await client.query('SELECT 1 FROM tasks WHERE id = ANY($1::uuid[]) FOR UPDATE', [ids]);
    return {
      async release() {
        await client.query('COMMIT');
        await client.end();
      },
    };
  }

  it('makes writes wait for a connection, never buffers them, and stays ready, while every connection waits on a lock', async () => {
    const ids: string[] = [];
    for (let n = 0; n < 6; n += 1) ids.push((await createTask(alice, `contended ${n}`)).json<{ id: string }>().id);
    const lock = await lockTasks(ids);
    // Six updates of locked rows: two hold both pool connections, four wait for one.
    const updates = ids.map((id) =>
      t.app.inject({ method: 'PATCH', url: `${TASKS}/${id}`, headers: alice.auth, payload: { title: 'edited' } }),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const create = createTask(bob, 'not buffered');
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    const ready = await t.app.inject({ method: 'GET', url: '/health/ready' });
    await lock.release();
    const answers = await Promise.all([...updates, create]);

    expect({
      ready: ready.statusCode,
      postgres: ready.json<{ details: { postgres: { status: string } } }>().details.postgres.status,
      statuses: answers.map((res) => res.statusCode),
      buffered: answers.filter((res) => res.headers['x-write-status'] !== undefined).length,
      states,
    }).toEqual({ ready: 200, postgres: 'up', statuses: [200, 200, 200, 200, 200, 200, 201], buffered: 0, states: [] });
  });

  it('answers 504 for statements cancelled by their timeout, without opening the breaker', async () => {
    const ids: string[] = [];
    for (let n = 0; n < 4; n += 1) ids.push((await createTask(alice, `held ${n}`)).json<{ id: string }>().id);
    const lock = await lockTasks(ids);
    // The locks outlive REQUEST_TIMEOUT_MS: each update is cancelled (57014) or misses its deadline.
    const answers = await Promise.all(
      ids.map((id) => t.app.inject({ method: 'PATCH', url: `${TASKS}/${id}`, headers: alice.auth, payload: { title: 'late' } })),
    );
    await lock.release();
    const after = await createTask(bob, 'after the lock');

    expect({
      statuses: answers.map((res) => res.statusCode),
      codes: answers.map((res) => res.json<{ code: string }>().code),
      after: after.statusCode,
      states,
    }).toEqual({ statuses: [504, 504, 504, 504], codes: Array(4).fill('TIMEOUT'), after: 201, states: [] });
  });

  it('opens the breaker when the network silently drops everything, and buffers writes from then on', async () => {
    const postgres = t.app.get(PostgresAvailability);
    proxy.blackhole();
    try {
      // No request needs to fail first: the probe's heartbeat notices.
      await waitUntil('the breaker opens', () => !postgres.isUp(), 15_000);
      const created = await createTask(bob, 'buffered');
      expect({ status: created.statusCode, writeStatus: created.headers['x-write-status'] }).toEqual({
        status: 202,
        writeStatus: 'buffered',
      });
    } finally {
      proxy.pass();
    }
    await waitUntil('PostgreSQL is back', () => postgres.isUp(), 20_000);
    expect(states).toEqual(['down', 'up']);
  });
});
