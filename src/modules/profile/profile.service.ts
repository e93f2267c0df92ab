/**
 * Profile use cases: read, rename / change email (409 when taken), change password. Changing
 * the email or the password needs the current password (403 when wrong) and revokes every
 * other session of the user: a stolen access token alone can neither move the login email nor
 * set a password, and either change leaves the thief's sessions dead.
 *
 * Wrong current passwords are counted per user (LoginThrottle): past the budget, 429.
 *
 * A change of name alone needs no read, so it goes through the write path and is buffered while
 * PostgreSQL is down (`profile.rename`, 202). An email change must check that the address is
 * free, and a password change must verify the current one: both need PostgreSQL, and both wait
 * (503 with Retry-After) while buffered writes are still queued, since applied before them they
 * would overtake a queued rename, whose time guard would then take the newer row for a newer
 * name and drop it.
 */
import { Injectable } from '@nestjs/common';
import type { RequestContext } from '../../common/context/request-context.js';
import {
  EmailTakenError,
  InvalidCurrentPasswordError,
  NotFoundError,
  ServiceUnavailableError,
  ValidationFailedError,
} from '../../common/errors/domain-errors.js';
import { ChangeClock, toMillisecondIso } from '../../common/time/change-clock.js';
import { Clock } from '../../common/time/clock.js';
import { LoginThrottle } from '../auth/login-throttle.js';
import { PasswordHasher } from '../auth/password-hasher.js';
import { SessionsService } from '../auth/sessions.service.js';
import { createOperation } from '../buffer/operation.js';
import { WritePath } from '../buffer/write-path.js';
import { normaliseEmail, toPublicUser, type PublicUser, type User } from '../users/user.js';
import { UsersRepository, type Rename } from '../users/users.repository.js';
import { PROFILE_RENAME, renamePayload } from './profile-operations.js';

/** How often a rename is stamped again after finding a later change, before a 503. */
const MAX_ATTEMPTS = 3;

export interface ProfileUpdate {
  name?: string;
  email?: string;
  /** Required with `email`. */
  currentPassword?: string;
}

/** What a buffered rename will change: the user's id, the new name, and its time. */
export interface BufferedRename {
  id: string;
  name: string;
  /** The user's `updatedAt` once applied, in milliseconds as the API shows it. */
  updatedAt: string;
}

export type ProfileUpdateOutcome =
  { buffered: false; user: PublicUser } | { buffered: true; rename: BufferedRename };

@Injectable()
export class ProfileService {
  constructor(
    private readonly users: UsersRepository,
    private readonly hasher: PasswordHasher,
    private readonly sessions: SessionsService,
    private readonly writes: WritePath,
    private readonly changes: ChangeClock,
    private readonly clock: Clock,
    private readonly throttle: LoginThrottle,
  ) {}

  async get(ctx: RequestContext): Promise<PublicUser> {
    const user = await this.users.findById(ctx, ctx.requireUserId());
    if (!user) throw new NotFoundError('user');
    return toPublicUser(user);
  }

  async update(ctx: RequestContext, input: ProfileUpdate): Promise<ProfileUpdateOutcome> {
    const userId = ctx.requireUserId();
    if (input.name === undefined && input.email === undefined) {
      return { buffered: false, user: await this.get(ctx) };
    }
    if (input.email === undefined) return this.rename(ctx, input.name!);
    if (input.currentPassword === undefined) {
      throw ValidationFailedError.forField('currentPassword', 'is required to change the email');
    }
    this.writes.assertCanWriteDirectly();
    const user = await this.users.findById(ctx, userId);
    if (!user) throw new NotFoundError('user');
    await this.checkCurrentPassword(ctx, user, input.currentPassword);
    const email = normaliseEmail(input.email);
    const moved = email !== user.email;
    if (moved) {
      // Refused before the other sessions are revoked (a race with another account still
      // answers 409 from the update itself).
      const holder = await this.users.findByEmail(ctx, email);
      if (holder && holder.id !== userId) throw new EmailTakenError();
      // As for a password change: first, so that Redis being unreachable (503) leaves the
      // email as it was; again after, for a session a login started in between.
      await this.sessions.revokeAll(userId, ctx.sessionId);
    }
    const updated = await this.users.updateProfile(ctx, {
      id: userId,
      name: input.name,
      email,
      updatedAt: this.changes.next(),
    });
    if (!updated) throw new NotFoundError('user');
    if (moved) await this.sessions.revokeAll(userId, ctx.sessionId);
    return { buffered: false, user: toPublicUser(updated) };
  }

  async changePassword(
    ctx: RequestContext,
    currentPassword: string,
    newPassword: string,
  ): Promise<void> {
    const userId = ctx.requireUserId();
    this.writes.assertCanWriteDirectly();
    const user = await this.users.findById(ctx, userId);
    if (!user) throw new NotFoundError('user');
    await this.checkCurrentPassword(ctx, user, currentPassword);
    const newHash = await this.hasher.hash(newPassword, ctx);
    // Revoked first, so that Redis being unreachable (503) leaves the password as it was; and
    // again after the new hash is stored, for a session a login on the old password started in
    // between (a login started later finds the new hash and withdraws its own session).
    await this.sessions.revokeAll(userId, ctx.sessionId);
    await this.users.updatePasswordHash(ctx, userId, newHash, this.changes.next());
    await this.sessions.revokeAll(userId, ctx.sessionId);
  }

  /**
   * Throws `InvalidCurrentPasswordError` unless `password` is the user's. Counted against the
   * user's budget before the check, as logins are: guesses sent together are all counted.
   */
  private async checkCurrentPassword(ctx: RequestContext, user: User, password: string): Promise<void> {
    const check = await this.throttle.beginPasswordCheck(user.id);
    let valid: boolean;
    try {
      valid = await this.hasher.verify(user.passwordHash, password, ctx);
    } catch (error) {
      // Not a guess: the check could not be made (a full hash queue, the deadline).
      await this.throttle.passwordCheckCancelled(check);
      throw error;
    }
    if (!valid) {
      await this.throttle.passwordCheckFailed(check);
      throw new InvalidCurrentPasswordError();
    }
    await this.throttle.passwordCheckSucceeded(check);
  }

  /**
   * A rename, through the write path. Applied directly, its time guard matches nothing only when
   * the user is gone (404) or carries a later time than this clock's (another instance's clock
   * runs ahead): it is then stamped after that time and tried again.
   */
  private async rename(ctx: RequestContext, name: string): Promise<ProfileUpdateOutcome> {
    const userId = ctx.requireUserId();
    let after: string | undefined;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      const change: Rename = { id: userId, name, updatedAt: this.changes.next(after) };
      const op = createOperation(ctx, PROFILE_RENAME, renamePayload(change), this.clock.now());
      const outcome = await this.writes.execute(ctx, op, (db) => this.users.rename(db, change));
      if (outcome.mode === 'buffered') {
        return {
          buffered: true,
          rename: { id: userId, name, updatedAt: toMillisecondIso(change.updatedAt) },
        };
      }
      if (outcome.result) return { buffered: false, user: toPublicUser(outcome.result) };
      const current = await this.users.findById(ctx, userId);
      if (!current) throw new NotFoundError('user');
      after = current.updatedAt.toISOString();
    }
    throw new ServiceUnavailableError(
      'the profile is being changed by other requests; try again',
      1,
    );
  }
}
