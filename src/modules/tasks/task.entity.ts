/**
 * The stored task, mapped for TypeORM's schema knowledge. The migration
 * (`1764100000000-create-tasks.ts`) is the source of truth; the repository reads and writes with
 * explicit SQL so that the hot paths skip entity hydration. The expression indexes behind the
 * `dueAt` sorts and the trigram index behind `q` are named here only, so that schema tools
 * leave them alone.
 */
import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

@Entity({ name: 'tasks' })
@Index('tasks_user_idempotency_key', ['userId', 'idempotencyKey'], {
  unique: true,
  where: 'idempotency_key IS NOT NULL',
})
@Index('tasks_user_created_at', ['userId', 'createdAt', 'id'])
@Index('tasks_user_priority', ['userId', 'priority', 'id'])
@Index('tasks_user_due_at_nulls_last_asc', { synchronize: false })
@Index('tasks_user_due_at_nulls_last_desc', { synchronize: false })
@Index('tasks_user_status_priority', ['userId', 'status', 'priority'])
@Index('tasks_user_title_trgm', { synchronize: false })
export class TaskEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column({ name: 'user_id', type: 'uuid' })
  userId!: string;

  @Column({ type: 'varchar', length: 200 })
  title!: string;

  @Column({ type: 'varchar', length: 10_000, nullable: true })
  description!: string | null;

  @Column({ type: 'varchar', length: 16, default: 'todo' })
  status!: string;

  /** 1 low, 2 medium, 3 high. */
  @Column({ type: 'smallint', default: 2 })
  priority!: number;

  @Column({ name: 'due_at', type: 'timestamptz', precision: 3, nullable: true })
  dueAt!: Date | null;

  @Column({ name: 'created_at', type: 'timestamptz', precision: 3 })
  createdAt!: Date;

  /** Microseconds: the time guard of buffered updates (see the migration that set it). */
  @Column({ name: 'updated_at', type: 'timestamptz', precision: 6 })
  updatedAt!: Date;

  @Column({ type: 'integer', default: 1 })
  version!: number;

  @Column({ name: 'idempotency_key', type: 'varchar', length: 128, nullable: true })
  idempotencyKey!: string | null;
}
