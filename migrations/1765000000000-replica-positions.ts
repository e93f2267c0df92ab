import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What replay needs to merge writes from several replicas by their place in the order of
 * acceptance rather than by when they arrive (docs/design/replicas.md):
 *
 * - the position of each task field's last write (NULL for rows written before positions
 *   existed: older than any position);
 * - a tombstone for each deleted task, so that a create or an update replayed after the delete
 *   does not bring the task back; kept for the retention period, hence the index on `deleted_at`;
 * - the position of each user's last rename.
 *
 * Only nullable columns and a new table: no row is rewritten, no lock held for long.
 */
export class ReplicaPositions1765000000000 implements MigrationInterface {
  name = 'ReplicaPositions1765000000000';

  async up(runner: QueryRunner): Promise<void> {
    await runner.query(`
      ALTER TABLE tasks
        ADD COLUMN title_pos       bigint,
        ADD COLUMN description_pos bigint,
        ADD COLUMN status_pos      bigint,
        ADD COLUMN priority_pos    bigint,
        ADD COLUMN due_at_pos      bigint`);
    await runner.query(`
      CREATE TABLE task_tombstones (
        user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        id         uuid NOT NULL,
        position   bigint,
        deleted_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, id)
      )`);
    await runner.query(`CREATE INDEX task_tombstones_deleted_at_idx ON task_tombstones (deleted_at)`);
    await runner.query(`ALTER TABLE users ADD COLUMN name_pos bigint`);
  }

  async down(runner: QueryRunner): Promise<void> {
    await runner.query(`ALTER TABLE users DROP COLUMN name_pos`);
    await runner.query(`DROP TABLE task_tombstones`);
    await runner.query(`
      ALTER TABLE tasks
        DROP COLUMN title_pos, DROP COLUMN description_pos, DROP COLUMN status_pos,
        DROP COLUMN priority_pos, DROP COLUMN due_at_pos`);
  }
}
