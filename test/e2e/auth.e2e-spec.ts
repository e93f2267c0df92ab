/**
 * Auth and profile over HTTP against real PostgreSQL and Redis: every status the OpenAPI document
 * declares for the auth and profile operations, token rotation and reuse, revocation across two instances, forged tokens,
 * login throttling, and that no response ever carries a password hash.
 */
import type { LightMyRequestResponse } from 'fastify';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { decodeJwt, signJwt } from '../support/jwt.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, spawnServer, waitForStatus } from '../support/server-process.js';
import { REDIS_URL, startTestApp, withDatabase, type TestApp } from '../support/test-app.js';

const SECRET = 'e2e-secret-0123456789-0123456789-0123456789';
const problemOf = (res: LightMyRequestResponse) => ({ status: res.statusCode, code: res.json().code });
const withoutExp = ({ exp: _exp, ...rest }: Record<string, unknown>) => rest;

describe('auth and profile (e2e)', () => {
  let t: TestApp;
  const seen: string[] = [];
  const call = async (options: Parameters<TestApp['app']['inject']>[0]) => {
    const res = await t.app.inject(options as never);
    seen.push(res.body);
    return res;
  };

  const secondBuffer = mkdtempSync(path.join(tmpdir(), 'taskd-buffer-'));

  beforeAll(async () => {
    t = await startTestApp({ env: { JWT_SECRET: SECRET } });
  });

  afterAll(async () => {
    rmSync(secondBuffer, { recursive: true, force: true });
    for (const body of seen) expect(body).not.toMatch(/\$argon2|"passwordHash":|"password_hash":/);
    await t.close();
  });

  const register = (payload: unknown) => call({ method: 'POST', url: '/api/v1/auth/register', payload: payload as object });
  const login = (email: string, password: string, remoteAddress = '10.1.1.1') =>
    call({ method: 'POST', url: '/api/v1/auth/login', payload: { email, password }, remoteAddress });
  const refresh = (refreshToken: string) => call({ method: 'POST', url: '/api/v1/auth/refresh', payload: { refreshToken } });
  const profile = (auth: { authorization: string }) => call({ method: 'GET', url: '/api/v1/profile', headers: auth });

  describe('POST /register', () => {
    it('creates a user with a normalised email and an argon2id hash, never returned', async () => {
      const res = await register({ email: '  Ada.Lovelace@Example.COM ', password: 'analytical-engine', name: ' Ada ' });
      expect(res.statusCode).toBe(201);
      const body = res.json();
      expect(body).toEqual({
        id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-7/),
        email: 'ada.lovelace@example.com',
        name: 'Ada',
        createdAt: expect.any(String),
        updatedAt: body.createdAt,
      });
      const stored = await withDatabase(t.databaseName, (c) =>
        c.query('SELECT email, password_hash FROM users WHERE id = $1', [body.id]),
      );
      expect(stored.rows[0].email).toBe('ada.lovelace@example.com');
      const params = /^\$argon2id\$v=19\$([^$]+)\$/.exec(stored.rows[0].password_hash)?.[1]?.split(',').sort();
      expect(params).toEqual(['m=19456', 'p=1', 't=2']);
    });

    it('answers 409 EMAIL_TAKEN for an email already in use, whatever its case', async () => {
      await register({ email: 'taken@example.com', password: 'password-1', name: 'A' });
      const res = await register({ email: 'TAKEN@example.com', password: 'password-2', name: 'B' });
      expect(problemOf(res)).toEqual({ status: 409, code: 'EMAIL_TAKEN' });
      const count = await withDatabase(t.databaseName, (c) => c.query("SELECT count(*)::int AS n FROM users WHERE email = 'taken@example.com'"));
      expect(count.rows[0].n).toBe(1);
    });

    it.each([
      ['a bad email', { email: 'not-an-email', password: 'password-1', name: 'A' }, 'email'],
      ['a short password', { email: 'x1@example.com', password: '1234567', name: 'A' }, 'password'],
      ['a long password', { email: 'x2@example.com', password: 'p'.repeat(129), name: 'A' }, 'password'],
      ['an empty name', { email: 'x3@example.com', password: 'password-1', name: '   ' }, 'name'],
      ['a long name', { email: 'x4@example.com', password: 'password-1', name: 'n'.repeat(101) }, 'name'],
      ['an unknown field', { email: 'x5@example.com', password: 'password-1', name: 'A', role: 'admin' }, 'role'],
      ['a client-chosen id', { email: 'x6@example.com', password: 'password-1', name: 'A', id: '01936f3e-8b1c-7def-8a12-3456789abcde' }, 'id'],
    ])('rejects %s with 400 VALIDATION_FAILED and stores nothing', async (_label, payload, field) => {
      const res = await register(payload);
      expect(res.statusCode).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      const body = res.json();
      expect(body.code).toBe('VALIDATION_FAILED');
      expect(body.errors.map((e: { field: string }) => e.field)).toContain(field);
      const count = await withDatabase(t.databaseName, (c) => c.query('SELECT count(*)::int AS n FROM users WHERE email = $1', [payload.email]));
      expect(count.rows[0].n).toBe(0);
    });

    it('answers malformed JSON with 400, a non-JSON body with 415 and an oversized one with 413', async () => {
      const malformed = await call({ method: 'POST', url: '/api/v1/auth/register', headers: { 'content-type': 'application/json' }, payload: '{"email":' });
      expect(problemOf(malformed)).toEqual({ status: 400, code: 'VALIDATION_FAILED' });
      const text = await call({ method: 'POST', url: '/api/v1/auth/register', headers: { 'content-type': 'text/plain' }, payload: 'hello' });
      expect(problemOf(text)).toEqual({ status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
      expect(text.headers['content-type']).toMatch(/^application\/problem\+json/);
      const huge = await call({
        method: 'POST',
        url: '/api/v1/auth/register',
        payload: { email: 'big@example.com', password: 'password-1', name: 'x'.repeat(200 * 1024) },
      });
      expect(problemOf(huge)).toEqual({ status: 413, code: 'PAYLOAD_TOO_LARGE' });
    });
  });

  describe('POST /login', () => {
    let user: TestUser;
    beforeAll(async () => {
      user = await registerAndLogin(t.app);
    });

    it('returns a token pair whose access token carries sub, sid, iat, exp, iss and aud', async () => {
      const res = await login(user.email, user.password);
      expect(res.statusCode).toBe(200);
      // Tokens must not be kept by a cache along the way (RFC 6749 §5.1).
      expect(res.headers['cache-control']).toBe('no-store');
      const pair = res.json();
      expect(pair).toEqual({ accessToken: expect.any(String), refreshToken: expect.any(String), tokenType: 'Bearer', expiresIn: 900 });
      const { header, payload } = decodeJwt(pair.accessToken);
      expect(header.alg).toBe('HS256');
      expect(payload).toMatchObject({ sub: user.userId, sid: expect.any(String), iss: 'taskd', aud: 'taskd-api' });
      expect((payload.exp as number) - (payload.iat as number)).toBe(900);
      expect(pair.refreshToken.length).toBeGreaterThanOrEqual(43);
    });

    it('gives the same 401 for an unknown email and a wrong password', async () => {
      const unknown = await login('nobody@example.com', 'whatever-123', '10.9.9.1');
      const wrong = await login(user.email, 'wrong-password', '10.9.9.2');
      const strip = (res: LightMyRequestResponse) => ({ ...res.json(), requestId: undefined });
      expect(unknown.statusCode).toBe(401);
      expect(strip(unknown)).toEqual(strip(wrong));
      expect(strip(unknown).code).toBe('INVALID_CREDENTIALS');
    });

    it('rejects unknown body fields', async () => {
      const res = await call({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password: user.password, remember: true } });
      expect(problemOf(res)).toEqual({ status: 400, code: 'VALIDATION_FAILED' });
    });
  });

  describe('POST /refresh', () => {
    it('rotates: the old refresh token dies, the new one works', async () => {
      const user = await registerAndLogin(t.app);
      const first = await refresh(user.refreshToken);
      expect(first.statusCode).toBe(200);
      expect(first.headers['cache-control']).toBe('no-store');
      const pair = first.json();
      expect(pair.refreshToken).not.toBe(user.refreshToken);
      expect(decodeJwt(pair.accessToken).payload.sid).toBe(decodeJwt(user.accessToken).payload.sid);
      const second = await refresh(pair.refreshToken);
      expect(second.statusCode).toBe(200);
      expect((await profile({ authorization: `Bearer ${second.json().accessToken}` })).statusCode).toBe(200);
    });

    it('revokes the whole session when a used refresh token is presented again', async () => {
      const user = await registerAndLogin(t.app);
      const rotated = (await refresh(user.refreshToken)).json();
      const reuse = await refresh(user.refreshToken);
      expect(problemOf(reuse)).toEqual({ status: 401, code: 'INVALID_REFRESH_TOKEN' });
      expect(problemOf(await refresh(rotated.refreshToken))).toEqual({ status: 401, code: 'INVALID_REFRESH_TOKEN' });
      expect(problemOf(await profile({ authorization: `Bearer ${rotated.accessToken}` }))).toEqual({ status: 401, code: 'UNAUTHENTICATED' });
      expect(problemOf(await profile(user.auth))).toEqual({ status: 401, code: 'UNAUTHENTICATED' });
    });

    it('answers 401 for unknown or malformed tokens and 400 for a missing one', async () => {
      expect(problemOf(await refresh('garbage'))).toEqual({ status: 401, code: 'INVALID_REFRESH_TOKEN' });
      expect(problemOf(await refresh('01936f3e-8b1c-7def-8a12-3456789abcde.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'))).toEqual({ status: 401, code: 'INVALID_REFRESH_TOKEN' });
      const missing = await call({ method: 'POST', url: '/api/v1/auth/refresh', payload: {} });
      expect(problemOf(missing)).toEqual({ status: 400, code: 'VALIDATION_FAILED' });
    });
  });

  describe('POST /logout and sessions', () => {
    it('logout revokes the current session: access and refresh tokens stop working', async () => {
      const user = await registerAndLogin(t.app);
      const res = await call({ method: 'POST', url: '/api/v1/auth/logout', headers: user.auth });
      expect(res.statusCode).toBe(204);
      expect(res.body).toBe('');
      expect(problemOf(await profile(user.auth))).toEqual({ status: 401, code: 'UNAUTHENTICATED' });
      expect(problemOf(await refresh(user.refreshToken))).toEqual({ status: 401, code: 'INVALID_REFRESH_TOKEN' });
    });

    it('lists the caller’s sessions newest first, marking the current one', async () => {
      const user = await registerAndLogin(t.app);
      await new Promise((r) => setTimeout(r, 5));
      const second = (await call({ method: 'POST', url: '/api/v1/auth/login', payload: { email: user.email, password: user.password }, headers: { 'user-agent': 'phone/1.0' } })).json();
      const res = await call({ method: 'GET', url: '/api/v1/auth/sessions', headers: user.auth });
      expect(res.statusCode).toBe(200);
      const sessions = res.json();
      expect(sessions).toHaveLength(2);
      expect(sessions[0]).toEqual({
        id: decodeJwt(second.accessToken).payload.sid,
        userAgent: 'phone/1.0',
        ip: expect.any(String),
        createdAt: expect.any(String),
        lastUsedAt: expect.any(String),
        expiresAt: expect.any(String),
        current: false,
      });
      expect(sessions[1]).toMatchObject({ id: decodeJwt(user.accessToken).payload.sid, current: true });
      expect(Date.parse(sessions[0].createdAt)).toBeGreaterThanOrEqual(Date.parse(sessions[1].createdAt));
    });

    it('revokes one session by id; another user’s id is 404, a malformed one 400', async () => {
      const user = await registerAndLogin(t.app);
      const other = await registerAndLogin(t.app);
      const second = (await login(user.email, user.password)).json();
      const secondSid = decodeJwt(second.accessToken).payload.sid as string;
      const otherSid = decodeJwt(other.accessToken).payload.sid as string;

      expect(problemOf(await call({ method: 'DELETE', url: `/api/v1/auth/sessions/${otherSid}`, headers: user.auth }))).toEqual({ status: 404, code: 'NOT_FOUND' });
      expect((await profile(other.auth)).statusCode).toBe(200);
      expect(problemOf(await call({ method: 'DELETE', url: '/api/v1/auth/sessions/not-a-uuid', headers: user.auth }))).toEqual({ status: 400, code: 'VALIDATION_FAILED' });

      const res = await call({ method: 'DELETE', url: `/api/v1/auth/sessions/${secondSid}`, headers: user.auth });
      expect(res.statusCode).toBe(204);
      expect(problemOf(await profile({ authorization: `Bearer ${second.accessToken}` }))).toEqual({ status: 401, code: 'UNAUTHENTICATED' });
      expect(problemOf(await refresh(second.refreshToken))).toEqual({ status: 401, code: 'INVALID_REFRESH_TOKEN' });
      expect((await profile(user.auth)).statusCode).toBe(200);
      const left = (await call({ method: 'GET', url: '/api/v1/auth/sessions', headers: user.auth })).json();
      expect(left.map((s: { id: string }) => s.id)).toEqual([decodeJwt(user.accessToken).payload.sid]);
    });

    it('DELETE /sessions logs out everywhere', async () => {
      const user = await registerAndLogin(t.app);
      const second = (await login(user.email, user.password)).json();
      const res = await call({ method: 'DELETE', url: '/api/v1/auth/sessions', headers: user.auth });
      expect(res.statusCode).toBe(204);
      expect((await profile(user.auth)).statusCode).toBe(401);
      expect((await profile({ authorization: `Bearer ${second.accessToken}` })).statusCode).toBe(401);
      expect((await refresh(second.refreshToken)).statusCode).toBe(401);
    });
  });

  describe('access tokens', () => {
    let user: TestUser;
    let claims: Record<string, unknown>;
    beforeAll(async () => {
      user = await registerAndLogin(t.app);
      claims = decodeJwt(user.accessToken).payload;
    });

    it.each([
      ['no Authorization header', undefined],
      ['a malformed header', 'Bearer'],
      ['a non-bearer scheme', 'Basic dXNlcjpwYXNz'],
      ['alg none', () => signJwt(claims, '', { alg: 'none', typ: 'JWT' })],
      ['a wrong key', () => signJwt(claims, 'another-secret-0123456789-0123456789-0123')],
      ['a tampered payload', () => { const [h, , s] = user.accessToken.split('.'); return `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: '01936f3e-8b1c-7def-8a12-3456789abcde' })).toString('base64url')}.${s}`; }],
      ['an expired token', () => signJwt({ ...claims, iat: 1_000_000, exp: 1_000_900 }, SECRET)],
      ['a wrong audience', () => signJwt({ ...claims, aud: 'someone-else' }, SECRET)],
      ['a wrong issuer', () => signJwt({ ...claims, iss: 'someone-else' }, SECRET)],
      ['HS512 instead of the pinned HS256', () => signJwt(claims, SECRET, { alg: 'HS512', typ: 'JWT' })],
      ['a token without exp', () => signJwt(withoutExp(claims), SECRET)],
      ['a crit header', () => signJwt(claims, SECRET, { alg: 'HS256', typ: 'JWT', crit: ['exp'] })],
      ['a crit header naming an unknown extension', () => signJwt({ ...claims, ext: 1 }, SECRET, { alg: 'HS256', typ: 'JWT', crit: ['ext'], ext: 1 })],
    ])('refuses %s with 401 UNAUTHENTICATED', async (_label, token) => {
      const value = typeof token === 'function' ? `Bearer ${token()}` : token;
      const res = await call({ method: 'GET', url: '/api/v1/profile', headers: value ? { authorization: value } : {} });
      expect(problemOf(res)).toEqual({ status: 401, code: 'UNAUTHENTICATED' });
    });

    it('refuses a token that worked before once it has expired, and a tampered copy of it', async () => {
      const exp = Math.floor(Date.now() / 1000) + 2;
      const token = signJwt({ ...claims, exp }, SECRET);
      const headers = { authorization: `Bearer ${token}` };
      expect((await call({ method: 'GET', url: '/api/v1/profile', headers })).statusCode).toBe(200);
      expect((await call({ method: 'GET', url: '/api/v1/profile', headers })).statusCode).toBe(200);
      const [h, p] = token.split('.');
      const tampered = `${h}.${p}.${'A'.repeat(43)}`;
      expect(problemOf(await call({ method: 'GET', url: '/api/v1/profile', headers: { authorization: `Bearer ${tampered}` } }))).toEqual({ status: 401, code: 'UNAUTHENTICATED' });
      await new Promise((resolve) => setTimeout(resolve, exp * 1000 - Date.now() + 10));
      expect(problemOf(await call({ method: 'GET', url: '/api/v1/profile', headers }))).toEqual({ status: 401, code: 'UNAUTHENTICATED' });
    });

    it('accepts a token signed correctly by hand (the forgeries fail for their flaw only)', async () => {
      const res = await call({ method: 'GET', url: '/api/v1/profile', headers: { authorization: `Bearer ${signJwt(claims, SECRET)}` } });
      expect(res.statusCode).toBe(200);
    });

    it('dies on a second instance within a second of logout there being done here', async () => {
      // The second instance is the built server in its own process: instances share only
      // PostgreSQL and Redis, as they do in production.
      const port = await freePort();
      const second = spawnServer(
        {
          NODE_ENV: 'test',
          DATABASE_URL: t.databaseUrl,
          REDIS_URL,
          REDIS_KEY_PREFIX: t.config.redis.keyPrefix,
          BUFFER_PATH: secondBuffer,
          JWT_SECRET: SECRET,
          LOG_LEVEL: 'warn',
        },
        port,
      );
      try {
        await waitForStatus(`${second.url}/health/ready`, 200);
        const victim = await registerAndLogin(t.app);
        const viaSecond = () => fetch(`${second.url}/api/v1/profile`, { headers: victim.auth }).then((r) => r.status);
        expect(await viaSecond()).toBe(200);
        expect((await call({ method: 'POST', url: '/api/v1/auth/logout', headers: victim.auth })).statusCode).toBe(204);
        const loggedOutAt = Date.now();
        let status = 200;
        while (Date.now() - loggedOutAt < 1_000 && status !== 401) {
          status = await viaSecond();
          if (status !== 401) await new Promise((r) => setTimeout(r, 20));
        }
        expect(status).toBe(401);
      } finally {
        second.child.kill('SIGTERM');
        await second.exited;
      }
    });
  });

  describe('profile', () => {
    it('GET returns the user', async () => {
      const user = await registerAndLogin(t.app);
      const res = await profile(user.auth);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ id: user.userId, email: user.email, name: user.name, createdAt: expect.any(String), updatedAt: expect.any(String) });
    });

    it('PATCH changes the name and the (normalised) email, given the current password', async () => {
      const user = await registerAndLogin(t.app);
      const before = (await profile(user.auth)).json();
      await new Promise((r) => setTimeout(r, 5));
      const res = await call({ method: 'PATCH', url: '/api/v1/profile', headers: user.auth, payload: { name: 'Grace', email: ' Grace@Example.com', currentPassword: user.password } });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ id: user.userId, name: 'Grace', email: 'grace@example.com' });
      expect(Date.parse(res.json().updatedAt)).toBeGreaterThan(Date.parse(before.updatedAt));
      const stored = await withDatabase(t.databaseName, (c) => c.query('SELECT name, email, version FROM users WHERE id = $1', [user.userId]));
      expect(stored.rows[0]).toEqual({ name: 'Grace', email: 'grace@example.com', version: 2 });
    });

    it('PATCH answers 409 for an email in use and changes nothing', async () => {
      const user = await registerAndLogin(t.app);
      const other = await registerAndLogin(t.app);
      const second = (await login(user.email, user.password)).json();
      const res = await call({ method: 'PATCH', url: '/api/v1/profile', headers: user.auth, payload: { name: 'Changed', email: other.email.toUpperCase(), currentPassword: user.password } });
      expect(problemOf(res)).toEqual({ status: 409, code: 'EMAIL_TAKEN' });
      expect((await profile(user.auth)).json()).toMatchObject({ name: user.name, email: user.email });
      // Refused before anything else is done: the user's other session lives on.
      expect((await profile({ authorization: `Bearer ${second.accessToken}` })).statusCode).toBe(200);
    });

    it('PATCH with an email but no currentPassword: 400 naming the field, nothing changed', async () => {
      const user = await registerAndLogin(t.app);
      const res = await call({ method: 'PATCH', url: '/api/v1/profile', headers: user.auth, payload: { email: 'moved@example.com' } });
      expect(problemOf(res)).toEqual({ status: 400, code: 'VALIDATION_FAILED' });
      expect(res.json().errors).toEqual([{ field: 'currentPassword', message: expect.any(String) }]);
      const stored = await withDatabase(t.databaseName, (c) => c.query('SELECT email FROM users WHERE id = $1', [user.userId]));
      expect(stored.rows[0].email).toBe(user.email);
    });

    it('PATCH with an email and a wrong currentPassword: 403, nothing changed, no session revoked', async () => {
      const user = await registerAndLogin(t.app);
      const other = (await login(user.email, user.password)).json();
      const res = await call({ method: 'PATCH', url: '/api/v1/profile', headers: user.auth, payload: { email: 'thief@example.com', currentPassword: 'not the password' } });
      expect(problemOf(res)).toEqual({ status: 403, code: 'INVALID_CURRENT_PASSWORD' });
      const stored = await withDatabase(t.databaseName, (c) => c.query('SELECT email, version FROM users WHERE id = $1', [user.userId]));
      expect(stored.rows[0]).toEqual({ email: user.email, version: 1 });
      expect((await profile({ authorization: `Bearer ${other.accessToken}` })).statusCode).toBe(200);
      expect((await login(user.email, user.password, '10.5.5.5')).statusCode).toBe(200);
    });

    it('PATCH changing the email revokes every other session, keeps this one, and the new email logs in', async () => {
      const user = await registerAndLogin(t.app);
      const other = (await login(user.email, user.password)).json();
      const res = await call({ method: 'PATCH', url: '/api/v1/profile', headers: user.auth, payload: { email: 'moved.owner@example.com', currentPassword: user.password } });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ email: 'moved.owner@example.com' });
      expect((await profile(user.auth)).statusCode).toBe(200);
      expect(problemOf(await profile({ authorization: `Bearer ${other.accessToken}` }))).toEqual({ status: 401, code: 'UNAUTHENTICATED' });
      expect(problemOf(await refresh(other.refreshToken))).toEqual({ status: 401, code: 'INVALID_REFRESH_TOKEN' });
      const sessions = (await call({ method: 'GET', url: '/api/v1/auth/sessions', headers: user.auth })).json();
      expect(sessions.map((s: { id: string }) => s.id)).toEqual([decodeJwt(user.accessToken).payload.sid]);
      expect((await login('moved.owner@example.com', user.password, '10.5.5.6')).statusCode).toBe(200);
      expect((await login(user.email, user.password, '10.5.5.7')).statusCode).toBe(401);
    });

    it('PATCH renaming alone needs no password and revokes nothing', async () => {
      const user = await registerAndLogin(t.app);
      const other = (await login(user.email, user.password)).json();
      const res = await call({ method: 'PATCH', url: '/api/v1/profile', headers: user.auth, payload: { name: 'Renamed' } });
      expect(res.statusCode).toBe(200);
      expect((await profile({ authorization: `Bearer ${other.accessToken}` })).statusCode).toBe(200);
    });

    it.each([
      [{ id: '01936f3e-8b1c-7def-8a12-3456789abcde' }],
      [{ name: '' }],
      [{ email: 'nope' }],
      [{ passwordHash: 'x' }],
    ])('PATCH rejects %j with 400', async (payload) => {
      const user = await registerAndLogin(t.app);
      const res = await call({ method: 'PATCH', url: '/api/v1/profile', headers: user.auth, payload });
      expect(problemOf(res)).toEqual({ status: 400, code: 'VALIDATION_FAILED' });
    });

    it('PUT /password: 403 for a wrong current password, changing nothing', async () => {
      const user = await registerAndLogin(t.app);
      const res = await call({ method: 'PUT', url: '/api/v1/profile/password', headers: user.auth, payload: { currentPassword: 'wrong-one', newPassword: 'brand-new-password' } });
      expect(problemOf(res)).toEqual({ status: 403, code: 'INVALID_CURRENT_PASSWORD' });
      expect((await login(user.email, user.password)).statusCode).toBe(200);
    });

    it('PUT /password: 204, the new password works, every other session is revoked', async () => {
      const user = await registerAndLogin(t.app);
      const other = (await login(user.email, user.password)).json();
      const res = await call({ method: 'PUT', url: '/api/v1/profile/password', headers: user.auth, payload: { currentPassword: user.password, newPassword: 'brand-new-password' } });
      expect(res.statusCode).toBe(204);
      expect((await profile(user.auth)).statusCode).toBe(200);
      expect(problemOf(await profile({ authorization: `Bearer ${other.accessToken}` }))).toEqual({ status: 401, code: 'UNAUTHENTICATED' });
      expect(problemOf(await refresh(other.refreshToken))).toEqual({ status: 401, code: 'INVALID_REFRESH_TOKEN' });
      expect((await login(user.email, user.password, '10.2.2.2')).statusCode).toBe(401);
      expect((await login(user.email, 'brand-new-password', '10.2.2.3')).statusCode).toBe(200);
    });
  });
});

