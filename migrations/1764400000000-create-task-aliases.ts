import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Ids that buffered creates answered with (202) but that never became rows, because when their
 * replay came the creates' idempotency key was already held by another task of the same user:
 * the same client intent, applied directly while the answer to it was lost. Replayed updates
 * and deletes of such an id apply to the task holding the key. Rows are rare (one per such
 * retry) and go with their task; nothing prunes them.
 */
export class CreateTaskAliases1764400000000 implements MigrationInterface {
  name = 'CreateTaskAliases1764400000000';

  async up(runner: QueryRunner): Promise<void> {
    await runner.query(`
      CREATE TABLE task_aliases (
        id         uuid PRIMARY KEY,
        user_id    uuid NOT NULL,
        task_id    uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await runner.query(`CREATE INDEX task_aliases_task_id_idx ON task_aliases (task_id)`);
  }

  async down(runner: QueryRunner): Promise<void> {
    await runner.query(`DROP TABLE task_aliases`);
  }
}
