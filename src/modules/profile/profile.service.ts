/**
 * Profile use cases: read, rename / change email (409 when taken), change password (403 on a
 * wrong current password; every other session of the user is revoked).
 */
import { Injectable } from '@nestjs/common';
import type { RequestContext } from '../../common/context/request-context.js';
import { InvalidCurrentPasswordError, NotFoundError } from '../../common/errors/domain-errors.js';
import { PasswordHasher } from '../auth/password-hasher.js';
import { SessionsService } from '../auth/sessions.service.js';
import { normaliseEmail, toPublicUser, type PublicUser } from '../users/user.js';
import { UsersRepository } from '../users/users.repository.js';

export interface ProfileUpdate {
  name?: string;
  email?: string;
}

@Injectable()
export class ProfileService {
  constructor(
    private readonly users: UsersRepository,
    private readonly hasher: PasswordHasher,
    private readonly sessions: SessionsService,
  ) {}

  async get(ctx: RequestContext): Promise<PublicUser> {
    const user = await this.users.findById(ctx, ctx.requireUserId());
    if (!user) throw new NotFoundError('user');
    return toPublicUser(user);
  }

  async update(ctx: RequestContext, input: ProfileUpdate): Promise<PublicUser> {
    const userId = ctx.requireUserId();
    if (input.name === undefined && input.email === undefined) return this.get(ctx);
    const updated = await this.users.updateProfile(ctx, {
      id: userId,
      name: input.name,
      email: input.email === undefined ? undefined : normaliseEmail(input.email),
      updatedAt: new Date(),
    });
    if (!updated) throw new NotFoundError('user');
    return toPublicUser(updated);
  }

  async changePassword(ctx: RequestContext, currentPassword: string, newPassword: string): Promise<void> {
    const userId = ctx.requireUserId();
    const user = await this.users.findById(ctx, userId);
    if (!user) throw new NotFoundError('user');
    if (!(await this.hasher.verify(user.passwordHash, currentPassword))) throw new InvalidCurrentPasswordError();
    await this.users.updatePasswordHash(ctx, userId, await this.hasher.hash(newPassword), new Date());
    await this.sessions.revokeAll(userId, ctx.sessionId);
  }
}
