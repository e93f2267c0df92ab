/**
 * Ids are accepted in any letter case and used, stored and answered in lower case. An
 * upper-case task id must reach the same task, and the same queued writes, as the lower-case
 * one: a delete queued by an upper-case id still frees its task's idempotency key for a create
 * queued behind it. An upper-case id of one's own session revokes it.
 *
 * CI budget: 60 s
 */
import { jest } from '@jest/globals';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import { BufferService } from '../../src/modules/buffer/buffer.service.js';
import { LmdbBuffer } from '../../src/modules/buffer/lmdb-buffer.js';
import { registerAndLogin } from '../support/auth.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { decodeJwt } from '../support/jwt.js';
import { PG_URL, startTestApp, withDatabase, type TestApp } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

jest.setTimeout(60_000);

const TASKS = '/api/v1/tasks';

describe('ids in any letter case (e2e)', () => {
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

  it('reads and changes a task by its upper-case id, answering the id in lower case', async () => {
    const user = await registerAndLogin(t.app);
    const created = await t.app.inject({ method: 'POST', url: TASKS, headers: user.auth, payload: { title: 'case' } });
    const id = created.json<{ id: string }>().id;
    const read = await t.app.inject({ method: 'GET', url: `${TASKS}/${id.toUpperCase()}`, headers: user.auth });
    expect([read.statusCode, read.json().id]).toEqual([200, id]);
    const changed = await t.app.inject({ method: 'PATCH', url: `${TASKS}/${id.toUpperCase()}`, headers: user.auth, payload: { status: 'done' } });
    expect([changed.statusCode, changed.json().id]).toEqual([200, id]);
  });

  it('queues a create behind a delete queued by the upper-case id: the key ends on the new task', async () => {
    const user = await registerAndLogin(t.app);
    const headers = { ...user.auth, 'idempotency-key': 'upper-case-report' };
    const first = await t.app.inject({ method: 'POST', url: TASKS, headers, payload: { title: 'first' } });
    expect(first.statusCode).toBe(201);
    const firstId = first.json<{ id: string }>().id;

    proxy.cut();
    const deleted = await t.app.inject({ method: 'DELETE', url: `${TASKS}/${firstId.toUpperCase()}`, headers: user.auth });
    expect([deleted.statusCode, deleted.headers['x-write-status']]).toEqual([202, 'buffered']);

    // The replay that PostgreSQL's return starts is held back, so that the delete stays queued.
    const replays = t.app.get(BufferService);
    const held = jest.spyOn(replays, 'replay').mockImplementation(() => new Promise(() => undefined));
    proxy.pass();
    await waitUntil('PostgreSQL is seen up again', () => t.app.get(PostgresAvailability).isUp());
    expect(t.app.get(LmdbBuffer).depth).toBe(1);

    const second = await t.app.inject({ method: 'POST', url: TASKS, headers, payload: { title: 'second' } });
    expect([second.statusCode, second.headers['x-write-status'], second.headers['idempotent-replayed']]).toEqual([202, 'buffered', undefined]);
    const secondId = second.json<{ id: string }>().id;
    expect(secondId).not.toBe(firstId);

    held.mockRestore();
    await replays.replay();
    const rows = await withDatabase(t.databaseName, async (client) =>
      (await client.query('SELECT id, title FROM tasks WHERE idempotency_key = $1', ['upper-case-report'])).rows,
    );
    expect(rows).toEqual([{ id: secondId, title: 'second' }]);
  });

  it('revokes one’s own session by its upper-case id', async () => {
    const user = await registerAndLogin(t.app);
    const second = (
      await t.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password: user.password } })
    ).json<{ accessToken: string }>();
    const sid = decodeJwt(second.accessToken).payload.sid as string;
    const revoked = await t.app.inject({ method: 'DELETE', url: `/api/v1/auth/sessions/${sid.toUpperCase()}`, headers: user.auth });
    expect(revoked.statusCode).toBe(204);
    const after = await t.app.inject({ method: 'GET', url: '/api/v1/profile', headers: { authorization: `Bearer ${second.accessToken}` } });
    expect(after.statusCode).toBe(401);
    const listed = (await t.app.inject({ method: 'GET', url: '/api/v1/auth/sessions', headers: user.auth })).json<Array<{ id: string }>>();
    expect(listed.map((s) => s.id)).toEqual([decodeJwt(user.accessToken).payload.sid]);
  });
});