describe('login throttling (e2e)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({
      env: { LOGIN_MAX_FAILURES_PER_EMAIL: '3', LOGIN_MAX_FAILURES_PER_IP: '6', LOGIN_WINDOW_SECONDS: '2', LOGIN_BLOCK_SECONDS: '2' },
    });
  });

  afterAll(async () => {
    await t.close();
  });

  const attempt = (email: string, password: string, remoteAddress: string) =>
    t.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email, password }, remoteAddress });

  it('blocks an email after a burst of failures with 429 and Retry-After, then lets its owner back in', async () => {
    const user = await registerAndLogin(t.app);
    for (let i = 0; i < 3; i++) expect((await attempt(user.email, 'wrong-password', `10.3.0.${i + 1}`)).statusCode).toBe(401);
    const blocked = await attempt(user.email, user.password, '10.3.0.9');
    expect(blocked.statusCode).toBe(429);
    expect(blocked.json().code).toBe('RATE_LIMITED');
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(blocked.headers['retry-after'])).toBeLessThanOrEqual(2);
    await new Promise((r) => setTimeout(r, Number(blocked.headers['retry-after']) * 1000 + 100));
    expect((await attempt(user.email, user.password, '10.3.0.9')).statusCode).toBe(200);
  });

  it('counts wrong current passwords of a password change per user: 429 past the budget, even for the right one, nothing changed', async () => {
    const user = await registerAndLogin(t.app);
    const change = (currentPassword: string) =>
      t.app.inject({
        method: 'PUT',
        url: '/api/v1/profile/password',
        headers: user.auth,
        payload: { currentPassword, newPassword: 'a taken-over password' },
      });
    // Guesses sent together are all counted: no more than the budget of them is even checked.
    const guesses = await Promise.all(Array.from({ length: 6 }, (_, i) => change(`guess number ${i}`)));
    const statuses = guesses.map((res) => res.statusCode).sort();
    expect(statuses).toEqual([403, 403, 403, 429, 429, 429]);
    const blocked = await change(user.password);
    expect(blocked.statusCode).toBe(429);
    expect(blocked.json().code).toBe('RATE_LIMITED');
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(blocked.headers['retry-after'])).toBeLessThanOrEqual(2);
    // Nothing changed: the old password still logs in, the token still works.
    expect((await attempt(user.email, user.password, '10.3.1.1')).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'GET', url: '/api/v1/profile', headers: user.auth })).statusCode).toBe(200);
    // A login elsewhere does not clear this budget; the block ends by itself.
    await new Promise((r) => setTimeout(r, Number(blocked.headers['retry-after']) * 1000 + 100));
    expect((await change(user.password)).statusCode).toBe(204);
    expect((await attempt(user.email, 'a taken-over password', '10.3.1.2')).statusCode).toBe(200);
  });

  it('counts wrong current passwords of an email change in the same per-user budget as the password change', async () => {
    const user = await registerAndLogin(t.app);
    const moveEmail = (currentPassword: string) =>
      t.app.inject({ method: 'PATCH', url: '/api/v1/profile', headers: user.auth, payload: { email: 'taken-over@example.com', currentPassword } });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await moveEmail(`guess ${i}`)).statusCode);
    expect(statuses).toEqual([403, 403, 403]);
    const blockedChange = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/profile/password',
      headers: user.auth,
      payload: { currentPassword: user.password, newPassword: 'a taken-over password' },
    });
    expect(blockedChange.statusCode).toBe(429);
    const blockedMove = await moveEmail(user.password);
    expect(blockedMove.statusCode).toBe(429);
    expect(blockedMove.json().code).toBe('RATE_LIMITED');
    expect(Number(blockedMove.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const stored = await withDatabase(t.databaseName, (c) => c.query('SELECT email FROM users WHERE id = $1', [user.userId]));
    expect(stored.rows[0].email).toBe(user.email);
    await new Promise((r) => setTimeout(r, Number(blockedMove.headers['retry-after']) * 1000 + 100));
    expect((await moveEmail(user.password)).statusCode).toBe(200);
  });

  it('blocks an IP that fails across many emails', async () => {
    for (let i = 0; i < 6; i++) expect((await attempt(`spray-${i}@example.com`, 'wrong-password', '10.4.0.1')).statusCode).toBe(401);
    const blocked = await attempt('spray-new@example.com', 'wrong-password', '10.4.0.1');
    expect(blocked.statusCode).toBe(429);
    expect(blocked.headers['retry-after']).toBeDefined();
    expect((await attempt('spray-new@example.com', 'wrong-password', '10.4.0.2')).statusCode).toBe(401);
  });
});
