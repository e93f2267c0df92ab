/**
 * The profile's one write the offline buffer may hold, `profile.rename`, and its handler. The
 * handler runs the statement a direct rename runs (`UsersRepository.rename`), guarded by the
 * rename's time, which makes it idempotent on its own.
 * The user renamed is always the operation's own (its authenticated caller).
 */
import { Injectable, type OnModuleInit } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { PermanentOperationError } from '../buffer/buffer.errors.js';
import type { BufferedOperation } from '../buffer/operation.js';
import { OperationRegistry } from '../buffer/operation-registry.js';
import { UsersRepository } from '../users/users.repository.js';

export const PROFILE_RENAME = 'profile.rename';

/** A change of the user's name alone: the one profile change the write buffer may apply later. */
export interface Rename {
  id: string;
  name: string;
  /** ISO 8601 with microseconds, from `ChangeClock`: the guard against undoing a newer change. */
  updatedAt: string;
}

export interface RenamePayload {
  name: string;
  /** ISO 8601 with microseconds (`ChangeClock`). */
  updatedAt: string;
}

export function renamePayload(change: Rename): RenamePayload {
  return { name: change.name, updatedAt: change.updatedAt };
}

export function renameOf(op: BufferedOperation<RenamePayload>): Rename {
  return { id: op.userId, name: op.payload.name, updatedAt: op.payload.updatedAt };
}

@Injectable()
export class ProfileOperations implements OnModuleInit {
  constructor(
    private readonly registry: OperationRegistry,
    private readonly users: UsersRepository,
  ) {}

  onModuleInit(): void {
    this.registry.register<RenamePayload>(
      PROFILE_RENAME,
      (db, op) => this.replayRename(db, renameOf(op)),
    );
  }

  /**
   * Applies a buffered rename. Matching no row means a change as new or newer is there already
   * (nothing to do), or the user is gone: then it can never apply and is set aside.
   */
  async replayRename(db: EntityManager, change: Rename): Promise<void> {
    if (await this.users.rename(db, change)) return;
    if (await this.users.exists(db, change.id)) return;
    throw new PermanentOperationError(`user ${change.id} does not exist any more`);
  }
}
