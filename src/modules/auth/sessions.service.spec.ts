import { jest } from '@jest/globals';
import type { JwtService } from '@nestjs/jwt';
import type { AppConfig } from '../../config/app-config.js';
import { InvalidRefreshTokenError, NotFoundError } from '../../common/errors/domain-errors.js';
import { newRefreshSecret, parseRefreshToken } from './refresh-token.js';
import type { RevocationService } from './revocation.service.js';
import type { SessionRepository } from './session.repository.js';
import type { Session } from './session.js';
import { SessionsService } from './sessions.service.js';

const config = {
  auth: { refreshTtlMs: 7 * 86_400_000, sessionMaxTtlMs: 30 * 86_400_000, accessTtlMs: 900_000, sessionMaxPerUser: 3 },
} as AppConfig;

function setup() {
  const repository = {
    create: jest.fn<SessionRepository['create']>().mockResolvedValue(undefined),
    find: jest.fn<SessionRepository['find']>(),
    rotate: jest.fn<SessionRepository['rotate']>(),
    listForUser: jest.fn<SessionRepository['listForUser']>(),
    revoke: jest.fn<SessionRepository['revoke']>().mockResolvedValue(undefined),
    oldestBeyond: jest.fn<SessionRepository['oldestBeyond']>().mockResolvedValue([]),
  };
  const revocations = { announce: jest.fn<RevocationService['announce']>().mockResolvedValue(undefined) };
  const jwt = { signAsync: jest.fn<(p: object, o: object) => Promise<string>>().mockResolvedValue('access-token') };
  const service = new SessionsService(
    repository as unknown as SessionRepository,
    revocations as unknown as RevocationService,
    jwt as unknown as JwtService,
    config,
  );
  return { service, repository, revocations, jwt };
}

/** A session started at `now` on credentials that still hold. */
async function startAt(service: SessionsService, now: number) {
  const clock = jest.spyOn(Date, 'now').mockReturnValue(now);
  try {
    return (await service.startChecked('user-1', { ip: '10.0.0.1', userAgent: 'ua' }, () => Promise.resolve(true)))!;
  } finally {
    clock.mockRestore();
  }
}

const session = (over: Partial<Session> = {}): Session => ({
  id: '01936f3e-8b1c-7def-8a12-3456789abcde',
  userId: 'user-1',
  userAgent: 'ua',
  ip: '10.0.0.1',
  createdAt: 1_000,
  lastUsedAt: 1_000,
  expiresAt: 2_000,
  absoluteExpiresAt: 3_000,
  ...over,
});

