/**
 * Users in PostgreSQL. Every method takes the request context (deadline, breaker); a unique
 * violation on the email becomes `EmailTakenError`.
 */
import { Injectable } from '@nestjs/common';
import type { RequestContext } from '../../common/context/request-context.js';
import { EmailTakenError } from '../../common/errors/domain-errors.js';
import { sqlState, UNIQUE_VIOLATION } from '../../infrastructure/database/connection-errors.js';
import { DatabaseService } from '../../infrastructure/database/database.service.js';
import type { SqlExecutor } from '../../infrastructure/database/sql-executor.js';
import type { User } from './user.js';

interface UserRow {
  id: string;
  email: string;
  name: string;
  password_hash: string;
  /** timestamptz columns arrive as ISO 8601 strings (see pg-types.ts). */
  created_at: string;
  updated_at: string;
  version: number;
}

const COLUMNS = 'id, email, name, password_hash, created_at, updated_at, version';

export interface ProfileChange {
  id: string;
  name?: string;
  email?: string;
  /** ISO 8601; microseconds are kept. */
  updatedAt: string;
}

/** A change of name alone: the one profile change the write buffer may apply later. */
export interface Rename {
  id: string;
  name: string;
  /** ISO 8601 with microseconds, from `ChangeClock`: the guard against undoing a newer change. */
  updatedAt: string;
}

@Injectable()
export class UsersRepository {
  constructor(private readonly database: DatabaseService) {}

  async findById(ctx: RequestContext, id: string): Promise<User | undefined> {
    const rows = await this.database.query<UserRow>(ctx, `SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]);
    return rows[0] && toUser(rows[0]);
  }

  async findByEmail(ctx: RequestContext, email: string): Promise<User | undefined> {
    const rows = await this.database.query<UserRow>(ctx, `SELECT ${COLUMNS} FROM users WHERE email = $1`, [email]);
    return rows[0] && toUser(rows[0]);
  }

  async insert(ctx: RequestContext, user: User): Promise<void> {
    await this.withEmailGuard(() =>
      this.database.query(
        ctx,
        `INSERT INTO users (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [user.id, user.email, user.name, user.passwordHash, user.createdAt, user.updatedAt, user.version],
      ),
    );
  }

  /** Applies a name and/or email change; returns the updated user, or undefined if gone. */
  async updateProfile(ctx: RequestContext, change: ProfileChange): Promise<User | undefined> {
    const rows = await this.withEmailGuard(() =>
      this.database.query<UserRow>(
        ctx,
        `UPDATE users
            SET name = COALESCE($2, name), email = COALESCE($3, email),
                updated_at = $4, version = version + 1
          WHERE id = $1
        RETURNING ${COLUMNS}`,
        [change.id, change.name ?? null, change.email ?? null, change.updatedAt],
      ),
    );
    return rows[0] && toUser(rows[0]);
  }

  /**
   * Applies a rename, directly or replayed from the offline buffer, only if no change of a later
   * time has been made (`updated_at` older than the rename's own), so that a replay never undoes
   * a newer change. The user as it is now, or undefined when nothing matched (gone, or changed
   * later).
   */
  async rename(db: SqlExecutor, change: Rename): Promise<User | undefined> {
    const rows = await db.query<UserRow>(
      `WITH renamed AS (
         UPDATE users SET name = $2, updated_at = $3, version = version + 1
          WHERE id = $1 AND updated_at < $3
         RETURNING ${COLUMNS}
       )
       SELECT ${COLUMNS} FROM renamed`,
      [change.id, change.name, change.updatedAt],
    );
    return rows[0] && toUser(rows[0]);
  }

  async exists(db: SqlExecutor, id: string): Promise<boolean> {
    const rows = await db.query('SELECT 1 FROM users WHERE id = $1', [id]);
    return rows.length === 1;
  }

  async updatePasswordHash(ctx: RequestContext, id: string, passwordHash: string, updatedAt: Date | string): Promise<void> {
    await this.database.query(
      ctx,
      'UPDATE users SET password_hash = $2, updated_at = $3, version = version + 1 WHERE id = $1',
      [id, passwordHash, updatedAt],
    );
  }

  /**
   * Replaces the hash after a parameter upgrade, without touching the user's version; only while
   * the stored hash is still `verifiedHash`, the one the password was checked against, so that
   * a login racing a password change cannot write the old password back.
   */
  async rehashPassword(ctx: RequestContext, id: string, verifiedHash: string, passwordHash: string): Promise<boolean> {
    const rows = await this.database.query(
      ctx,
      'UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2 RETURNING id',
      [id, verifiedHash, passwordHash],
    );
    return rows.length === 1;
  }

  /** The stored password hash, for a check that it has not changed since it was read. */
  async passwordHashOf(ctx: RequestContext, id: string): Promise<string | undefined> {
    const rows = await this.database.query<{ password_hash: string }>(ctx, 'SELECT password_hash FROM users WHERE id = $1', [id]);
    return rows[0]?.password_hash;
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

function toUser(row: UserRow): User {
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
