/**
 * The profile's one write the offline buffer may hold, `profile.rename`, and its handler. The
 * handler runs the statement a direct rename runs (`UsersRepository.rename`), which takes only
 * if no rename positioned later is stored: idempotent, and independent of the order in which
 * buffers drain. The user renamed is always the operation's own (its authenticated caller).
 */
import { Injectable, type OnModuleInit } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { PermanentOperationError } from '../buffer/buffer.errors.js';
import type { BufferedOperation } from '../buffer/operation.js';
import { OperationRegistry } from '../buffer/operation-registry.js';
import { positionAt, timeOfPosition } from '../buffer/write-order.js';
import { UsersRepository, type UserNameChange } from '../users/users.repository.js';

export const PROFILE_RENAME = 'profile.rename';

/** The payload version of this release (2: positions). */
const PAYLOAD_VERSION = 2;

/** A change of the user's name alone: the one profile change the write buffer may apply later. */
export interface Rename {
  id: string;
  name: string;
  /** Its place in the order of acceptance (WriteOrder). */
  position: string;
}

export interface RenamePayload {
  name: string;
  position: string;
}

/** A payload of version 1, stored by the release before positions: ordered by its time. */
interface RenamePayloadV1 {
  name: string;
  updatedAt: string;
}

export function upgradeRenameV1(payload: unknown): RenamePayload {
  const { name, updatedAt } = payload as RenamePayloadV1;
  return { name, position: positionAt(updatedAt) };
}

export function renamePayload(change: Rename): RenamePayload {
  return { name: change.name, position: change.position };
}

export function renameOf(op: BufferedOperation<RenamePayload>): Rename {
  return { id: op.userId, name: op.payload.name, position: op.payload.position };
}

/** The statement's form of a rename: with the time of its position. */
export function nameChangeOf(change: Rename): UserNameChange {
  return { ...change, updatedAt: timeOfPosition(change.position) };
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
      { version: PAYLOAD_VERSION, upgrades: { 1: upgradeRenameV1 } },
    );
  }

  /**
   * Applies a buffered rename. Matching no row means a rename positioned later is there already
   * (nothing to do), or the user is gone: then it can never apply and is set aside.
   */
  async replayRename(db: EntityManager, change: Rename): Promise<void> {
    if (await this.users.rename(db, nameChangeOf(change))) return;
    if (await this.users.exists(db, change.id)) return;
    throw new PermanentOperationError(`user ${change.id} does not exist any more`);
  }
}
