/**
 * A direct create that commits while its answer is lost (the connection dies after the COMMIT)
 * is buffered (202) with the same operation id. With two replicas (docs/design/replicas.md), the client may delete that task through the other replica before the first replays
 * its queue: the replay must not insert the deleted task again. The delete's tombstone is what
 * the replayed create meets.
 *
 * The lost answer is simulated the way the other suites simulate crashes: the real INSERT runs
 * and commits, then the connection is cut and the call fails with pg's own message.
 */
import { jest } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { PostgresAvailability } from '../../src/infrastructure/database/postgres-availability.js';
import { LmdbBuffer } from '../../src/modules/buffer/lmdb-buffer.js';
import { TasksRepository } from '../../src/modules/tasks/tasks.repository.js';
import { registerAndLogin } from '../support/auth.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { PG_URL, startTestApp, uniqueName, withDatabase, type TestApp } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

jest.setTimeout(60_000);

const TASKS = '/api/v1/tasks';

describe('direct create committed, answer lost, replayed after a delete elsewhere (e2e)', () => {
  let proxy: FaultProxy;
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    proxy = await FaultProxy.towards(PG_URL);
    const env = { REQUEST_TIMEOUT_MS: '5000', JWT_SECRET: randomBytes(32).toString('hex') };
    const databaseName = uniqueName();
    a = await startTestApp({ databaseName, databaseHostPort: proxy.hostPort, env });
    b = await startTestApp({ databaseName, env });
  });

  afterAll(async () => {
    proxy?.pass();
    await b?.close({ keepDatabase: true });
    await a?.close();
    await proxy?.close();
  });

  it('never brings back a task that was deleted after its 202', async () => {
    const user = await registerAndLogin(b.app);
    const repository = a.app.get(TasksRepository);
    const insert = repository.insert.bind(repository);
    jest.spyOn(repository, 'insert').mockImplementationOnce(async (db, task) => {
      await insert(db, task); // committed (autocommit statement)
      proxy.cut(); // … and the connection dies before the answer arrives
      throw new Error('Connection terminated unexpectedly');
    });

    const created = await a.app.inject({ method: 'POST', url: TASKS, headers: user.auth, payload: { title: 'short-lived' } });
    jest.restoreAllMocks();
    expect(created.statusCode).toBe(202);
    const id = created.json<{ id: string }>().id;

    // The client deletes it through replica B, which reaches PostgreSQL.
    const deleted = await b.app.inject({ method: 'DELETE', url: `${TASKS}/${id}`, headers: user.auth });
    expect(deleted.statusCode).toBe(204);

    // A's connection comes back; it replays what it queued.
    proxy.pass();
    const database = a.app.get(PostgresAvailability);
    const buffer = a.app.get(LmdbBuffer);
    await waitUntil('replica A drained its buffer', () => database.isUp() && buffer.depth === 0);

    const after = await b.app.inject({ method: 'GET', url: `${TASKS}/${id}`, headers: user.auth });
    const rows = await withDatabase(a.databaseName, async (client) =>
      (await client.query('SELECT id, title FROM tasks WHERE id = $1', [id])).rows,
    );
    expect({ getAfterReplay: after.statusCode, rows }).toEqual({ getAfterReplay: 404, rows: [] });
  });
});
