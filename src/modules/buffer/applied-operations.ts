/**
 * The exactly-once ledger: `buffer_applied_operations` holds the id of every operation replayed,
 * and of every direct write of a kind that is not idempotent on its own (an idempotent kind's
 * direct write skips it: see `OperationKindOptions.idempotent`; a task create records its id
 * in its own insert statement), inserted in the same transaction as the operation's effect. Replay claims the ids of a batch
 * first and applies only those it could claim, so an operation committed just before a crash (and
 * still in LMDB, since removal comes after the commit) is skipped on the next run. Rows only need
 * to outlive the time an operation can wait in a buffer; older ones are pruned.
 */
import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import type { RequestContext } from '../../common/context/request-context.js';
import { DatabaseService } from '../../infrastructure/database/database.service.js';

/** Rows deleted per statement when pruning, so that no prune holds locks for long. */
const PRUNE_CHUNK = 10_000;

@Injectable()
export class AppliedOperations {
  constructor(private readonly database: DatabaseService) {}

  /**
   * Records `ids` as applied in the transaction of `manager` and returns those that were not
   * recorded before: the operations to apply now. A concurrent transaction claiming the same id
   * waits for this one and then sees it as taken.
   */
  async claim(manager: EntityManager, ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const rows = (await manager.query(
      `INSERT INTO buffer_applied_operations (id, applied_at)
       SELECT id, now() FROM unnest($1::uuid[]) AS claimed(id)
       ON CONFLICT (id) DO NOTHING
       RETURNING id`,
      [ids],
    )) as { id: string }[];
    return new Set(rows.map((row) => row.id.toLowerCase()));
  }

  /** Deletes the records older than `retentionMs`; resolves with how many went. */
  async prune(ctx: RequestContext, retentionMs: number): Promise<number> {
    const cutoff = new Date(Date.now() - retentionMs);
    let total = 0;
    for (;;) {
      const [row] = await this.database.query<{ deleted: number }>(
        ctx,
        `WITH gone AS (
           DELETE FROM buffer_applied_operations
           WHERE id IN (SELECT id FROM buffer_applied_operations WHERE applied_at < $1 LIMIT ${PRUNE_CHUNK})
           RETURNING 1
         )
         SELECT count(*)::int AS deleted FROM gone`,
        [cutoff],
      );
      const deleted = row?.deleted ?? 0;
      total += deleted;
      if (deleted < PRUNE_CHUNK) return total;
    }
  }
}
