/**
 * Profile use cases: read, rename / change email (409 when taken), change password. Changing
 * the email or the password needs the current password (403 when wrong) and revokes every
 * other session of the user: a stolen access token alone can neither move the login email nor
 * set a password, and either change leaves the thief's sessions dead.
 *
 * Wrong current passwords are counted per user (LoginThrottle): past the budget, 429.
 *
 * A change of name alone needs no read, so it goes through the write path and is buffered while
 * PostgreSQL is down (`profile.rename`, 202); renames merge by position (`name_pos`), so a rename
 * may be applied before or after renames accepted earlier elsewhere, with the same result. An
 * email change must check that the address is free, and a password change must verify the
 * current one: both need PostgreSQL (503 with Retry-After while it is down).
 */
import { Injectable } from '@nestjs/common';
import type { RequestContext } from '../../common/context/request-context.js';
import {
  EmailTakenError,
  InvalidCurrentPasswordError,
  NotFoundError,
  ValidationFailedError,
} from '../../common/errors/domain-errors.js';
import { Clock } from '../../common/time/clock.js';
import { LoginThrottle } from '../auth/login-throttle.js';
import { PasswordHasher } from '../auth/password-hasher.js';
import { SessionsService } from '../auth/sessions.service.js';
import { createOperation } from '../buffer/operation.js';
import { WriteOrder, timeOfPosition } from '../buffer/write-order.js';
import { WritePath } from '../buffer/write-path.js';
import { normaliseEmail, toPublicUser, type PublicUser, type User } from '../users/user.js';
import { UsersRepository } from '../users/users.repository.js';
import { nameChangeOf, PROFILE_RENAME, renamePayload, type Rename } from './profile-operations.js';

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
  /** The time of the rename, in milliseconds as the API shows it: `updatedAt` will be this or later. */
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
    private readonly order: WriteOrder,
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
      ...(input.name === undefined ? {} : { name: { value: input.name, position: await this.order.next(userId) } }),
      email,
      updatedAt: this.clock.now().toISOString(),
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
    await this.users.updatePasswordHash(ctx, userId, newHash, this.clock.now().toISOString());
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
   * A rename, through the write path. Applied directly, it takes unless a rename positioned later
   * is stored already (accepted later by another replica, and applied first): the user is then
   * answered as stored.
   */
  private async rename(ctx: RequestContext, name: string): Promise<ProfileUpdateOutcome> {
    const userId = ctx.requireUserId();
    const change: Rename = { id: userId, name, position: await this.order.next(userId) };
    const op = createOperation(ctx, PROFILE_RENAME, renamePayload(change), this.clock.now());
    const outcome = await this.writes.execute(ctx, op, (db) => this.users.rename(db, nameChangeOf(change)));
    if (outcome.mode === 'buffered') {
      const updatedAt = new Date(Date.parse(timeOfPosition(change.position))).toISOString();
      return { buffered: true, rename: { id: userId, name, updatedAt } };
    }
    if (outcome.result) return { buffered: false, user: toPublicUser(outcome.result) };
    return { buffered: false, user: await this.get(ctx) };
  }
}
