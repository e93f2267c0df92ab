import { jest } from '@jest/globals';
import { InvalidCredentialsError, RateLimitedError } from '../../common/errors/domain-errors.js';
import { RequestContext } from '../../common/context/request-context.js';
import type { User } from '../users/user.js';
import type { UsersRepository } from '../users/users.repository.js';
import { AuthService } from './auth.service.js';
import type { LoginThrottle } from './login-throttle.js';
import type { PasswordHasher } from './password-hasher.js';
import type { SessionsService } from './sessions.service.js';

const user: User = {
  id: 'u1', email: 'ada@example.com', name: 'Ada', passwordHash: 'hash',
  createdAt: new Date(0), updatedAt: new Date(0), version: 1,
};
const client = { ip: '10.0.0.1', userAgent: 'ua' };

function setup() {
  const users = {
    findByEmail: jest.fn<UsersRepository['findByEmail']>(),
    insert: jest.fn<UsersRepository['insert']>().mockResolvedValue(undefined),
    rehashPassword: jest.fn<UsersRepository['rehashPassword']>().mockResolvedValue(undefined),
  };
  const hasher = {
    hash: jest.fn<PasswordHasher['hash']>().mockResolvedValue('new-hash'),
    verify: jest.fn<PasswordHasher['verify']>(),
    verifyDummy: jest.fn<PasswordHasher['verifyDummy']>().mockResolvedValue(false),
    needsRehash: jest.fn<PasswordHasher['needsRehash']>().mockReturnValue(false),
  };
  const throttle = {
    assertAllowed: jest.fn<LoginThrottle['assertAllowed']>().mockResolvedValue(undefined),
    recordFailure: jest.fn<LoginThrottle['recordFailure']>().mockResolvedValue(undefined),
    recordSuccess: jest.fn<LoginThrottle['recordSuccess']>().mockResolvedValue(undefined),
  };
  const sessions = { start: jest.fn<SessionsService['start']>().mockResolvedValue({ accessToken: 'a', refreshToken: 'r', tokenType: 'Bearer', expiresIn: 900 }) };
  const service = new AuthService(
    users as unknown as UsersRepository,
    hasher as unknown as PasswordHasher,
    throttle as unknown as LoginThrottle,
    sessions as unknown as SessionsService,
  );
  return { service, users, hasher, throttle, sessions, ctx: RequestContext.start('t', 5_000) };
}

describe('AuthService.login', () => {
  it('normalises the email, checks the throttle first, and starts a session on success', async () => {
    const { service, users, hasher, throttle, sessions, ctx } = setup();
    users.findByEmail.mockResolvedValue(user);
    hasher.verify.mockResolvedValue(true);
    await service.login(ctx, '  ADA@example.com ', 'pw', client);
    expect(throttle.assertAllowed).toHaveBeenCalledWith('ada@example.com', '10.0.0.1');
    expect(users.findByEmail).toHaveBeenCalledWith(ctx, 'ada@example.com');
    expect(throttle.recordSuccess).toHaveBeenCalledWith('ada@example.com');
    expect(sessions.start).toHaveBeenCalledWith('u1', client);
  });

  it('spends a dummy verification for an unknown email and answers like a wrong password', async () => {
    const { service, users, hasher, throttle, sessions, ctx } = setup();
    users.findByEmail.mockResolvedValue(undefined);
    await expect(service.login(ctx, 'nobody@example.com', 'pw', client)).rejects.toBeInstanceOf(InvalidCredentialsError);
    expect(hasher.verifyDummy).toHaveBeenCalledWith('pw');
    expect(throttle.recordFailure).toHaveBeenCalledWith('nobody@example.com', '10.0.0.1');
    expect(sessions.start).not.toHaveBeenCalled();
  });

  it('records a failure for a wrong password', async () => {
    const { service, users, hasher, throttle, ctx } = setup();
    users.findByEmail.mockResolvedValue(user);
    hasher.verify.mockResolvedValue(false);
    await expect(service.login(ctx, user.email, 'bad', client)).rejects.toBeInstanceOf(InvalidCredentialsError);
    expect(throttle.recordFailure).toHaveBeenCalledTimes(1);
    expect(throttle.recordSuccess).not.toHaveBeenCalled();
  });

  it('does not even look the user up while throttled', async () => {
    const { service, users, throttle, ctx } = setup();
    throttle.assertAllowed.mockRejectedValue(new RateLimitedError(30));
    await expect(service.login(ctx, user.email, 'pw', client)).rejects.toBeInstanceOf(RateLimitedError);
    expect(users.findByEmail).not.toHaveBeenCalled();
  });

  it('upgrades a hash made with older parameters', async () => {
    const { service, users, hasher, ctx } = setup();
    users.findByEmail.mockResolvedValue(user);
    hasher.verify.mockResolvedValue(true);
    hasher.needsRehash.mockReturnValue(true);
    await service.login(ctx, user.email, 'pw', client);
    expect(users.rehashPassword).toHaveBeenCalledWith(ctx, 'u1', 'new-hash');
  });
});

describe('AuthService.register', () => {
  it('stores a normalised email, a trimmed name and a hash, and returns no hash', async () => {
    const { service, users, ctx } = setup();
    const result = await service.register(ctx, { email: ' Ada@Example.com ', password: 'password-1', name: ' Ada ' });
    const stored = users.insert.mock.calls[0]![1];
    expect(stored).toMatchObject({ email: 'ada@example.com', name: 'Ada', passwordHash: 'new-hash', version: 1 });
    expect(result).not.toHaveProperty('passwordHash');
    expect(result.id).toMatch(/^[0-9a-f-]{36}$/);
  });
});
