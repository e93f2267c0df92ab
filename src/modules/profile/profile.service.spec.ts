/**
 * The profile use cases against strict mocks of their I/O boundaries: the users repository
 * (PostgreSQL), WriteOrder (Redis), the session store and the password throttle (Redis), the
 * password hasher. The real `WritePath` decides, over stand-ins of PostgreSQL's state and of the
 * buffer (`test/support/unit-stand-ins.ts`). No I/O.
 *
 * Covered: renames positioned by WriteOrder (direct; buffered, 202 with the position's time;
 * superseded by a rename positioned later: the user as stored) and replayed (version-1 payloads
 * upgraded, the owner's own user, superseded or gone); email changes, which need PostgreSQL and
 * the current password (throttled like a password change) and revoke the other sessions;
 * password changes (throttled check, sessions revoked around the new hash, 503 while PostgreSQL
 * is down).
 */
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { RequestContext } from '../../common/context/request-context.js';
import {
  EmailTakenError,
  InvalidCurrentPasswordError,
  NotFoundError,
  RateLimitedError,
  ServiceUnavailableError,
} from '../../common/errors/domain-errors.js';
import type { Clock } from '../../common/time/clock.js';
import {
  DatabaseStandIn,
  MemoryBuffer,
  POOL,
  strictMock,
  unexpectedCalls,
  type StrictMock,
} from '../../../test/support/unit-stand-ins.js';
import type { LoginThrottle, PasswordCheck } from '../auth/login-throttle.js';
import type { PasswordHasher } from '../auth/password-hasher.js';
import type { SessionsService } from '../auth/sessions.service.js';
import { BufferCounters } from '../buffer/buffer-counters.js';
import { PermanentOperationError, UserShareExceededError } from '../buffer/buffer.errors.js';
import type { BufferedOperation } from '../buffer/operation.js';
import { OperationRegistry } from '../buffer/operation-registry.js';
import { positionAt, timeOfPosition, type WriteOrder } from '../buffer/write-order.js';
import { WritePath } from '../buffer/write-path.js';
import type { User } from '../users/user.js';
import type { UsersRepository } from '../users/users.repository.js';
import { PROFILE_RENAME, ProfileOperations, type RenamePayload } from './profile-operations.js';
import { ProfileService } from './profile.service.js';

const USER = '0193a000-0000-7000-8000-000000000001';
const OTHER_USER = '0193a000-0000-7000-8000-000000000002';
const NOW = new Date('2026-02-20T09:15:00.000Z');
/** Positions as Redis hands them out (tag 0), microseconds apart within NOW's second. */
const P1 = positionAt('2026-02-20T09:15:00.004250Z');
const P2 = positionAt('2026-02-20T09:15:00.004251Z');

type Users = StrictMock<UsersRepository, 'findById' | 'findByEmail' | 'updateProfile' | 'updatePasswordHash' | 'rename' | 'exists'>;
type Throttle = StrictMock<LoginThrottle, 'beginPasswordCheck' | 'passwordCheckSucceeded' | 'passwordCheckFailed' | 'passwordCheckCancelled'>;
const CHECK = { id: 'check-1' } as unknown as PasswordCheck;

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

function publicUser(overrides: Partial<User> = {}) {
  const { passwordHash: _hash, version: _version, ...shown } = user(overrides);
  return { ...shown, createdAt: shown.createdAt.toISOString(), updatedAt: shown.updatedAt.toISOString() };
}

