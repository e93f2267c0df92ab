/**
 * The trigram index behind `q`, split by owner. A title search that the probe does not settle
 * (a term in fewer than one in a hundred of the caller's newest rows) looks the term up in a GIN
 * index of title trigrams and keeps the caller's matches. One index over every user's titles
 * makes that lookup grow with the term's matches among other users' titles; led by `user_id`
 * (btree_gin), with the caller's own entry, which GIN walks once per candidate title, about
 * 8 µs each at 100,000 rows of the caller's. So the index is eight partial indexes, each over
 * the titles of the users whose id ends in a byte of one residue modulo 8 (the random bits of a
 * UUIDv7), and a lookup reads the one that holds the caller's titles: the candidates it checks
 * in the heap are the term's matches among an eighth of the users
 * (docs/performance.md, "Search: the trigram index split by owner").
 *
 * The predicate's text is the one the migration gave each index: PostgreSQL uses a partial
 * index only for a statement whose conditions contain its predicate, so the search has one
 * lookup per part, each naming its part as a constant, and the caller's part (a parameter)
 * switches its own on (`titleLookups` in `tasks.repository.ts`).
 */

/** How many partial indexes; a power of two, for the mask. */
export const TITLE_SEARCH_BUCKETS = 8;

/** The bucket of a task's owner, as the indexes' predicates compute it. */
export const TITLE_SEARCH_BUCKET_SQL = `(get_byte(uuid_send(user_id), 15) & ${TITLE_SEARCH_BUCKETS - 1})`;

/** The bucket of a (canonical, lower-case) user id: its last byte, masked. */
export function titleSearchBucket(userId: string): number {
  return Number.parseInt(userId.slice(-2), 16) & (TITLE_SEARCH_BUCKETS - 1);
}

/** The partial index of a bucket. */
export function titleSearchIndexName(bucket: number): string {
  return `tasks_title_trgm_${bucket}`;
}

export const TITLE_SEARCH_INDEXES = Array.from({ length: TITLE_SEARCH_BUCKETS }, (_, bucket) =>
  titleSearchIndexName(bucket),
);
