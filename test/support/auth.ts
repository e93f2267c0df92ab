/**
 * Registers and logs in a fresh user over HTTP, for suites that need an authenticated caller.
 */
import { randomBytes } from 'node:crypto';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';

export interface TestUser {
  userId: string;
  email: string;
  password: string;
  name: string;
  accessToken: string;
  refreshToken: string;
  /** Headers for an authenticated request. */
  auth: { authorization: string };
}

export async function registerAndLogin(
  app: NestFastifyApplication,
  overrides: { email?: string; password?: string; name?: string; ip?: string } = {},
): Promise<TestUser> {
  const email = overrides.email ?? `user-${randomBytes(6).toString('hex')}@example.test`;
  const password = overrides.password ?? `pw-${randomBytes(8).toString('hex')}`;
  const name = overrides.name ?? 'Test User';
  const remoteAddress = overrides.ip ?? `10.${rnd()}.${rnd()}.${rnd()}`;
  const registered = await app.inject({
    method: 'POST',
    url: '/api/v1/auth/register',
    payload: { email, password, name },
    remoteAddress,
  });
  if (registered.statusCode !== 201) throw new Error(`register failed: ${registered.statusCode} ${registered.body}`);
  const login = await app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { email, password },
    remoteAddress,
  });
  if (login.statusCode !== 200) throw new Error(`login failed: ${login.statusCode} ${login.body}`);
  const tokens = login.json() as { accessToken: string; refreshToken: string };
  return {
    userId: (registered.json() as { id: string }).id,
    email,
    password,
    name,
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken,
    auth: { authorization: `Bearer ${tokens.accessToken}` },
  };
}

function rnd(): number {
  return Math.floor(Math.random() * 250) + 1;
}
