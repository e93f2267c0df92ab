/**
 * Auth under concurrency and partial outages: what a client sees when requests race each other
 * or Redis is gone midway. Guesses sent together must not get more verdicts than the throttle
 * allows; a password change must leave no session of the old password alive and never be
 * undone by a concurrent login's hash upgrade; a change refused for want of Redis changes
 * nothing.
 */
import argon2 from 'argon2';
import { registerAndLogin } from '../support/auth.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { REDIS_URL, startTestApp, withDatabase, type TestApp } from '../support/test-app.js';

describe('login throttle under concurrent guesses', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({
      env: {
        LOGIN_MAX_FAILURES_PER_EMAIL: '3',
        LOGIN_MAX_FAILURES_PER_IP: '1000',
        LOGIN_BLOCK_SECONDS: '60',
        PASSWORD_HASH_CONCURRENCY: '1',
      },
    });
  });

  afterAll(async () => {
    await t.close();
  });

  it('answers at most LOGIN_MAX_FAILURES_PER_EMAIL wrong guesses with 401 when they arrive together', async () => {
    const user = await registerAndLogin(t.app);
    const guesses = Array.from({ length: 12 }, (_, i) => `wrong-guess-${i}`);
    // The attacker's list happens to contain the right password as its 13th entry.
    guesses.push(user.password);
    const results = await Promise.all(
      guesses.map((password, i) =>
        t.app.inject({
          method: 'POST',
          url: '/api/v1/auth/login',
          payload: { email: user.email, password },
          remoteAddress: `10.77.0.${i + 1}`,
        }),
      ),
    );
    const statuses = results.map((r) => r.statusCode);
    const verdicts = statuses.filter((s) => s === 401).length;
    // Only 3 guesses may be judged before the email is blocked; the rest must be 429.
    expect({ wrongGuessesJudged: verdicts, correctGuess: statuses.at(-1) }).toEqual({
      wrongGuessesJudged: 3,
      correctGuess: 429,
    });
  });
});

describe('password change with Redis down', () => {
  let t: TestApp;
  let proxy: FaultProxy;

  beforeAll(async () => {
    const target = new URL(REDIS_URL);
    proxy = await FaultProxy.start({ host: target.hostname, port: Number(target.port || 6379) });
    t = await startTestApp({ env: { REDIS_URL: `redis://${proxy.hostPort}${target.pathname}` } });
  });

  afterAll(async () => {
    proxy.pass();
    await t.close();
    await proxy.close();
  });

  it('does not change the password while leaving the other sessions alive', async () => {
    const user = await registerAndLogin(t.app);
    const other = (
      await t.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password: user.password }, remoteAddress: '10.88.0.2' })
    ).json() as { accessToken: string; refreshToken: string };

    proxy.cut();
    await new Promise((r) => setTimeout(r, 200));
    const res = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/profile/password',
      headers: user.auth,
      payload: { currentPassword: user.password, newPassword: 'brand-new-password' },
    });
    const stored = await withDatabase(t.databaseName, (c) => c.query('SELECT password_hash FROM users WHERE id = $1', [user.userId]));
    const passwordChanged = !(await argon2.verify(stored.rows[0].password_hash, user.password));

    proxy.pass();
    // Wait for the app's Redis client to reconnect.
    const until = Date.now() + 10_000;
    let sessions = 0;
    while (Date.now() < until && sessions !== 200) {
      sessions = (await t.app.inject({ method: 'GET', url: '/api/v1/auth/sessions', headers: user.auth })).statusCode;
      if (sessions !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    const otherProfile = await t.app.inject({ method: 'GET', url: '/api/v1/profile', headers: { authorization: `Bearer ${other.accessToken}` } });
    const otherRefresh = await t.app.inject({ method: 'POST', url: '/api/v1/auth/refresh', payload: { refreshToken: other.refreshToken } });

    // Either the change happened and the other session is dead, or it was refused and nothing changed.
    expect({
      status: res.statusCode,
      passwordChanged,
      otherSessionAccess: otherProfile.statusCode,
      otherSessionRefresh: otherRefresh.statusCode,
    }).toEqual(
      passwordChanged
        ? { status: 204, passwordChanged: true, otherSessionAccess: 401, otherSessionRefresh: 401 }
        : { status: 503, passwordChanged: false, otherSessionAccess: 200, otherSessionRefresh: 200 },
    );
  });
});

