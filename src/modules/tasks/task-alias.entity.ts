/**
 * An id a buffered create answered with (202) that never became a row, because when its replay
 * came the create's idempotency key was held by another task of the same user: reads and writes
 * by that id reach the task holding the key. Built by `1764400000000-create-task-aliases.ts`.
 */
import { Column, Entity, ForeignKey, Index, PrimaryColumn } from 'typeorm';
import { TaskEntity } from './task.entity.js';

@Entity({ name: 'task_aliases' })
@Index('task_aliases_task_id_idx', ['taskId'])
export class TaskAliasEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column({ name: 'user_id', type: 'uuid' })
  userId!: string;

  /** The task holding the key; the alias goes with it. */
  @Column({ name: 'task_id', type: 'uuid' })
  @ForeignKey(() => TaskEntity, { name: 'task_aliases_task_id_fkey', onDelete: 'CASCADE' })
  taskId!: string;

  @Column({ name: 'created_at', type: 'timestamptz', default: () => 'now()' })
  createdAt!: Date;
}
