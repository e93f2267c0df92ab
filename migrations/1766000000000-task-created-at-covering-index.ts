import type { MigrationInterface, QueryRunner } from 'typeorm';
import { createIndexConcurrently, dropIndexConcurrently } from './support/concurrent-index.js';

/**
 * The default order's index (`tasks_user_created_at`) carries the columns a filtered page's probe
 * checks (title, status, priority), so that the probe is an index-only scan: it reads the
 * caller's 2,100 newest entries from a few adjacent index pages, however many other users' rows
 * lie between theirs in the heap (docs/performance.md, "An index-only probe"). Rows on pages
 * not yet marked all-visible by VACUUM are still checked in the heap, as before.
 *
 * Replaced under the same name without blocking writes: the new index is built concurrently
 * beside the old one, the old one dropped concurrently, and the new one renamed. Each step is
 * safe to run again if the migration stops part-way.
 */
const NAME = 'tasks_user_created_at';
const NEXT = 'tasks_user_created_at_next';

async function replace(runner: QueryRunner, definition: string): Promise<void> {
  // A NEXT left by the other direction, stopped part-way, is not the one wanted here.
  const covering = definition.includes(' INCLUDE ');
  const left: Array<{ indexdef: string }> = await runner.query(
    'SELECT indexdef FROM pg_indexes WHERE indexname = $1',
    [NEXT],
  );
  if (left.some((index) => index.indexdef.includes(' INCLUDE ') !== covering)) {
    await dropIndexConcurrently(runner, NEXT);
  }
  await createIndexConcurrently(runner, NEXT, definition);
  await dropIndexConcurrently(runner, NAME);
  await runner.query(`ALTER INDEX IF EXISTS ${NEXT} RENAME TO ${NAME}`);
}

export class TaskCreatedAtCoveringIndex1766000000000 implements MigrationInterface {
  name = 'TaskCreatedAtCoveringIndex1766000000000';
  transaction = false;

  async up(runner: QueryRunner): Promise<void> {
    await replace(runner, 'ON tasks (user_id, created_at, id) INCLUDE (title, status, priority)');
  }

  async down(runner: QueryRunner): Promise<void> {
    await replace(runner, 'ON tasks (user_id, created_at, id)');
  }
}
