/**
 * The exactly-once ledger: `buffer_applied_operations` holds the id of every operation replayed,
 * inserted in the same transaction as its effect. Replay claims the ids of a batch first and
 * applies only those it could claim, so an operation committed just before a crash (and still in
 * LMDB, since removal comes after the commit) is skipped on the next run. Rows only need to
 * outlive the time an operation can wait in a buffer; older ones are pruned.
 */
import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { EntityManager, Repository } from 'typeorm';
import type { RequestContext } from '../../common/context/request-context.js';
import { Database } from '../../infrastructure/database/database.js';
import { AppliedOperationEntity } from './applied-operation.entity.js';

/** Rows deleted per statement when pruning, so that no prune holds locks for long. */
const PRUNE_CHUNK = 10_000;

@Injectable()
export class AppliedOperations {
  constructor(
    @InjectRepository(AppliedOperationEntity) private readonly ledger: Repository<AppliedOperationEntity>,
    private readonly db: Database,
  ) {}

  /**
   * Records `ids` as applied in the transaction of `manager` and returns those that were not
   * recorded before: the operations to apply now. A concurrent transaction claiming the same id
   * waits for this one and then sees it as taken.
   */
  async claim(manager: EntityManager, ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    // By hand: a multi-row insert from one array parameter that returns only the new ids.
    const rows = (await manager.withRepository(this.ledger).query(
      `INSERT INTO buffer_applied_operations (id, applied_at)
       SELECT id, now() FROM unnest($1::uuid[]) AS claimed(id)
       ON CONFLICT (id) DO NOTHING
       RETURNING id`,
      [ids],
    )) as { id: string }[];
    return new Set(rows.map((row) => row.id.toLowerCase()));
  }

  /** Deletes the records older than `retentionMs`, a chunk at a time; resolves with how many went. */
  async prune(ctx: RequestContext, retentionMs: number): Promise<number> {
    const cutoff = new Date(Date.now() - retentionMs);
    let total = 0;
    for (;;) {
      // By hand: DELETE takes no LIMIT, hence the chunk chosen by a subquery.
      const [row] = await this.db.run(ctx, () =>
        this.ledger.query(
          `WITH gone AS (
             DELETE FROM buffer_applied_operations
             WHERE id IN (SELECT id FROM buffer_applied_operations WHERE applied_at < $1 LIMIT ${PRUNE_CHUNK})
             RETURNING 1
           )
           SELECT count(*)::int AS deleted FROM gone`,
          [cutoff],
        ) as Promise<{ deleted: number }[]>,
      );
      const deleted = row?.deleted ?? 0;
      total += deleted;
      if (deleted < PRUNE_CHUNK) return total;
    }
  }
}