describe('ProfileService', () => {
  let users: Users;
  let order: StrictMock<WriteOrder, 'next'>;
  let hasher: StrictMock<PasswordHasher, 'verify' | 'hash'>;
  let sessions: StrictMock<SessionsService, 'revokeAll'>;
  let throttle: Throttle;
  let database: DatabaseStandIn;
  let buffer: MemoryBuffer;
  let registry: OperationRegistry;
  let service: ProfileService;
  let ctx: RequestContext;
  const clock: Clock = { now: () => new Date(NOW) };

  beforeEach(() => {
    users = strictMock<UsersRepository, keyof Users>('users', ['findById', 'findByEmail', 'updateProfile', 'updatePasswordHash', 'rename', 'exists']);
    order = strictMock<WriteOrder, 'next'>('order', ['next']);
    hasher = strictMock<PasswordHasher, 'verify' | 'hash'>('hasher', ['verify', 'hash']);
    sessions = strictMock<SessionsService, 'revokeAll'>('sessions', ['revokeAll']);
    throttle = strictMock<LoginThrottle, keyof Throttle>('throttle', [
      'beginPasswordCheck',
      'passwordCheckSucceeded',
      'passwordCheckFailed',
      'passwordCheckCancelled',
    ]);
    database = new DatabaseStandIn();
    buffer = new MemoryBuffer();
    registry = new OperationRegistry();
    new ProfileOperations(registry, users as unknown as UsersRepository).onModuleInit();
    service = new ProfileService(
      users as unknown as UsersRepository,
      hasher as unknown as PasswordHasher,
      sessions as unknown as SessionsService,
      new WritePath(database.asDatabase(), buffer.asBuffer(), registry, new BufferCounters()),
      order as unknown as WriteOrder,
      clock,
      throttle as unknown as LoginThrottle,
    );
    ctx = RequestContext.start('req-1', 10_000);
    ctx.userId = USER;
    ctx.sessionId = 'session-1';
    ctx.release();
  });

  afterEach(() => {
    expect(unexpectedCalls.splice(0)).toEqual([]);
  });

  describe('a rename', () => {
    it('is applied directly at its position, with the time of its position, and answers the user (200)', async () => {
      order.next.mockResolvedValueOnce(P1);
      users.rename.mockResolvedValueOnce(user({ name: 'Ada King', updatedAt: NOW }));

      await expect(service.update(ctx, { name: 'Ada King' })).resolves.toEqual({ buffered: false, user: publicUser({ name: 'Ada King', updatedAt: NOW }) });
      expect(order.next).toHaveBeenCalledWith(USER);
      expect(users.rename).toHaveBeenCalledWith(POOL, { id: USER, name: 'Ada King', position: P1, updatedAt: '2026-02-20T09:15:00.004250Z' });
      expect(buffer.add).not.toHaveBeenCalled();
    });

    it('answers the user as stored when a rename positioned later is there already (superseded)', async () => {
      order.next.mockResolvedValueOnce(P1);
      users.rename.mockResolvedValueOnce(undefined);
      users.findById.mockResolvedValueOnce(user({ name: 'renamed later elsewhere' }));

      await expect(service.update(ctx, { name: 'older' })).resolves.toEqual({ buffered: false, user: publicUser({ name: 'renamed later elsewhere' }) });
      expect(users.findById).toHaveBeenCalledWith(ctx, USER);
    });

    it('answers NOT_FOUND when the user is gone', async () => {
      order.next.mockResolvedValueOnce(P1);
      users.rename.mockResolvedValueOnce(undefined);
      users.findById.mockResolvedValueOnce(undefined);
      await expect(service.update(ctx, { name: 'B' })).rejects.toBeInstanceOf(NotFoundError);
    });

    it('is queued at its position while PostgreSQL is down: 202 with the id, the name and the time of the position', async () => {
      database.up = false;
      order.next.mockResolvedValueOnce(P1).mockResolvedValueOnce(P2);

      await expect(service.update(ctx, { name: 'Offline Ada' })).resolves.toEqual({
        buffered: true,
        rename: { id: USER, name: 'Offline Ada', updatedAt: '2026-02-20T09:15:00.004Z' },
      });
      await service.update(ctx, { name: 'Second' });

      expect(buffer.ops().map((op) => [op.kind, op.userId, op.version, op.acceptedAt, op.payload])).toEqual([
        [PROFILE_RENAME, USER, 2, NOW.toISOString(), { name: 'Offline Ada', position: P1 }],
        [PROFILE_RENAME, USER, 2, NOW.toISOString(), { name: 'Second', position: P2 }],
      ]);
      expect(users.rename).not.toHaveBeenCalled();
    });

    it('is queued when its statement loses the connection', async () => {
      order.next.mockResolvedValueOnce(P1);
      users.rename.mockImplementationOnce(async () => {
        throw database.connectionLost();
      });

      await expect(service.update(ctx, { name: 'B' })).resolves.toMatchObject({ buffered: true, rename: { name: 'B' } });
      expect(buffer.ops<RenamePayload>(PROFILE_RENAME).map((op) => op.payload)).toEqual([{ name: 'B', position: P1 }]);
    });

    it("answers 429 when the user's share of the buffer is used up", async () => {
      database.up = false;
      order.next.mockResolvedValueOnce(P1);
      buffer.refuseNext = new UserShareExceededError();
      await expect(service.update(ctx, { name: 'B' })).rejects.toBeInstanceOf(RateLimitedError);
    });

    it('goes direct while older writes are still queued', async () => {
      database.up = false;
      order.next.mockResolvedValueOnce(P1).mockResolvedValueOnce(P2);
      await service.update(ctx, { name: 'queued' });
      database.up = true;
      users.rename.mockResolvedValueOnce(user({ name: 'direct' }));

      await expect(service.update(ctx, { name: 'direct' })).resolves.toMatchObject({ buffered: false });
      expect(users.rename).toHaveBeenCalledWith(POOL, expect.objectContaining({ position: P2 }));
    });
  });

  it('answers the profile as it is when nothing is to change', async () => {
    users.findById.mockResolvedValueOnce(user());
    await expect(service.update(ctx, {})).resolves.toEqual({ buffered: false, user: publicUser() });
  });

  describe('an email change', () => {
    /** The current password checks out, the address is free. */
    function passwordRight(): void {
      users.findById.mockResolvedValue(user());
      throttle.beginPasswordCheck.mockResolvedValue(CHECK);
      hasher.verify.mockResolvedValue(true);
      throttle.passwordCheckSucceeded.mockResolvedValue(undefined);
    }

    it('needs the current password: without it, 400 naming the field, nothing read', async () => {
      await expect(service.update(ctx, { email: 'new@example.com' })).rejects.toMatchObject({
        code: 'VALIDATION_FAILED',
        errors: [{ field: 'currentPassword', message: expect.any(String) }],
      });
    });

    it('is applied directly, normalised, with the time of the request and no position when the name stays; the other sessions are revoked before and after', async () => {
      passwordRight();
      users.findByEmail.mockResolvedValueOnce(undefined);
      sessions.revokeAll.mockResolvedValue(undefined);
      users.updateProfile.mockResolvedValueOnce(user({ email: 'new@example.com' }));

      await expect(service.update(ctx, { email: '  New@Example.COM ', currentPassword: 'pw' })).resolves.toEqual({
        buffered: false,
        user: publicUser({ email: 'new@example.com' }),
      });
      expect(users.updateProfile).toHaveBeenCalledWith(ctx, { id: USER, email: 'new@example.com', updatedAt: NOW.toISOString() });
      expect(hasher.verify).toHaveBeenCalledWith('hash', 'pw', ctx);
      expect(throttle.passwordCheckSucceeded).toHaveBeenCalledWith(CHECK);
      const [before, after] = sessions.revokeAll.mock.invocationCallOrder;
      const stored = users.updateProfile.mock.invocationCallOrder[0]!;
      expect([before! < stored, stored < after!]).toEqual([true, true]);
      expect(sessions.revokeAll.mock.calls).toEqual([
        [USER, 'session-1'],
        [USER, 'session-1'],
      ]);
    });

    it('positions a name changed with it, so that renames merge by position; an unchanged address revokes nothing', async () => {
      passwordRight();
      order.next.mockResolvedValueOnce(P1);
      users.updateProfile.mockResolvedValueOnce(user({ name: 'Ada King' }));

      await service.update(ctx, { name: 'Ada King', email: 'ADA@example.com', currentPassword: 'pw' });
      expect(users.updateProfile).toHaveBeenCalledWith(ctx, {
        id: USER,
        name: { value: 'Ada King', position: P1 },
        email: 'ada@example.com',
        updatedAt: NOW.toISOString(),
      });
      expect(sessions.revokeAll).not.toHaveBeenCalled();
    });

    it('refuses a wrong current password (403), counting it, changing and revoking nothing', async () => {
      users.findById.mockResolvedValue(user());
      throttle.beginPasswordCheck.mockResolvedValue(CHECK);
      hasher.verify.mockResolvedValueOnce(false);
      throttle.passwordCheckFailed.mockResolvedValueOnce(undefined);

      await expect(service.update(ctx, { email: 'new@example.com', currentPassword: 'wrong' })).rejects.toBeInstanceOf(
        InvalidCurrentPasswordError,
      );
      expect(throttle.passwordCheckFailed).toHaveBeenCalledWith(CHECK);
    });

    it('checks no password once the budget is spent (429)', async () => {
      users.findById.mockResolvedValue(user());
      throttle.beginPasswordCheck.mockRejectedValueOnce(new RateLimitedError(60));
      await expect(service.update(ctx, { email: 'new@example.com', currentPassword: 'pw' })).rejects.toBeInstanceOf(RateLimitedError);
    });

    it('answers 409 for an address in use before revoking anything, and NOT_FOUND when the user is gone', async () => {
      passwordRight();
      users.findByEmail.mockResolvedValueOnce(user({ id: OTHER_USER, email: 'taken@example.com' }));
      await expect(service.update(ctx, { email: 'taken@example.com', currentPassword: 'pw' })).rejects.toBeInstanceOf(EmailTakenError);

      users.findById.mockReset();
      users.findById.mockResolvedValueOnce(undefined);
      await expect(service.update(ctx, { email: 'free@example.com', currentPassword: 'pw' })).rejects.toBeInstanceOf(NotFoundError);
    });

    it('needs PostgreSQL: 503 with a Retry-After while it is down, positioning and queueing nothing, with or without a name', async () => {
      database.up = false;
      await expect(service.update(ctx, { email: 'new@example.com', currentPassword: 'pw' })).rejects.toMatchObject({
        code: 'SERVICE_UNAVAILABLE',
        retryAfterSeconds: 5,
      });
      await expect(service.update(ctx, { name: 'With email', email: 'new@example.com', currentPassword: 'pw' })).rejects.toBeInstanceOf(
        ServiceUnavailableError,
      );
      expect(buffer.ops()).toEqual([]);
    });

    it('goes direct while older writes are still queued', async () => {
      database.up = false;
      order.next.mockResolvedValueOnce(P1);
      await service.update(ctx, { name: 'queued' });
      database.up = true;
      passwordRight();
      users.findByEmail.mockResolvedValueOnce(undefined);
      sessions.revokeAll.mockResolvedValue(undefined);
      users.updateProfile.mockResolvedValueOnce(user({ email: 'new@example.com' }));

      await expect(service.update(ctx, { email: 'new@example.com', currentPassword: 'pw' })).resolves.toMatchObject({ buffered: false });
    });
  });

  describe('a password change', () => {
    beforeEach(() => {
      users.findById.mockResolvedValue(user());
      throttle.beginPasswordCheck.mockResolvedValue(CHECK);
    });

    it('revokes the other sessions before storing the new hash and again after it', async () => {
      hasher.verify.mockResolvedValueOnce(true);
      hasher.hash.mockResolvedValueOnce('new-hash');
      throttle.passwordCheckSucceeded.mockResolvedValueOnce(undefined);
      sessions.revokeAll.mockResolvedValue(undefined);
      users.updatePasswordHash.mockResolvedValueOnce(undefined);

      await service.changePassword(ctx, 'old-password', 'new-password');

      expect(hasher.verify).toHaveBeenCalledWith('hash', 'old-password', ctx);
      expect(hasher.hash).toHaveBeenCalledWith('new-password', ctx);
      expect(users.updatePasswordHash).toHaveBeenCalledWith(ctx, USER, 'new-hash', NOW.toISOString());
      const [before, after] = sessions.revokeAll.mock.invocationCallOrder;
      const stored = users.updatePasswordHash.mock.invocationCallOrder[0]!;
      expect([before! < stored, stored < after!]).toEqual([true, true]);
      expect(sessions.revokeAll.mock.calls).toEqual([
        [USER, 'session-1'],
        [USER, 'session-1'],
      ]);
    });

    it('changes no password when the other sessions cannot be revoked (Redis down: 503)', async () => {
      hasher.verify.mockResolvedValueOnce(true);
      hasher.hash.mockResolvedValueOnce('new-hash');
      throttle.passwordCheckSucceeded.mockResolvedValueOnce(undefined);
      sessions.revokeAll.mockRejectedValueOnce(new ServiceUnavailableError('the session store is unavailable'));

      await expect(service.changePassword(ctx, 'old-password', 'new-password')).rejects.toBeInstanceOf(ServiceUnavailableError);
      expect(users.updatePasswordHash).not.toHaveBeenCalled();
    });

    it('counts the check of the current password before making it, and answers 403 on a wrong one, changing nothing', async () => {
      hasher.verify.mockResolvedValueOnce(false);
      throttle.passwordCheckFailed.mockResolvedValueOnce(undefined);

      await expect(service.changePassword(ctx, 'wrong', 'new-password')).rejects.toBeInstanceOf(InvalidCurrentPasswordError);
      expect(throttle.beginPasswordCheck).toHaveBeenCalledWith(USER);
      expect(throttle.beginPasswordCheck.mock.invocationCallOrder[0]).toBeLessThan(hasher.verify.mock.invocationCallOrder[0]!);
      expect(throttle.passwordCheckFailed).toHaveBeenCalledWith(CHECK);
    });

    it('gives the place back when the current password could not be checked (hash queue full)', async () => {
      hasher.verify.mockRejectedValueOnce(new ServiceUnavailableError('busy', 1));
      throttle.passwordCheckCancelled.mockResolvedValueOnce(undefined);

      await expect(service.changePassword(ctx, 'old-password', 'new-password')).rejects.toBeInstanceOf(ServiceUnavailableError);
      expect(throttle.passwordCheckCancelled).toHaveBeenCalledWith(CHECK);
    });

    it('checks no password and changes nothing once the budget is spent (429)', async () => {
      throttle.beginPasswordCheck.mockReset();
      throttle.beginPasswordCheck.mockRejectedValueOnce(new RateLimitedError(60));
      await expect(service.changePassword(ctx, 'old-password', 'new-password')).rejects.toBeInstanceOf(RateLimitedError);
    });

    it('answers NOT_FOUND when the user is gone', async () => {
      users.findById.mockReset();
      users.findById.mockResolvedValueOnce(undefined);
      await expect(service.changePassword(ctx, 'old-password', 'new-password')).rejects.toBeInstanceOf(NotFoundError);
    });

    it('answers 503 while PostgreSQL is down, before reading anything', async () => {
      database.up = false;
      await expect(service.changePassword(ctx, 'old-password', 'new-password')).rejects.toBeInstanceOf(ServiceUnavailableError);
      expect(users.findById).not.toHaveBeenCalled();
    });
  });

  describe('a replayed rename', () => {
    const op = (payload: unknown, overrides: Partial<BufferedOperation> = {}): BufferedOperation => ({
      id: '0193a000-0000-7000-8000-00000000f00d',
      kind: PROFILE_RENAME,
      userId: USER,
      payload,
      acceptedAt: NOW.toISOString(),
      requestId: 'req-1',
      version: 2,
      ...overrides,
    });
    const replay = (stored: BufferedOperation) => registry.handlerFor(PROFILE_RENAME)!(POOL, registry.upgrade(stored));

    it("renames the operation's own user at its position, whatever the payload carries", async () => {
      users.rename.mockResolvedValueOnce(user());
      await replay(op({ name: 'Replayed', position: P2, id: OTHER_USER }));
      expect(users.rename).toHaveBeenCalledWith(POOL, { id: USER, name: 'Replayed', position: P2, updatedAt: timeOfPosition(P2) });
    });

    it('of version 1 (the release before positions) is positioned at its updatedAt, microseconds kept', async () => {
      users.rename.mockResolvedValueOnce(user());
      await replay(op({ name: 'Old release', updatedAt: '2026-02-20T09:15:00.000001Z' }, { version: undefined }));
      const expected = String((BigInt(Date.parse('2026-02-20T09:15:00.000Z')) * 1_000n + 1n) * 1_024n);
      expect(users.rename).toHaveBeenCalledWith(POOL, { id: USER, name: 'Old release', position: expected, updatedAt: '2026-02-20T09:15:00.000001Z' });
    });

    it('does nothing when a rename positioned later is there, and is set aside when the user is gone', async () => {
      users.rename.mockResolvedValue(undefined);
      users.exists.mockResolvedValueOnce(true).mockResolvedValueOnce(false);
      await expect(replay(op({ name: 'older', position: P1 }))).resolves.toBeUndefined();
      await expect(replay(op({ name: 'older', position: P1 }))).rejects.toBeInstanceOf(PermanentOperationError);
      expect(users.exists).toHaveBeenCalledWith(POOL, USER);
    });
  });
});
