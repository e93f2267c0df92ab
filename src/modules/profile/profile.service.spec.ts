/**
 * The profile use cases' decisions about PostgreSQL being down: a rename alone goes through the
 * write path (direct, or buffered for a 202); email and password changes never wait in the
 * buffer. Strict mocks of the repository; the real `WritePath` over stand-ins of PostgreSQL's
 * state and of the buffer. No I/O.
 */
import { beforeEach, describe, expect, it, jest } from '@jest/globals';
import { RequestContext } from '../../common/context/request-context.js';
import { NotFoundError, RateLimitedError, ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { ChangeClock } from '../../common/time/change-clock.js';
import type { Clock } from '../../common/time/clock.js';
import type { DatabaseService } from '../../infrastructure/database/database.service.js';
import type { SqlExecutor } from '../../infrastructure/database/sql-executor.js';
import type { LoginThrottle, PasswordCheck } from '../auth/login-throttle.js';
import type { PasswordHasher } from '../auth/password-hasher.js';
import type { SessionsService } from '../auth/sessions.service.js';
import type { AppliedOperations } from '../buffer/applied-operations.js';
import { BufferCounters } from '../buffer/buffer-counters.js';
import { PermanentOperationError } from '../buffer/buffer.errors.js';
import type { AddResult, LmdbBuffer } from '../buffer/lmdb-buffer.js';
import type { BufferedOperation } from '../buffer/operation.js';
import { OperationRegistry } from '../buffer/operation-registry.js';
import { WritePath } from '../buffer/write-path.js';
import type { User } from '../users/user.js';
import type { UsersRepository } from '../users/users.repository.js';
import { ProfileOperations, type RenamePayload } from './profile-operations.js';
import { ProfileService } from './profile.service.js';

const USER = '0193a000-0000-7000-8000-000000000001';
const NOW = new Date('2026-02-20T09:15:00.000Z');
const POOL: SqlExecutor = {
  query: async () => {
    throw new Error('unexpected SQL: the repository is mocked');
  },
};

function user(overrides: Partial<User> = {}): User {
  return {
    id: USER,
    email: 'ada@example.com',
    name: 'Ada',
    passwordHash: 'hash',
    createdAt: new Date('2026-01-01T00:00:00.000Z'),
    updatedAt: new Date('2026-01-01T00:00:00.000Z'),
    version: 1,
    ...overrides,
  };
}

function strictUsers() {
  const unexpected = (name: string) =>
    jest.fn(() => {
      throw new Error(`unexpected call: users.${name}`);
    });
  return {
    findById: unexpected('findById'),
    findByEmail: unexpected('findByEmail'),
    updateProfile: unexpected('updateProfile'),
    updatePasswordHash: unexpected('updatePasswordHash'),
    rename: unexpected('rename'),
    exists: unexpected('exists'),
  } as unknown as { [K in keyof UsersRepository]: jest.Mock<UsersRepository[K]> };
}

describe('ProfileService', () => {
  let users: ReturnType<typeof strictUsers>;
  let service: ProfileService;
  let registry: OperationRegistry;
  let ctx: RequestContext;
  let up: boolean;
  let queue: BufferedOperation[];
  let sessions: { revokeAll: jest.Mock<(userId: string, keep?: string) => Promise<void>> };
  let hasher: { verify: jest.Mock<() => Promise<boolean>>; hash: jest.Mock<() => Promise<string>> };
  let throttle: {
    beginPasswordCheck: jest.Mock<(userId: string) => Promise<PasswordCheck>>;
    passwordCheckFailed: jest.Mock<(check: PasswordCheck) => Promise<void>>;
    passwordCheckSucceeded: jest.Mock<(check: PasswordCheck) => Promise<void>>;
    passwordCheckCancelled: jest.Mock<(check: PasswordCheck) => Promise<void>>;
  };
  const check = { id: 'check-1' } as PasswordCheck;
  const clock: Clock = { now: () => new Date(NOW) };

  beforeEach(() => {
    up = true;
    queue = [];
    users = strictUsers();
    registry = new OperationRegistry();
    new ProfileOperations(registry, users as unknown as UsersRepository).onModuleInit();
    const database = { isUp: () => up, executor: () => POOL };
    const buffer = {
      isEmpty: () => queue.length === 0,
      isQueuedUnder: () => false,
      add: async (op: BufferedOperation): Promise<AddResult> => {
        queue.push(op);
        return { duplicate: false, entry: { key: queue.length, op, enqueuedAt: 0, bytes: 1 } };
      },
    };
    const writePath = new WritePath(
      database as unknown as DatabaseService,
      buffer as unknown as LmdbBuffer,
      registry,
      {} as AppliedOperations,
      new BufferCounters(),
    );
    hasher = { verify: jest.fn(async () => true), hash: jest.fn(async () => 'new-hash') };
    sessions = { revokeAll: jest.fn(async () => undefined) };
    throttle = {
      beginPasswordCheck: jest.fn(async () => check),
      passwordCheckFailed: jest.fn(async () => undefined),
      passwordCheckSucceeded: jest.fn(async () => undefined),
      passwordCheckCancelled: jest.fn(async () => undefined),
    };
    service = new ProfileService(
      users as unknown as UsersRepository,
      hasher as unknown as PasswordHasher,
      sessions as unknown as SessionsService,
      writePath,
      new ChangeClock(clock),
      clock,
      throttle as unknown as LoginThrottle,
    );
    ctx = RequestContext.start('req-1', 10_000);
    ctx.userId = USER;
    ctx.release();
  });

  it('renames directly on the pool, guarded by the change time, and answers the user (200)', async () => {
    const renamed = user({ name: 'Ada King', updatedAt: NOW });
    users.rename.mockResolvedValue(renamed);

    await expect(service.update(ctx, { name: 'Ada King' })).resolves.toEqual({
      buffered: false,
      user: expect.objectContaining({ id: USER, name: 'Ada King', updatedAt: NOW.toISOString() }),
    });
    expect(users.rename).toHaveBeenCalledWith(POOL, {
      id: USER,
      name: 'Ada King',
      updatedAt: '2026-02-20T09:15:00.000000Z',
    });
  });

  it('stamps a rename again after a later change found on the row (another clock ahead of this one)', async () => {
    users.rename.mockResolvedValueOnce(undefined).mockResolvedValueOnce(user({ name: 'B' }));
    users.findById.mockResolvedValue(user({ updatedAt: new Date('2026-02-20T09:20:00.000Z') }));

    await expect(service.update(ctx, { name: 'B' })).resolves.toMatchObject({ buffered: false });
    expect(users.rename.mock.calls[1]![1].updatedAt).toBe('2026-02-20T09:20:00.001000Z');
  });

  it('answers NOT_FOUND when the user is gone', async () => {
    users.rename.mockResolvedValue(undefined);
    users.findById.mockResolvedValue(undefined);
    await expect(service.update(ctx, { name: 'B' })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('queues a rename while PostgreSQL is down and answers the id, the name and the resulting updatedAt (202)', async () => {
    up = false;

    await expect(service.update(ctx, { name: 'Offline Ada' })).resolves.toEqual({
      buffered: true,
      rename: { id: USER, name: 'Offline Ada', updatedAt: NOW.toISOString() },
    });
    await service.update(ctx, { name: 'Second' });
    expect(queue.map((op) => [op.kind, op.userId, op.payload])).toEqual([
      ['profile.rename', USER, { name: 'Offline Ada', updatedAt: '2026-02-20T09:15:00.000000Z' }],
      ['profile.rename', USER, { name: 'Second', updatedAt: '2026-02-20T09:15:00.000001Z' }],
    ]);
  });

  it('answers 503 to an email change while PostgreSQL is down, or while buffered writes are still queued, queueing nothing', async () => {
    up = false;
    await expect(service.update(ctx, { email: 'new@example.com', currentPassword: 'pw' })).rejects.toBeInstanceOf(
      ServiceUnavailableError,
    );
    await expect(
      service.update(ctx, { name: 'With email', email: 'new@example.com', currentPassword: 'pw' }),
    ).rejects.toBeInstanceOf(ServiceUnavailableError);
    await service.update(ctx, { name: 'queued' });
    up = true;
    await expect(service.update(ctx, { email: 'new@example.com', currentPassword: 'pw' })).rejects.toMatchObject({
      code: 'SERVICE_UNAVAILABLE',
      retryAfterSeconds: expect.any(Number),
    });
    expect(queue).toHaveLength(1);
  });

  it('changes no password when the other sessions cannot be revoked (Redis down: 503)', async () => {
    users.findById.mockResolvedValue(user());
    sessions.revokeAll.mockRejectedValueOnce(new ServiceUnavailableError('the session store is unavailable'));
    await expect(service.changePassword(ctx, 'old-password', 'new-password')).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(users.updatePasswordHash).not.toHaveBeenCalled();
  });

  it('revokes the other sessions before storing the new hash and again after it', async () => {
    users.findById.mockResolvedValue(user());
    users.updatePasswordHash.mockResolvedValue(undefined);
    await service.changePassword(ctx, 'old-password', 'new-password');
    const [before, after] = sessions.revokeAll.mock.invocationCallOrder;
    const stored = users.updatePasswordHash.mock.invocationCallOrder[0]!;
    expect([before! < stored, stored < after!]).toEqual([true, true]);
    expect(sessions.revokeAll).toHaveBeenCalledWith(USER, ctx.sessionId);
  });

  it('counts the check of the current password before making it, and clears the count when it is right', async () => {
    users.findById.mockResolvedValue(user());
    hasher.verify.mockResolvedValueOnce(false);
    await expect(service.changePassword(ctx, 'wrong', 'new-password')).rejects.toMatchObject({
      code: 'INVALID_CURRENT_PASSWORD',
    });
    expect(throttle.beginPasswordCheck).toHaveBeenCalledWith(USER);
    expect(throttle.beginPasswordCheck.mock.invocationCallOrder[0]).toBeLessThan(hasher.verify.mock.invocationCallOrder[0]!);
    expect(throttle.passwordCheckFailed).toHaveBeenCalledWith(check);
    expect(throttle.passwordCheckSucceeded).not.toHaveBeenCalled();

    users.updatePasswordHash.mockResolvedValue(undefined);
    await service.changePassword(ctx, 'old-password', 'new-password');
    expect(throttle.passwordCheckSucceeded).toHaveBeenCalledWith(check);
  });

  it('gives the place back when the current password could not be checked (hash queue full)', async () => {
    users.findById.mockResolvedValue(user());
    hasher.verify.mockRejectedValueOnce(new ServiceUnavailableError('busy', 1));
    await expect(service.changePassword(ctx, 'old-password', 'new-password')).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(throttle.passwordCheckCancelled).toHaveBeenCalledWith(check);
    expect(throttle.passwordCheckFailed).not.toHaveBeenCalled();
  });

  describe('an email change', () => {
    it('needs the current password: without it, 400 naming the field, nothing read', async () => {
      await expect(service.update(ctx, { email: 'new@example.com' })).rejects.toMatchObject({
        code: 'VALIDATION_FAILED',
        errors: [{ field: 'currentPassword', message: expect.any(String) }],
      });
    });

    it('refuses a wrong current password (403), counting it, changing and revoking nothing', async () => {
      users.findById.mockResolvedValue(user());
      hasher.verify.mockResolvedValueOnce(false);
      await expect(service.update(ctx, { email: 'new@example.com', currentPassword: 'wrong' })).rejects.toMatchObject({
        code: 'INVALID_CURRENT_PASSWORD',
      });
      expect(throttle.passwordCheckFailed).toHaveBeenCalledWith(check);
      expect(sessions.revokeAll).not.toHaveBeenCalled();
      expect(users.updateProfile).not.toHaveBeenCalled();
    });

    it('checks no password once the budget is spent (429)', async () => {
      users.findById.mockResolvedValue(user());
      throttle.beginPasswordCheck.mockRejectedValueOnce(new RateLimitedError(60));
      await expect(service.update(ctx, { email: 'new@example.com', currentPassword: 'pw' })).rejects.toBeInstanceOf(RateLimitedError);
      expect(hasher.verify).not.toHaveBeenCalled();
      expect(users.updateProfile).not.toHaveBeenCalled();
    });

    it('stores the normalised email and revokes the other sessions before and after', async () => {
      users.findById.mockResolvedValue(user());
      users.findByEmail.mockResolvedValue(undefined);
      users.updateProfile.mockResolvedValue(user({ email: 'new@example.com' }));
      ctx.sessionId = 'current-session';
      await service.update(ctx, { email: ' New@Example.com', currentPassword: 'pw' });
      expect(users.updateProfile).toHaveBeenCalledWith(ctx, expect.objectContaining({ id: USER, email: 'new@example.com' }));
      const [before, after] = sessions.revokeAll.mock.invocationCallOrder;
      const stored = users.updateProfile.mock.invocationCallOrder[0]!;
      expect([before! < stored, stored < after!]).toEqual([true, true]);
      expect(sessions.revokeAll).toHaveBeenCalledWith(USER, 'current-session');
      expect(throttle.passwordCheckSucceeded).toHaveBeenCalledWith(check);
    });

    it('answers 409 for an address in use before revoking anything', async () => {
      users.findById.mockResolvedValue(user());
      users.findByEmail.mockResolvedValue(user({ id: 'someone-else', email: 'new@example.com' }));
      await expect(service.update(ctx, { email: 'new@example.com', currentPassword: 'pw' })).rejects.toMatchObject({ code: 'EMAIL_TAKEN' });
      expect(sessions.revokeAll).not.toHaveBeenCalled();
      expect(users.updateProfile).not.toHaveBeenCalled();
    });

    it('revokes nothing when the email stays the same (a name change sent with it)', async () => {
      users.findById.mockResolvedValue(user());
      users.updateProfile.mockResolvedValue(user({ name: 'Ada King' }));
      await service.update(ctx, { name: 'Ada King', email: 'ADA@example.com', currentPassword: 'pw' });
      expect(sessions.revokeAll).not.toHaveBeenCalled();
    });
  });

  it('checks no password and changes nothing once the budget is spent (429)', async () => {
    users.findById.mockResolvedValue(user());
    throttle.beginPasswordCheck.mockRejectedValueOnce(new RateLimitedError(60));
    await expect(service.changePassword(ctx, 'old-password', 'new-password')).rejects.toBeInstanceOf(RateLimitedError);
    expect(hasher.verify).not.toHaveBeenCalled();
    expect(sessions.revokeAll).not.toHaveBeenCalled();
    expect(users.updatePasswordHash).not.toHaveBeenCalled();
  });

  it('answers 503 to a password change while PostgreSQL is down, before reading anything', async () => {
    up = false;
    await expect(
      service.changePassword(ctx, 'old-password', 'new-password'),
    ).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(users.findById).not.toHaveBeenCalled();
  });

  describe('a replayed rename', () => {
    const op: BufferedOperation<RenamePayload> = {
      id: '0193a000-0000-7000-8000-00000000f00d',
      kind: 'profile.rename',
      userId: USER,
      payload: { name: 'Replayed', updatedAt: '2026-02-20T09:15:00.000001Z' },
      acceptedAt: NOW.toISOString(),
      requestId: 'req-1',
    };

    it("renames the operation's own user, guarded by its time", async () => {
      users.rename.mockResolvedValue(user());
      await registry.handlerFor('profile.rename')!(POOL, op);
      expect(users.rename).toHaveBeenCalledWith(POOL, {
        id: USER,
        name: 'Replayed',
        updatedAt: '2026-02-20T09:15:00.000001Z',
      });
    });

    it('does nothing when a change as new or newer is there, and is set aside when the user is gone', async () => {
      users.rename.mockResolvedValue(undefined);
      users.exists.mockResolvedValueOnce(true).mockResolvedValueOnce(false);
      await expect(registry.handlerFor('profile.rename')!(POOL, op)).resolves.toBeUndefined();
      await expect(registry.handlerFor('profile.rename')!(POOL, op)).rejects.toBeInstanceOf(
        PermanentOperationError,
      );
    });
  });
});
