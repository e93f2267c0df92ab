/**
 * Unknown fields are refused before any per-field work: in bodies and query strings, a key the
 * DTO does not declare as its own (the names of Object.prototype included) is a 400 naming it;
 * a request with more keys than the DTO declares is refused at once, whatever its known fields
 * say, and so is one holding more values than any request (keys nested under a field, an array
 * body); the `errors` list is capped (MAX_FIELD_ERRORS entries, `errorsOmitted` counting the
 * rest), so that ten thousand unknown keys answer a small 400, not one entry each.
 *
 * CI budget: 30 s
 */
import { randomBytes } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { startTestApp, withDatabase, type TestApp } from '../support/test-app.js';

const MAX_FIELD_ERRORS = 20;
/** Names every plain object answers to through its prototype. */
const PROTOTYPE_NAMES = [
  'constructor',
  'hasOwnProperty',
  'isPrototypeOf',
  'propertyIsEnumerable',
  'toLocaleString',
  'toString',
  'valueOf',
  '__defineGetter__',
  '__lookupGetter__',
];

interface Problem {
  status: number;
  code: string;
  detail: string;
  errors?: { field: string; message: string }[];
  errorsOmitted?: number;
}

describe('unknown fields (e2e)', () => {
  let t: TestApp;
  let user: TestUser;

  beforeAll(async () => {
    t = await startTestApp();
    user = await registerAndLogin(t.app);
  });

  afterAll(async () => {
    await t.close();
  });

  const register = (payload: string | object) =>
    t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/register',
      headers: { 'content-type': 'application/json' },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
      remoteAddress: `10.20.${randomBytes(1)[0]}.${randomBytes(1)[0]}`,
    });
  const createTask = (payload: object) =>
    t.app.inject({ method: 'POST', url: '/api/v1/tasks', headers: user.auth, payload });
  const listTasks = (query: string) => t.app.inject({ method: 'GET', url: `/api/v1/tasks?${query}`, headers: user.auth });
  const usersWithEmail = (email: string) =>
    withDatabase(t.databaseName, async (c) => (await c.query('SELECT count(*)::int AS n FROM users WHERE email = $1', [email])).rows[0].n as number);
  const taskCount = () =>
    withDatabase(t.databaseName, async (c) => (await c.query('SELECT count(*)::int AS n FROM tasks')).rows[0].n as number);

  describe('a body of 10,000 unknown keys', () => {
    const unknownKeys = (count: number) => Array.from({ length: count }, (_, i) => `k${i}`);
    const withUnknown = (known: Record<string, unknown>, count: number) =>
      JSON.stringify({ ...known, ...Object.fromEntries(unknownKeys(count).map((key) => [key, 1])) });

    it('is refused with a capped list of errors and a count of the rest, storing nothing', async () => {
      const email = 'flood@example.com';
      const res = await register(withUnknown({ email, password: 'password-1', name: 'Flood' }, 10_000));
      const body = problemOf(res);
      expect(body).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', detail: 'k0 is not an allowed field' });
      expect(body.errors).toEqual(unknownKeys(MAX_FIELD_ERRORS).map((field) => ({ field, message: 'is not an allowed field' })));
      expect(body.errorsOmitted).toBe(10_000 - MAX_FIELD_ERRORS);
      expect(res.body.length).toBeLessThan(4_096);
      expect(await usersWithEmail(email)).toBe(0);
    });

    it('is refused for its keys before its known fields are looked at', async () => {
      const res = await register(withUnknown({ email: 'not-an-email', password: 'short', name: '' }, 10_000));
      const body = problemOf(res);
      expect(body.status).toBe(400);
      expect(body.errors!.every((error) => error.message === 'is not an allowed field')).toBe(true);
      expect(body.errors!.map((error) => error.field)).not.toEqual(expect.arrayContaining(['email']));
      expect(body.errorsOmitted).toBe(10_000 - MAX_FIELD_ERRORS);
    });

    it('is refused on an authenticated write as well, creating no task', async () => {
      const before = await taskCount();
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/v1/tasks',
        headers: { ...user.auth, 'content-type': 'application/json' },
        payload: withUnknown({ title: 'flood' }, 10_000),
      });
      expect(problemOf(res)).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', errorsOmitted: 10_000 - MAX_FIELD_ERRORS });
      expect(problemOf(res).errors).toHaveLength(MAX_FIELD_ERRORS);
      expect(await taskCount()).toBe(before);
    });

    it('is refused at once when its keys are nested under a known field', async () => {
      const email = 'nested-flood@example.com';
      const nested = Object.fromEntries(unknownKeys(10_000).map((key) => [key, 1]));
      const res = await register({ email: { nested }, password: 'password-1', name: email });
      expect(problemOf(res)).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', detail: 'the input holds more than 1000 values' });
      expect(await usersWithEmail(email)).toBe(0);
    });

    it('is refused like unknown keys when the body is an array, its indices the keys', async () => {
      const res = await register(`[${Array.from({ length: 30_000 }, () => '{}').join(',')}]`);
      const body = problemOf(res);
      expect(body).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', detail: '0 is not an allowed field', errorsOmitted: 30_000 - MAX_FIELD_ERRORS });
      expect(body.errors).toHaveLength(MAX_FIELD_ERRORS);
    });

    it('lists every unknown key, uncapped, when there are few', async () => {
      const res = await createTask({ title: 'a few', one: 1, two: 2 });
      const body = problemOf(res);
      expect(body.errors).toEqual([
        { field: 'one', message: 'is not an allowed field' },
        { field: 'two', message: 'is not an allowed field' },
      ]);
      expect(body).not.toHaveProperty('errorsOmitted');
    });
  });

  describe('the names of Object.prototype', () => {
    it.each(PROTOTYPE_NAMES)('refuses %s in a body, storing nothing', async (name) => {
      const email = `proto-${name.toLowerCase()}@example.com`;
      const res = await register({ email, password: 'password-1', name: 'Proto', [name]: 'x' });
      expect(problemOf(res)).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', errors: [{ field: name, message: 'is not an allowed field' }] });
      expect(await usersWithEmail(email)).toBe(0);
    });

    it.each(PROTOTYPE_NAMES)('refuses %s in a body with no more keys than the DTO declares', async (name) => {
      const before = await taskCount();
      const res = await createTask({ title: 'proto', [name]: 'x' });
      expect(problemOf(res)).toMatchObject({ status: 400, errors: [{ field: name, message: 'is not an allowed field' }] });
      expect(await taskCount()).toBe(before);
    });

    it('refuses __proto__ in a body', async () => {
      const res = await register('{"email":"proto-proto@example.com","password":"password-1","name":"P","__proto__":{"x":1}}');
      expect(problemOf(res)).toMatchObject({ status: 400, code: 'VALIDATION_FAILED' });
      expect(await usersWithEmail('proto-proto@example.com')).toBe(0);
    });

    it.each([...PROTOTYPE_NAMES, '__proto__'])('refuses %s in a query string', async (name) => {
      const res = await listTasks(`${encodeURIComponent(name)}=x`);
      expect(problemOf(res)).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', errors: [{ field: name, message: 'is not an allowed field' }] });
    });
  });

  describe('a query string of many unknown parameters', () => {
    it('is refused with a capped list of errors and a count of the rest', async () => {
      const query = Array.from({ length: 1_000 }, (_, i) => `p${i}=1`).join('&');
      const body = problemOf(await listTasks(`status=todo&${query}`));
      expect(body).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', detail: 'p0 is not an allowed field', errorsOmitted: 1_000 - MAX_FIELD_ERRORS });
      expect(body.errors).toHaveLength(MAX_FIELD_ERRORS);
    });

    it('still serves a query of known parameters only', async () => {
      const res = await listTasks('status=todo&priority=high&sort=-createdAt&limit=5&q=x');
      expect(res.statusCode).toBe(200);
    });
  });
});

function problemOf(res: LightMyRequestResponse): Problem {
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  return res.json<Problem>();
}
