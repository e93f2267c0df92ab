/**
 * A deleted task, kept for the retention period: a create or an update of it replayed later
 * (from another replica's buffer) meets it and does not bring the task back. Keyed by owner
 * and id, so that one user's delete of an id can never touch another user's task.
 */
import { Column, Entity, ForeignKey, Index, PrimaryColumn } from 'typeorm';
import { UserEntity } from '../users/user.entity.js';

@Entity({ name: 'task_tombstones' })
@Index('task_tombstones_deleted_at_idx', ['deletedAt'])
export class TaskTombstoneEntity {
  /** The owner; their tombstones go with them. */
  @PrimaryColumn({ name: 'user_id', type: 'uuid' })
  @ForeignKey(() => UserEntity, { name: 'task_tombstones_user_id_fkey', onDelete: 'CASCADE' })
  userId!: string;

  @PrimaryColumn('uuid')
  id!: string;

  /** The delete's position (decimal string); NULL for none. */
  @Column({ type: 'bigint', nullable: true })
  position!: string | null;

  @Column({ name: 'deleted_at', type: 'timestamptz', default: () => 'now()' })
  deletedAt!: Date;
}