describe('argon2 rehash racing a password change', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ env: { PASSWORD_HASH_CONCURRENCY: '1' } });
  });

  afterAll(async () => {
    await t.close();
  });

  it('keeps the new password after a concurrent login with the old one', async () => {
    const user = await registerAndLogin(t.app);
    // The user's hash was made with older (weaker) parameters, as after a parameter upgrade.
    const legacy = await argon2.hash(user.password, { type: argon2.argon2id, memoryCost: 4096, timeCost: 1, parallelism: 1 });
    await withDatabase(t.databaseName, (c) => c.query('UPDATE users SET password_hash = $2 WHERE id = $1', [user.userId, legacy]));

    const change = t.app.inject({
      method: 'PUT',
      url: '/api/v1/profile/password',
      headers: user.auth,
      payload: { currentPassword: user.password, newPassword: 'brand-new-password' },
    });
    await new Promise((r) => setTimeout(r, 3));
    const oldLogin = t.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password: user.password }, remoteAddress: '10.66.0.1' });
    const [changed, logged] = await Promise.all([change, oldLogin]);
    expect(changed.statusCode).toBe(204);

    const stored = await withDatabase(t.databaseName, (c) => c.query('SELECT password_hash FROM users WHERE id = $1', [user.userId]));
    const hash = stored.rows[0].password_hash as string;
    expect({
      oldLogin: logged.statusCode,
      storedHashMatchesNewPassword: await argon2.verify(hash, 'brand-new-password'),
      storedHashMatchesOldPassword: await argon2.verify(hash, user.password),
    }).toEqual({ oldLogin: expect.any(Number), storedHashMatchesNewPassword: true, storedHashMatchesOldPassword: false });
  });
});

describe('login with the old password during a password change', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ env: { PASSWORD_HASH_CONCURRENCY: '1' } });
  });

  afterAll(async () => {
    await t.close();
  });

  it('leaves no session of the old password alive after the 204', async () => {
    const survivors: Array<{ delayMs: number; access: number; refresh: number }> = [];
    for (const delayMs of [5, 15, 25, 35, 45, 55, 70]) {
      const user = await registerAndLogin(t.app);
      const change = t.app.inject({
        method: 'PUT',
        url: '/api/v1/profile/password',
        headers: user.auth,
        payload: { currentPassword: user.password, newPassword: 'brand-new-password' },
      });
      await new Promise((r) => setTimeout(r, delayMs));
      const oldLogin = t.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password: user.password }, remoteAddress: '10.65.0.1' });
      const [changed, logged] = await Promise.all([change, oldLogin]);
      expect(changed.statusCode).toBe(204);
      if (logged.statusCode !== 200) continue; // the login came too late: the old password was refused
      const pair = logged.json() as { accessToken: string; refreshToken: string };
      // After the change has answered 204: does the session obtained with the old password still work?
      const access = await t.app.inject({ method: 'GET', url: '/api/v1/profile', headers: { authorization: `Bearer ${pair.accessToken}` } });
      const refresh = await t.app.inject({ method: 'POST', url: '/api/v1/auth/refresh', payload: { refreshToken: pair.refreshToken } });
      if (access.statusCode !== 401 || refresh.statusCode !== 401) survivors.push({ delayMs, access: access.statusCode, refresh: refresh.statusCode });
    }
    expect(survivors).toEqual([]);
  });
});

describe('login throttle budgets count failures only', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ env: { LOGIN_MAX_FAILURES_PER_EMAIL: '2', LOGIN_MAX_FAILURES_PER_IP: '2', LOGIN_BLOCK_SECONDS: '60' } });
  });

  afterAll(async () => {
    await t.close();
  });

  it('lets one address log in again and again, and still blocks its third failure', async () => {
    const user = await registerAndLogin(t.app);
    const login = (password: string) =>
      t.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password }, remoteAddress: '10.64.0.9' });
    const successes = [];
    for (let i = 0; i < 5; i++) successes.push((await login(user.password)).statusCode);
    expect(successes).toEqual([200, 200, 200, 200, 200]);
    const failures = [];
    for (let i = 0; i < 3; i++) failures.push((await login('wrong-password')).statusCode);
    expect(failures).toEqual([401, 401, 429]);
  });
});
