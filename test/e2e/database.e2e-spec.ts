/**
 * The pool's statements are prepared once per connection. A migration run by another instance
 * (a rolling deploy) can change the type of a column they return; PostgreSQL then refuses the
 * prepared form ("cached plan must not change result type"). No client may see that.
 */
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { startTestApp, withDatabase, type TestApp } from '../support/test-app.js';

describe('prepared statements (e2e)', () => {
  let t: TestApp;
  let user: TestUser;

  beforeAll(async () => {
    t = await startTestApp();
    user = await registerAndLogin(t.app);
  });

  afterAll(async () => {
    await t.close();
  });

  it('survive another instance changing the type of a column they return', async () => {
    const created = await t.app.inject({ method: 'POST', url: '/api/v1/tasks', headers: user.auth, payload: { title: 'Typed' } });
    expect(created.statusCode).toBe(201);
    const id = created.json<{ id: string }>().id;
    const burst = () =>
      Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          t.app.inject(
            i % 2 === 0
              ? { method: 'GET', url: '/api/v1/tasks', headers: user.auth }
              : { method: 'GET', url: `/api/v1/tasks/${id}`, headers: user.auth },
          ),
        ),
      );
    // Prepared on as many pooled connections as a burst opens.
    expect(new Set((await burst()).map((res) => res.statusCode))).toEqual(new Set([200]));

    await withDatabase(t.databaseName, (client) => client.query('ALTER TABLE tasks ALTER COLUMN title TYPE varchar(300)'));

    const after = await burst();
    expect(after.map((res) => res.statusCode)).toEqual(after.map(() => 200));
    expect(after[0]!.json()).toMatchObject({ items: [expect.objectContaining({ id, title: 'Typed' })] });
    expect(after[1]!.json()).toMatchObject({ id, title: 'Typed' });
    const renamed = await t.app.inject({ method: 'PATCH', url: `/api/v1/tasks/${id}`, headers: user.auth, payload: { title: 'Typed again' } });
    expect(renamed.statusCode).toBe(200);
  });
});
