/**
 * A delete that meets a create being applied at that very moment by another replica's replay:
 * the create's transaction has inserted the row but not committed, so the delete cannot see the
 * row and would write a tombstone the create never sees (the create checked for one before it
 * was written): an acknowledged delete undone. Both take the task's write lock; the delete
 * waits for the create to commit, then removes its row.
 *
 * The other replica's replay is played here by a transaction on its own connection that does
 * what replay does: the task's write lock, then the insert.
 *
 * CI budget: 10 s
 */
import { jest } from '@jest/globals';
import { Redis } from 'ioredis';
import pg from 'pg';
import { lockForWrite } from '../../src/infrastructure/database/write-locks.js';
import { newId } from '../../src/common/util/ids.js';
import { taskLockKey } from '../../src/modules/tasks/task-operations.js';
import { registerAndLogin } from '../support/auth.js';
import {
  databaseUrlFor,
  REDIS_URL,
  startTestApp,
  withDatabase,
  type TestApp,
} from '../support/test-app.js';

jest.setTimeout(30_000);

const TASKS = '/api/v1/tasks';

describe('a delete during the replay of its create on another replica (e2e)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp();
  });

  afterAll(async () => {
    await t?.close();
  });

  it('waits for the create to commit and removes its row: the delete is not undone', async () => {
    const user = await registerAndLogin(t.app);
    const id = newId();
    // Another replica accepted the create (202) and recorded it as pending, as it does.
    const redis = new Redis(REDIS_URL);
    await redis.hset(`${t.databaseName}:{u:${user.userId}}:pending`, id, '1');
    redis.disconnect();

    const replay = new pg.Client({ connectionString: databaseUrlFor(t.databaseName) });
    await replay.connect();
    try {
      await replay.query('BEGIN');
      await lockForWrite(
        { query: (sql: string, params: unknown[]) => replay.query(sql, params) } as never,
        [taskLockKey(user.userId, id)],
      );
      await replay.query(
        `INSERT INTO tasks (id, user_id, title, status, priority, created_at, updated_at, version)
         VALUES ($1, $2, 'being replayed', 'todo', 2, now(), now(), 1)`,
        [id, user.userId],
      );

      let answered = false;
      const deleting = t.app
        .inject({ method: 'DELETE', url: `${TASKS}/${id}`, headers: user.auth })
        .then((res) => {
          answered = true;
          return res;
        });
      await new Promise((resolve) => setTimeout(resolve, 500));
      // Still waiting for the create's transaction.
      expect(answered).toBe(false);
      await replay.query('COMMIT');

      const res = await deleting;
      expect(res.statusCode).toBe(204);
    } finally {
      await replay.end();
    }
    const left = await withDatabase(t.databaseName, async (client) => ({
      rows: (await client.query('SELECT id FROM tasks WHERE id = $1', [id])).rowCount,
      tombstones: (await client.query('SELECT id FROM task_tombstones WHERE id = $1', [id]))
        .rowCount,
    }));
    expect(left).toEqual({ rows: 0, tombstones: 1 });
    const gone = await t.app.inject({ method: 'GET', url: `${TASKS}/${id}`, headers: user.auth });
    expect(gone.statusCode).toBe(404);
  });
});
