/**
 * Transaction-level advisory locks that serialize writes of the same thing across replicas,
 * where PostgreSQL's own row locks cannot: a statement that finds no row takes no lock, so a
 * delete that writes the tombstone of a task whose create is being inserted by another
 * transaction at that moment would not see the row, and the create would not see the tombstone
 * (both check, under READ COMMITTED, against what was committed when their statement began).
 * With both taking the task's lock first, in its own statement, the second waits for the first
 * to commit and then sees what it wrote.
 *
 * All the keys of a transaction are locked in one statement, in one global order (by the
 * lock's own key), so that two transactions never wait for each other in a cycle.
 */
import type { EntityManager } from 'typeorm';

/** The first half of every write lock's key: keeps them apart from other advisory locks. */
const WRITE_LOCK_SPACE = 0x7461736b; // 'task'

/** Locks every key, until the transaction `manager` runs in ends. Call it inside a transaction. */
export async function lockForWrite(manager: EntityManager, keys: Iterable<string>): Promise<void> {
  const unique = [...new Set(keys)];
  if (unique.length === 0) return;
  // Raw SQL: advisory locks have no TypeORM API. The aggregate consumes the sorted rows in order.
  await manager.query(
    `SELECT count(pg_advisory_xact_lock($1::int, sorted.lock_key))
       FROM (SELECT hashtext(key) AS lock_key FROM unnest($2::text[]) AS key ORDER BY 1) AS sorted`,
    [WRITE_LOCK_SPACE, unique],
  );
}
