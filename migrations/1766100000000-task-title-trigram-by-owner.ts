import type { MigrationInterface, QueryRunner } from 'typeorm';
import { createIndexConcurrently, dropIndexConcurrently } from './support/concurrent-index.js';

/**
 * The trigram index behind `q`, split by owner: eight partial GIN indexes of title trigrams,
 * each over the titles of the users whose id's last byte has one residue modulo 8, in place of
 * one index over every title led by `user_id`. A search that reaches the index reads only the
 * part that holds the caller's titles, and checks in the heap the term's matches among an
 * eighth of the users, instead of walking the caller's `user_id` entry once per match of every
 * user's (docs/performance.md, "Search: the trigram index split by owner"). The server's search
 * names the bucket in the same words as these predicates (src/modules/tasks/title-search.ts);
 * this text is frozen here, as a migration's must be.
 *
 * Built concurrently, so that writes go on meanwhile (at a million tasks on two cores, the
 * eight took 14 s in all, the one index 17 s); the old index is dropped once they all exist.
 * Each step is safe to run again after a stop part-way. During a rolling update, replicas still
 * on the previous release search rare terms by reading the caller's rows in order until they
 * are replaced (correct, slower for a caller with many tasks).
 */
const BUCKETS = 8;
const OLD = 'tasks_user_title_trgm';

const bucketIndex = (bucket: number) => ({
  name: `tasks_title_trgm_${bucket}`,
  definition: `ON tasks USING gin (title gin_trgm_ops) WHERE (get_byte(uuid_send(user_id), 15) & ${BUCKETS - 1}) = ${bucket}`,
});
const BUCKET_INDEXES = Array.from({ length: BUCKETS }, (_, bucket) => bucketIndex(bucket));

export class TaskTitleTrigramByOwner1766100000000 implements MigrationInterface {
  name = 'TaskTitleTrigramByOwner1766100000000';
  transaction = false;

  async up(runner: QueryRunner): Promise<void> {
    for (const index of BUCKET_INDEXES) {
      await createIndexConcurrently(runner, index.name, index.definition);
    }
    await dropIndexConcurrently(runner, OLD);
  }

  async down(runner: QueryRunner): Promise<void> {
    await createIndexConcurrently(runner, OLD, 'ON tasks USING gin (user_id, title gin_trgm_ops)');
    for (const index of BUCKET_INDEXES) await dropIndexConcurrently(runner, index.name);
  }
}
