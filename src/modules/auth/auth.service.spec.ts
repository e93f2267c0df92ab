import { jest } from '@jest/globals';
import { InvalidCredentialsError, RateLimitedError, ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { RequestContext } from '../../common/context/request-context.js';
import type { AppConfig } from '../../config/app-config.js';
import type { User } from '../users/user.js';
import type { UsersRepository } from '../users/users.repository.js';
import { AuthService } from './auth.service.js';
import type { LoginAttempt, LoginThrottle } from './login-throttle.js';
import type { PasswordHasher } from './password-hasher.js';
import type { RegistrationThrottle } from './registration-throttle.js';
import type { SessionsService } from './sessions.service.js';

const user: User = {
  id: 'u1', email: 'ada@example.com', name: 'Ada', passwordHash: 'hash',
  createdAt: new Date(0), updatedAt: new Date(0), version: 1,
};
const client = { ip: '10.0.0.1', userAgent: 'ua' };
const attempt = { id: 'attempt-1' } as LoginAttempt;

function setup(refusalPauseMs = 0) {
  const users = {
    findByEmail: jest.fn<UsersRepository['findByEmail']>(),
    insert: jest.fn<UsersRepository['insert']>().mockResolvedValue(undefined),
    rehashPassword: jest.fn<UsersRepository['rehashPassword']>().mockResolvedValue(true),
    passwordHashOf: jest.fn<UsersRepository['passwordHashOf']>().mockResolvedValue(user.passwordHash),
  };
  const hasher = {
    hash: jest.fn<PasswordHasher['hash']>().mockResolvedValue('new-hash'),
    verify: jest.fn<PasswordHasher['verify']>(),
    verifyDummy: jest.fn<PasswordHasher['verifyDummy']>().mockResolvedValue(false),
    needsRehash: jest.fn<PasswordHasher['needsRehash']>().mockReturnValue(false),
    assertRoomFor: jest.fn<PasswordHasher['assertRoomFor']>(),
  };
  const throttle = {
    begin: jest.fn<LoginThrottle['begin']>().mockResolvedValue(attempt),
    failed: jest.fn<LoginThrottle['failed']>().mockResolvedValue(undefined),
    succeeded: jest.fn<LoginThrottle['succeeded']>().mockResolvedValue(undefined),
    cancelled: jest.fn<LoginThrottle['cancelled']>().mockResolvedValue(undefined),
  };
  const registrations = { take: jest.fn<RegistrationThrottle['take']>().mockResolvedValue(undefined) };
  const pair = { accessToken: 'a', refreshToken: 'r', tokenType: 'Bearer', expiresIn: 900 } as const;
  // As SessionsService does: the session exists when `stillValid` is asked, and is withdrawn if not.
  const sessions = {
    startChecked: jest.fn<SessionsService['startChecked']>(async (_userId, _client, stillValid) => ((await stillValid()) ? pair : undefined)),
  };
  const service = new AuthService(
    users as unknown as UsersRepository,
    hasher as unknown as PasswordHasher,
    throttle as unknown as LoginThrottle,
    sessions as unknown as SessionsService,
    registrations as unknown as RegistrationThrottle,
    { auth: { registerRefusalPauseMs: refusalPauseMs } } as AppConfig,
  );
  return { service, users, hasher, throttle, sessions, registrations, ctx: RequestContext.start('t', 5_000) };
}

describe('AuthService.login', () => {
  it('normalises the email, checks the throttle first, and starts a session on success', async () => {
    const { service, users, hasher, throttle, sessions, ctx } = setup();
    users.findByEmail.mockResolvedValue(user);
    hasher.verify.mockResolvedValue(true);
    await service.login(ctx, '  ADA@example.com ', 'pw', client);
    expect(throttle.begin).toHaveBeenCalledWith('ada@example.com', '10.0.0.1');
    expect(users.findByEmail).toHaveBeenCalledWith(ctx, 'ada@example.com');
    expect(throttle.succeeded).toHaveBeenCalledWith(attempt);
    expect(throttle.failed).not.toHaveBeenCalled();
    expect(sessions.startChecked).toHaveBeenCalledWith('u1', client, expect.any(Function));
  });

  it('withdraws the session and answers like a wrong password when the password changed meanwhile', async () => {
    const { service, users, hasher, ctx } = setup();
    users.findByEmail.mockResolvedValue(user);
    hasher.verify.mockImplementation(async (hash) => hash === user.passwordHash);
    users.passwordHashOf.mockResolvedValue('hash-of-the-new-password');
    await expect(service.login(ctx, user.email, 'pw', client)).rejects.toBeInstanceOf(InvalidCredentialsError);
    expect(hasher.verify).toHaveBeenLastCalledWith('hash-of-the-new-password', 'pw', ctx);
  });

  it('keeps the session when the hash changed only by another login rehashing the same password', async () => {
    const { service, users, hasher, ctx } = setup();
    users.findByEmail.mockResolvedValue(user);
    hasher.verify.mockResolvedValue(true); // the stored hash, rehashed meanwhile, accepts the password
    users.passwordHashOf.mockResolvedValue('hash-rehashed-by-another-login');
    await expect(service.login(ctx, user.email, 'pw', client)).resolves.toMatchObject({ accessToken: 'a' });
  });

  it('gives the points back when the password could not be checked (PostgreSQL down), and keeps the error', async () => {
    const { service, users, throttle, ctx } = setup();
    const outage = new Error('the database is unavailable');
    users.findByEmail.mockRejectedValue(outage);
    await expect(service.login(ctx, user.email, 'pw', client)).rejects.toBe(outage);
    expect(throttle.cancelled).toHaveBeenCalledWith(attempt);
    expect(throttle.succeeded).not.toHaveBeenCalled();
  });

  it('spends a dummy verification for an unknown email and answers like a wrong password', async () => {
    const { service, users, hasher, throttle, sessions, ctx } = setup();
    users.findByEmail.mockResolvedValue(undefined);
    await expect(service.login(ctx, 'nobody@example.com', 'pw', client)).rejects.toBeInstanceOf(InvalidCredentialsError);
    expect(hasher.verifyDummy).toHaveBeenCalledWith('pw', ctx);
    expect(throttle.failed).toHaveBeenCalledWith(attempt);
    expect(throttle.begin).toHaveBeenCalledWith('nobody@example.com', '10.0.0.1');
    expect(throttle.succeeded).not.toHaveBeenCalled();
    expect(sessions.startChecked).not.toHaveBeenCalled();
  });

  it('records a wrong password as a failure, before answering', async () => {
    const { service, users, hasher, throttle, ctx } = setup();
    users.findByEmail.mockResolvedValue(user);
    hasher.verify.mockResolvedValue(false);
    await expect(service.login(ctx, user.email, 'bad', client)).rejects.toBeInstanceOf(InvalidCredentialsError);
    expect(throttle.begin).toHaveBeenCalledTimes(1);
    expect(throttle.failed).toHaveBeenCalledWith(attempt);
    expect(throttle.succeeded).not.toHaveBeenCalled();
    expect(throttle.cancelled).not.toHaveBeenCalled();
  });

  it('does not even look the user up while throttled', async () => {
    const { service, users, throttle, ctx } = setup();
    throttle.begin.mockRejectedValue(new RateLimitedError(30));
    await expect(service.login(ctx, user.email, 'pw', client)).rejects.toBeInstanceOf(RateLimitedError);
    expect(users.findByEmail).not.toHaveBeenCalled();
  });

  it('upgrades a hash made with older parameters', async () => {
    const { service, users, hasher, ctx } = setup();
    users.findByEmail.mockResolvedValue(user);
    hasher.verify.mockResolvedValue(true);
    hasher.needsRehash.mockReturnValue(true);
    users.passwordHashOf.mockResolvedValue('new-hash');
    await expect(service.login(ctx, user.email, 'pw', client)).resolves.toMatchObject({ accessToken: 'a' });
    expect(users.rehashPassword).toHaveBeenCalledWith(ctx, 'u1', user.passwordHash, 'new-hash');
  });

  it('does not let its rehash overwrite a password changed meanwhile, and withdraws the session', async () => {
    const { service, users, hasher, ctx } = setup();
    users.findByEmail.mockResolvedValue(user);
    hasher.verify.mockResolvedValue(true);
    hasher.needsRehash.mockReturnValue(true);
    users.rehashPassword.mockResolvedValue(false); // the stored hash was no longer the one verified
    users.passwordHashOf.mockResolvedValue('hash-of-the-new-password');
    hasher.verify.mockImplementation(async (hash) => hash === user.passwordHash);
    await expect(service.login(ctx, user.email, 'pw', client)).rejects.toBeInstanceOf(InvalidCredentialsError);
  });
});

describe('AuthService.register', () => {
  it('stores a normalised email, a trimmed name and a hash, and returns no hash', async () => {
    const { service, users, hasher, registrations, ctx } = setup();
    const result = await service.register(ctx, { email: ' Ada@Example.com ', password: 'password-1', name: ' Ada ' }, client);
    const stored = users.insert.mock.calls[0]![1];
    expect(stored).toMatchObject({ email: 'ada@example.com', name: 'Ada', passwordHash: 'new-hash', version: 1 });
    expect(result).not.toHaveProperty('passwordHash');
    expect(result.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(registrations.take).toHaveBeenCalledWith('10.0.0.1');
    expect(hasher.hash).toHaveBeenCalledWith('password-1', ctx, 'registration');
  });

  it('is refused before it is counted when the hash queue has no room for it', async () => {
    const { service, users, hasher, registrations, ctx } = setup();
    hasher.assertRoomFor.mockImplementation(() => {
      throw new ServiceUnavailableError('busy', 1);
    });
    await expect(service.register(ctx, { email: 'a@example.com', password: 'password-1', name: 'A' }, client)).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(hasher.assertRoomFor).toHaveBeenCalledWith('registration');
    expect(registrations.take).not.toHaveBeenCalled();
    expect(users.insert).not.toHaveBeenCalled();
  });

  it('answers a refusal (full queue, per-IP limit) only after the pause', async () => {
    jest.useFakeTimers();
    try {
      const { service, hasher, registrations, ctx } = setup(250);
      const input = { email: 'a@example.com', password: 'password-1', name: 'A' };
      hasher.assertRoomFor.mockImplementationOnce(() => {
        throw new ServiceUnavailableError('busy', 1);
      });
      registrations.take.mockRejectedValueOnce(new RateLimitedError(60));
      for (const refused of [ServiceUnavailableError, RateLimitedError]) {
        let settled = false;
        const answer = service.register(ctx, input, client).finally(() => (settled = true));
        answer.catch(() => undefined);
        await jest.advanceTimersByTimeAsync(249);
        expect(settled).toBe(false);
        await jest.advanceTimersByTimeAsync(1);
        await expect(answer).rejects.toBeInstanceOf(refused);
      }
    } finally {
      jest.useRealTimers();
    }
  });

  it('ends the pause when the client goes, and never pauses a created account', async () => {
    const { service, hasher, ctx } = setup(60_000);
    hasher.assertRoomFor.mockImplementationOnce(() => {
      throw new ServiceUnavailableError('busy', 1);
    });
    const answer = service.register(ctx, { email: 'a@example.com', password: 'password-1', name: 'A' }, client);
    ctx.abort('client-closed');
    await expect(answer).rejects.toBeInstanceOf(ServiceUnavailableError);
    const started = Date.now();
    await service.register(RequestContext.start('t2', 5_000), { email: 'b@example.com', password: 'password-1', name: 'B' }, client);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('computes no hash and stores nothing past the per-IP limit', async () => {
    const { service, users, hasher, registrations, ctx } = setup();
    registrations.take.mockRejectedValue(new RateLimitedError(60));
    await expect(service.register(ctx, { email: 'a@example.com', password: 'password-1', name: 'A' }, client)).rejects.toBeInstanceOf(RateLimitedError);
    expect(hasher.hash).not.toHaveBeenCalled();
    expect(users.insert).not.toHaveBeenCalled();
  });
});
