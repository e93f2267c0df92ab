/**
 * An idempotency key whose task has a delete still queued. PostgreSQL was down when the client
 * deleted the task (202, queued); it is back, but the queue has not been replayed yet when the
 * client creates a task with the same key. The key is about to be freed: the create must be
 * queued behind the delete and get the key after it, not be answered with the task going away.
 * Likewise when the first create is itself still queued: its delete sets the key free in the
 * buffer, so the next create with that key is a new task, and a retry of it answers that one.
 */
import { jest } from '@jest/globals';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import { BufferService } from '../../src/modules/buffer/buffer.service.js';
import { LmdbBuffer } from '../../src/modules/buffer/lmdb-buffer.js';
import { registerAndLogin } from '../support/auth.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { PG_URL, startTestApp, withDatabase, type TestApp } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

jest.setTimeout(60_000);

const TASKS = '/api/v1/tasks';

describe('a key whose task has a delete queued (e2e)', () => {
  let proxy: FaultProxy;
  let t: TestApp;

  beforeAll(async () => {
    proxy = await FaultProxy.towards(PG_URL);
    t = await startTestApp({ databaseHostPort: proxy.hostPort, env: { BUFFER_REPLAY_INTERVAL_MS: '3600000' } });
  });

  afterAll(async () => {
    proxy?.pass();
    await t?.close();
    await proxy?.close();
  });

  it('queues the create behind the delete: the key ends on the new task', async () => {
    const user = await registerAndLogin(t.app);
    const headers = { ...user.auth, 'idempotency-key': 'weekly-report' };
    const first = await t.app.inject({ method: 'POST', url: TASKS, headers, payload: { title: 'first' } });
    expect(first.statusCode).toBe(201);
    const firstId = first.json<{ id: string }>().id;

    proxy.cut();
    const deleted = await t.app.inject({ method: 'DELETE', url: `${TASKS}/${firstId}`, headers: user.auth });
    expect([deleted.statusCode, deleted.headers['x-write-status']]).toEqual([202, 'buffered']);

    // The replay that PostgreSQL's return starts is held back, so that the delete stays queued.
    const replays = t.app.get(BufferService);
    const held = jest.spyOn(replays, 'replay').mockImplementation(() => new Promise(() => undefined));
    proxy.pass();
    const database = t.app.get(PostgresAvailability);
    const buffer = t.app.get(LmdbBuffer);
    await waitUntil('PostgreSQL is seen up again', () => database.isUp());
    expect(buffer.depth).toBe(1);

    const second = await t.app.inject({ method: 'POST', url: TASKS, headers, payload: { title: 'second' } });
    expect([second.statusCode, second.headers['x-write-status']]).toEqual([202, 'buffered']);
    const secondId = second.json<{ id: string; title: string }>().id;
    expect(second.json()).toMatchObject({ title: 'second' });
    expect(secondId).not.toBe(firstId);

    held.mockRestore();
    await replays.replay();
    expect(buffer.depth).toBe(0);
    const rows = await withDatabase(t.databaseName, async (client) =>
      (await client.query('SELECT id, title FROM tasks WHERE idempotency_key = $1', ['weekly-report'])).rows,
    );
    expect(rows).toEqual([{ id: secondId, title: 'second' }]);
    const gone = await t.app.inject({ method: 'GET', url: `${TASKS}/${firstId}`, headers: user.auth });
    expect(gone.statusCode).toBe(404);

    // A retry of the second create now finds it.
    const retry = await t.app.inject({ method: 'POST', url: TASKS, headers, payload: { title: 'second' } });
    expect([retry.statusCode, retry.json<{ id: string }>().id]).toEqual([201, secondId]);
  });

  it('while the first create and its delete both wait in the buffer: the next create with the key is a new task', async () => {
    const user = await registerAndLogin(t.app);
    const headers = { ...user.auth, 'idempotency-key': 'daily-standup' };
    const buffer = t.app.get(LmdbBuffer);
    proxy.cut();
    try {
      const first = await t.app.inject({ method: 'POST', url: TASKS, headers, payload: { title: 'first' } });
      expect([first.statusCode, first.headers['x-write-status']]).toEqual([202, 'buffered']);
      const firstId = first.json<{ id: string }>().id;
      const deleted = await t.app.inject({ method: 'DELETE', url: `${TASKS}/${firstId}`, headers: user.auth });
      expect([deleted.statusCode, deleted.headers['x-write-status']]).toEqual([202, 'buffered']);

      const second = await t.app.inject({ method: 'POST', url: TASKS, headers, payload: { title: 'second' } });
      expect([second.statusCode, second.headers['idempotent-replayed']]).toEqual([202, undefined]);
      const secondId = second.json<{ id: string }>().id;
      expect(second.json()).toMatchObject({ title: 'second', version: 1 });
      expect(secondId).not.toBe(firstId);

      const retry = await t.app.inject({ method: 'POST', url: TASKS, headers, payload: { title: 'third?' } });
      expect([retry.statusCode, retry.headers['idempotent-replayed']]).toEqual([202, 'true']);
      expect(retry.json()).toEqual(second.json());
      expect(buffer.depth).toBe(3);

      proxy.pass();
      // PostgreSQL's return starts the replay.
      await waitUntil('the buffer is replayed', () => buffer.depth === 0);
      const rows = await withDatabase(t.databaseName, async (client) =>
        (await client.query('SELECT id, title FROM tasks WHERE user_id = $1', [user.userId])).rows,
      );
      expect(rows).toEqual([{ id: secondId, title: 'second' }]);
      const stored = await t.app.inject({ method: 'POST', url: TASKS, headers, payload: { title: 'fourth?' } });
      expect([stored.statusCode, stored.json<{ id: string }>().id]).toEqual([201, secondId]);
    } finally {
      proxy.pass();
    }
  });
});