describe('SessionsService', () => {
  it('starts a session with sliding and absolute expiries and stores only the secret hash', async () => {
    const { service, repository, jwt } = setup();
    const pair = await startAt(service, 1_000);
    const [stored, hash] = repository.create.mock.calls[0]!;
    expect(stored).toMatchObject({ userId: 'user-1', createdAt: 1_000, expiresAt: 1_000 + config.auth.refreshTtlMs, absoluteExpiresAt: 1_000 + config.auth.sessionMaxTtlMs });
    expect(pair.refreshToken.startsWith(`${stored.id}.`)).toBe(true);
    expect(pair.refreshToken).not.toContain(hash);
    expect(parseRefreshToken(pair.refreshToken)?.hash).toBe(hash);
    expect(jwt.signAsync).toHaveBeenCalledWith({ sid: stored.id }, { subject: 'user-1' });
    expect(pair).toMatchObject({ accessToken: 'access-token', tokenType: 'Bearer', expiresIn: 900 });
  });

  it('revokes the sessions beyond the bound, oldest first, once the new one is stored', async () => {
    const { service, repository, revocations } = setup();
    repository.oldestBeyond.mockResolvedValue(['oldest', 'older']);
    await startAt(service, 1_000);
    expect(repository.oldestBeyond).toHaveBeenCalledWith('user-1', 3);
    expect(repository.create.mock.invocationCallOrder[0]).toBeLessThan(repository.oldestBeyond.mock.invocationCallOrder[0]!);
    expect(repository.revoke).toHaveBeenCalledWith('user-1', ['oldest', 'older'], 1_000);
    expect(revocations.announce).toHaveBeenCalledWith('user-1', ['oldest', 'older'], 1_000);
  });

  it('withdraws a checked session whose check could not be made, and passes the error on', async () => {
    const { service, repository } = setup();
    const failure = new Error('hash queue full');
    await expect(service.startChecked('user-1', { ip: '10.0.0.1', userAgent: 'ua' }, () => Promise.reject(failure))).rejects.toBe(failure);
    const stored = repository.create.mock.calls[0]![0];
    expect(repository.revoke).toHaveBeenCalledWith('user-1', [stored.id], expect.any(Number));
  });

  it('rotates: presents the hash of the old secret and a fresh one to the store', async () => {
    const { service, repository } = setup();
    const old = newRefreshSecret(session().id);
    repository.rotate.mockResolvedValue({ outcome: 'rotated', session: session() });
    const pair = await service.refresh(old.token, 1_500);
    const [sid, presented, next, now] = repository.rotate.mock.calls[0]!;
    expect(sid).toBe(session().id);
    expect(presented).toBe(old.hash);
    expect(next).not.toBe(old.hash);
    expect(now).toBe(1_500);
    expect(parseRefreshToken(pair.refreshToken)?.hash).toBe(next);
  });

  it('on reuse, revokes the whole session everywhere and refuses', async () => {
    const { service, repository, revocations } = setup();
    repository.rotate.mockResolvedValue({ outcome: 'reused', userId: 'user-1' });
    const old = newRefreshSecret(session().id);
    await expect(service.refresh(old.token, 1_500)).rejects.toBeInstanceOf(InvalidRefreshTokenError);
    expect(repository.revoke).toHaveBeenCalledWith('user-1', [session().id], 1_500);
    expect(revocations.announce).toHaveBeenCalledWith('user-1', [session().id], 1_500);
  });

  it('refuses an expired or unknown session without revoking anything', async () => {
    const { service, repository, revocations } = setup();
    repository.rotate.mockResolvedValue({ outcome: 'invalid' });
    await expect(service.refresh(newRefreshSecret(session().id).token)).rejects.toBeInstanceOf(InvalidRefreshTokenError);
    expect(repository.revoke).not.toHaveBeenCalled();
    expect(revocations.announce).not.toHaveBeenCalled();
  });

  it('refuses a malformed token without asking the store', async () => {
    const { service, repository } = setup();
    await expect(service.refresh('not.a.token')).rejects.toBeInstanceOf(InvalidRefreshTokenError);
    expect(repository.rotate).not.toHaveBeenCalled();
  });

  it('revokes only the caller’s own session; another user’s is NotFound', async () => {
    const { service, repository } = setup();
    repository.find.mockResolvedValue(session({ userId: 'someone-else' }));
    await expect(service.revokeOwn('user-1', session().id)).rejects.toBeInstanceOf(NotFoundError);
    expect(repository.revoke).not.toHaveBeenCalled();
  });

  it('revokes all sessions but the one to keep', async () => {
    const { service, repository, revocations } = setup();
    repository.listForUser.mockResolvedValue([session({ id: 'a' }), session({ id: 'b' }), session({ id: 'c' })]);
    await service.revokeAll('user-1', 'b');
    expect(repository.revoke).toHaveBeenCalledWith('user-1', ['a', 'c'], expect.any(Number));
    expect(revocations.announce).toHaveBeenCalledWith('user-1', ['a', 'c'], expect.any(Number));
  });

  it('lists newest first and marks the current session', async () => {
    const { service, repository } = setup();
    repository.listForUser.mockResolvedValue([session({ id: 'old', createdAt: 1 }), session({ id: 'new', createdAt: 5 })]);
    const views = await service.list('user-1', 'old');
    expect(views.map((v) => [v.id, v.current])).toEqual([['new', false], ['old', true]]);
  });
});
