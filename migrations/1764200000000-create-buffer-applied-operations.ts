import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The exactly-once ledger of the write buffer: the id of every operation applied, written in the
 * same transaction as its effect, so that replaying an operation already applied (a crash
 * between the commit and its removal from the buffer) does nothing. Rows are pruned by age,
 * hence the index on `applied_at`.
 */
export class CreateBufferAppliedOperations1764200000000 implements MigrationInterface {
  name = 'CreateBufferAppliedOperations1764200000000';

  async up(runner: QueryRunner): Promise<void> {
    await runner.query(`
      CREATE TABLE buffer_applied_operations (
        id         uuid PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
    await runner.query(
      `CREATE INDEX buffer_applied_operations_applied_at_idx ON buffer_applied_operations (applied_at)`,
    );
  }

  async down(runner: QueryRunner): Promise<void> {
    await runner.query(`DROP TABLE buffer_applied_operations`);
  }
}
