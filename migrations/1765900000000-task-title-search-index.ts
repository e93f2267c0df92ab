import type { MigrationInterface, QueryRunner } from 'typeorm';
import { createIndexConcurrently, dropIndexConcurrently } from './support/concurrent-index.js';

/**
 * The index behind `q`, the title search (a substring, ignoring case): a GIN index of the
 * title's trigrams (pg_trgm), led by `user_id` (btree_gin) so that one index scan finds the
 * caller's titles holding every trigram of the term, whoever else's hold it. Chosen by EXPLAIN
 * on a million rows (docs/performance.md): the title alone would make a rare term fetch every
 * user's matches. Both extensions are trusted: a role with the CREATE privilege on the
 * database may create them without being a superuser.
 *
 * Built concurrently, outside a transaction, so that writes go on meanwhile (about 8–30 s per
 * million tasks on two cores).
 */
export class TaskTitleSearchIndex1765900000000 implements MigrationInterface {
  name = 'TaskTitleSearchIndex1765900000000';
  transaction = false;

  async up(runner: QueryRunner): Promise<void> {
    await runner.query('CREATE EXTENSION IF NOT EXISTS pg_trgm');
    await runner.query('CREATE EXTENSION IF NOT EXISTS btree_gin');
    await createIndexConcurrently(
      runner,
      'tasks_user_title_trgm',
      'ON tasks USING gin (user_id, title gin_trgm_ops)',
    );
  }

  async down(runner: QueryRunner): Promise<void> {
    await dropIndexConcurrently(runner, 'tasks_user_title_trgm');
  }
}
