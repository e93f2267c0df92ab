import type { MigrationInterface, QueryRunner } from 'typeorm';
import { createIndexConcurrently, dropIndexConcurrently } from './support/concurrent-index.js';

/**
 * The caller's tasks of one status (and priority), whatever the sort: what a filtered list
 * reads when its filter keeps few of the user's rows (a status most of a user's tasks have
 * left, a priority hardly used), instead of reading all of them in sort order (see
 * `listStatement`). The statistics tell the planner how a user's tasks spread over statuses
 * and priorities, which the columns' own statistics cannot: without them it takes a status
 * that most of the table has for one that this user has too.
 *
 * Built concurrently, outside a transaction, so that writes go on meanwhile.
 */
export class TaskStatusPriorityIndex1765900100000 implements MigrationInterface {
  name = 'TaskStatusPriorityIndex1765900100000';
  transaction = false;

  async up(runner: QueryRunner): Promise<void> {
    await createIndexConcurrently(
      runner,
      'tasks_user_status_priority',
      'ON tasks (user_id, status, priority)',
    );
    await runner.query(
      'CREATE STATISTICS IF NOT EXISTS tasks_user_status_priority_mcv (mcv) ON user_id, status, priority FROM tasks',
    );
  }

  async down(runner: QueryRunner): Promise<void> {
    await runner.query('DROP STATISTICS IF EXISTS tasks_user_status_priority_mcv');
    await dropIndexConcurrently(runner, 'tasks_user_status_priority');
  }
}
