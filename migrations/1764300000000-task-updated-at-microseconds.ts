import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `tasks.updated_at` to microseconds. An update the write buffer replays is guarded by its time
 * (`updated_at < $change`), and two changes a client makes within one millisecond must still
 * order, or the later one is taken for an older one and dropped: the change clock hands out
 * strictly increasing microsecond times, which this column now keeps exactly (at milliseconds
 * it would round them, and could round an earlier change past a later one). `updated_at` is no
 * sort key: the API still shows it in milliseconds, and cursors never carry it. Raising a
 * timestamp's precision rewrites no row.
 */
export class TaskUpdatedAtMicroseconds1764300000000 implements MigrationInterface {
  name = 'TaskUpdatedAtMicroseconds1764300000000';

  async up(runner: QueryRunner): Promise<void> {
    await runner.query(`ALTER TABLE tasks ALTER COLUMN updated_at TYPE timestamptz(6)`);
  }

  async down(runner: QueryRunner): Promise<void> {
    await runner.query(`ALTER TABLE tasks ALTER COLUMN updated_at TYPE timestamptz(3)`);
  }
}
