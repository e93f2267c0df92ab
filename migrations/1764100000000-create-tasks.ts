import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Tasks, owned by a user (deleted with them). Priority is a rank (1 low, 2 medium, 3 high) so
 * that ordering by the column is the business order. Timestamps keep milliseconds, the
 * precision of the ISO strings the API and the cursors carry, so a value read back compares
 * equal to the one written.
 *
 * Every index starts with `user_id`: each list query the API allows (any filter, any sort)
 * reads only the caller's rows, in the order of its sort, with `id` breaking ties for keyset
 * pagination. A missing due date sorts last in both directions, hence one expression index per
 * direction.
 */
export class CreateTasks1764100000000 implements MigrationInterface {
  name = 'CreateTasks1764100000000';

  async up(runner: QueryRunner): Promise<void> {
    await runner.query(`
      CREATE TABLE tasks (
        id              uuid PRIMARY KEY,
        user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        title           varchar(200) NOT NULL,
        description     varchar(10000),
        status          varchar(16) NOT NULL DEFAULT 'todo',
        priority        smallint NOT NULL DEFAULT 2,
        due_at          timestamptz(3),
        created_at      timestamptz(3) NOT NULL,
        updated_at      timestamptz(3) NOT NULL,
        version         integer NOT NULL DEFAULT 1,
        idempotency_key varchar(128),
        CONSTRAINT tasks_title_not_empty CHECK (char_length(title) >= 1),
        CONSTRAINT tasks_status_known CHECK (status IN ('todo', 'in_progress', 'done')),
        CONSTRAINT tasks_priority_rank CHECK (priority BETWEEN 1 AND 3),
        CONSTRAINT tasks_due_at_finite CHECK (due_at IS NULL OR isfinite(due_at)),
        CONSTRAINT tasks_version_positive CHECK (version >= 1)
      )`);
    await runner.query(`
      CREATE UNIQUE INDEX tasks_user_idempotency_key ON tasks (user_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL`);
    await runner.query(`CREATE INDEX tasks_user_created_at ON tasks (user_id, created_at, id)`);
    await runner.query(`CREATE INDEX tasks_user_priority ON tasks (user_id, priority, id)`);
    await runner.query(`
      CREATE INDEX tasks_user_due_at_nulls_last_asc
        ON tasks (user_id, (COALESCE(due_at, 'infinity'::timestamptz)), id)`);
    await runner.query(`
      CREATE INDEX tasks_user_due_at_nulls_last_desc
        ON tasks (user_id, (COALESCE(due_at, '-infinity'::timestamptz)), id)`);
  }

  async down(runner: QueryRunner): Promise<void> {
    await runner.query(`DROP TABLE tasks`);
  }
}
