/**
 * Users in PostgreSQL, through TypeORM's repository of `UserEntity`. Request-path methods take
 * the request context (deadline, breaker: `Database.run`); the one write the offline buffer may
 * replay (a rename) takes the `EntityManager` it runs on instead: the pool's for a direct write,
 * the replay transaction's later. A unique violation on the email becomes `EmailTakenError`.
 */
import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { EntityManager, Repository } from 'typeorm';
import type { RequestContext } from '../../common/context/request-context.js';
import { EmailTakenError } from '../../common/errors/domain-errors.js';
import { sqlState, UNIQUE_VIOLATION } from '../../infrastructure/database/connection-errors.js';
import { Database } from '../../infrastructure/database/database.js';
import { UserEntity } from './user.entity.js';
import type { User } from './user.js';

/** A change of name and/or email, applied directly. */
export interface UserProfileChange {
  id: string;
  /** With the position of the change, by which renames merge. */
  name?: { value: string; position: string };
  email?: string;
  /** ISO 8601. */
  updatedAt: string;
}

/** A change of name alone: it takes only if no rename positioned later is there already. */
export interface UserNameChange {
  id: string;
  name: string;
  position: string;
  /** The time of the change (ISO 8601): `updated_at` becomes the later of it and its own. */
  updatedAt: string;
}

@Injectable()
export class UsersRepository {
  constructor(
    @InjectRepository(UserEntity) private readonly users: Repository<UserEntity>,
    private readonly db: Database,
  ) {}

  async findById(ctx: RequestContext, id: string): Promise<User | undefined> {
    const entity = await this.db.run(ctx, () => this.users.findOneBy({ id }));
    return entity ? toUser(entity) : undefined;
  }

  async findByEmail(ctx: RequestContext, email: string): Promise<User | undefined> {
    const entity = await this.db.run(ctx, () => this.users.findOneBy({ email }));
    return entity ? toUser(entity) : undefined;
  }

  async insert(ctx: RequestContext, user: User): Promise<void> {
    await this.withEmailGuard(() => this.db.run(ctx, () => this.users.insert(toEntity(user))));
  }

  /** Applies a name and/or email change; the updated user, or undefined if gone. */
  async updateProfile(ctx: RequestContext, change: UserProfileChange): Promise<User | undefined> {
    const result = await this.withEmailGuard(() =>
      this.db.run(ctx, () =>
        this.users
          .createQueryBuilder()
          .update()
          .set({
            ...(change.name === undefined ? {} : { name: change.name.value, namePos: change.name.position }),
            ...(change.email === undefined ? {} : { email: change.email }),
            updatedAt: () => ':updatedAt',
            version: () => 'version + 1',
          })
          .where('id = :id', { id: change.id })
          .setParameter('updatedAt', change.updatedAt)
          .returning('*')
          .execute(),
      ),
    );
    const [row] = result.raw as UserRow[];
    return row && fromRow(row);
  }

  /**
   * Applies a rename, directly or replayed from the offline buffer, only if no rename positioned
   * later is stored (`name_pos`; NULL is older than any), so that replays merge in any order.
   * The version grows only when the name actually changes. The user as it is now, or undefined
   * when nothing matched (gone, or renamed at a later position).
   */
  async rename(manager: EntityManager, change: UserNameChange): Promise<User | undefined> {
    const changed = 'name IS DISTINCT FROM :name';
    const result = await manager
      .withRepository(this.users)
      .createQueryBuilder()
      .update()
      .set({
        name: change.name,
        namePos: change.position,
        version: () => `version + CASE WHEN ${changed} THEN 1 ELSE 0 END`,
        updatedAt: () => `CASE WHEN ${changed} THEN GREATEST(updated_at, :updatedAt) ELSE updated_at END`,
      })
      .where('id = :id AND (name_pos IS NULL OR name_pos < :position)', {
        id: change.id,
        position: change.position,
        name: change.name,
        updatedAt: change.updatedAt,
      })
      .returning('*')
      .execute();
    const [row] = result.raw as UserRow[];
    return row && fromRow(row);
  }

  exists(manager: EntityManager, id: string): Promise<boolean> {
    return manager.withRepository(this.users).existsBy({ id });
  }

  async updatePasswordHash(ctx: RequestContext, id: string, passwordHash: string, updatedAt: string): Promise<void> {
    await this.db.run(ctx, () =>
      this.users
        .createQueryBuilder()
        .update()
        .set({ passwordHash, updatedAt: () => ':updatedAt', version: () => 'version + 1' })
        .where('id = :id', { id })
        .setParameter('updatedAt', updatedAt)
        .execute(),
    );
  }

  /**
   * Replaces the hash after a parameter upgrade, without touching the user's version; only while
   * the stored hash is still `verifiedHash`, the one the password was checked against, so that
   * a login racing a password change cannot write the old password back.
   */
  async rehashPassword(ctx: RequestContext, id: string, verifiedHash: string, passwordHash: string): Promise<boolean> {
    const result = await this.db.run(ctx, () => this.users.update({ id, passwordHash: verifiedHash }, { passwordHash }));
    return result.affected === 1;
  }

  /** The stored password hash, for a check that it has not changed since it was read. */
  async passwordHashOf(ctx: RequestContext, id: string): Promise<string | undefined> {
    const entity = await this.db.run(ctx, () => this.users.findOne({ where: { id }, select: { id: true, passwordHash: true } }));
    return entity?.passwordHash;
  }

  private async withEmailGuard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (sqlState(error) === UNIQUE_VIOLATION) throw new EmailTakenError();
      throw error;
    }
  }
}

/** A row as `RETURNING *` gives it (column names, timestamps as ISO strings). */
interface UserRow {
  id: string;
  email: string;
  name: string;
  password_hash: string;
  created_at: string;
  updated_at: string;
  version: number;
}

function toUser(entity: UserEntity): User {
  return {
    id: entity.id,
    email: entity.email,
    name: entity.name,
    passwordHash: entity.passwordHash,
    createdAt: entity.createdAt,
    updatedAt: entity.updatedAt,
    version: entity.version,
  };
}

function fromRow(row: UserRow): User {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    passwordHash: row.password_hash,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    version: row.version,
  };
}

function toEntity(user: User): UserEntity {
  return Object.assign(new UserEntity(), user);
}
