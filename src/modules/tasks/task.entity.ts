/**
 * The stored task. The migrations are the source of truth (a test checks that this entity
 * describes exactly the table they build); the repository's hot paths read rows with their own
 * SQL, so that they skip entity hydration. The expression indexes behind the `dueAt` sorts, the
 * trigram indexes behind `q` (partial, by owner) and the default order's covering index
 * (INCLUDE, which TypeORM does not describe) are named here only, so that schema tools leave
 * them alone.
 *
 * Each field a client can change has the position of its last write beside it (`*Pos`, a
 * bigint as a decimal string; NULL: older than any position): replay merges writes by position
 * (docs/design/replicas.md).
 */
import { Check, Column, Entity, ForeignKey, Index, PrimaryColumn } from 'typeorm';
import { UserEntity } from '../users/user.entity.js';
import { TITLE_SEARCH_INDEXES } from './title-search.js';

/** The trigram index behind `q`, partial indexes by owner (see `title-search.ts`). */
function titleSearchIndexes(target: object): void {
  for (const name of TITLE_SEARCH_INDEXES) Index(name, { synchronize: false })(target as never);
}

@Entity({ name: 'tasks' })
@Index('tasks_user_idempotency_key', ['userId', 'idempotencyKey'], {
  unique: true,
  where: 'idempotency_key IS NOT NULL',
})
@Index('tasks_user_created_at', { synchronize: false })
@Index('tasks_user_priority', ['userId', 'priority', 'id'])
@Index('tasks_user_due_at_nulls_last_asc', { synchronize: false })
@Index('tasks_user_due_at_nulls_last_desc', { synchronize: false })
@Index('tasks_user_status_priority', ['userId', 'status', 'priority'])
@titleSearchIndexes
@Check('tasks_title_not_empty', 'char_length(title) >= 1')
@Check('tasks_status_known', "status IN ('todo', 'in_progress', 'done')")
@Check('tasks_priority_rank', 'priority BETWEEN 1 AND 3')
@Check('tasks_due_at_finite', 'due_at IS NULL OR isfinite(due_at)')
@Check('tasks_version_positive', 'version >= 1')
export class TaskEntity {
  @PrimaryColumn('uuid')
  id!: string;

  /** The owner; the task goes with them. */
  @Column({ name: 'user_id', type: 'uuid' })
  @ForeignKey(() => UserEntity, { name: 'tasks_user_id_fkey', onDelete: 'CASCADE' })
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

  @Column({ name: 'title_pos', type: 'bigint', nullable: true })
  titlePos!: string | null;

  @Column({ name: 'description_pos', type: 'bigint', nullable: true })
  descriptionPos!: string | null;

  @Column({ name: 'status_pos', type: 'bigint', nullable: true })
  statusPos!: string | null;

  @Column({ name: 'priority_pos', type: 'bigint', nullable: true })
  priorityPos!: string | null;

  @Column({ name: 'due_at_pos', type: 'bigint', nullable: true })
  dueAtPos!: string | null;
}
