/**
 * Building an index on a large table without blocking writes: `CREATE INDEX CONCURRENTLY`, in
 * a migration that opts out of the transaction (`transaction = false`; the executor runs the
 * others in one transaction each). A concurrent build that fails part-way (cancelled, a
 * deadlock, the session lost) leaves an invalid index behind that `IF NOT EXISTS` would then
 * take for done: the next run drops it first and builds again.
 */
import type { QueryRunner } from 'typeorm';

export async function createIndexConcurrently(
  runner: QueryRunner,
  name: string,
  definition: string,
): Promise<void> {
  const invalid: unknown[] = await runner.query(
    'SELECT 1 FROM pg_index WHERE indexrelid = to_regclass($1) AND NOT indisvalid',
    [name],
  );
  if (invalid.length > 0) await runner.query(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
  await runner.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${name} ${definition}`);
}

export async function dropIndexConcurrently(runner: QueryRunner, name: string): Promise<void> {
  await runner.query(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
}
