/**
 * The task list's search and filters as a client sees them, after they moved onto the trigram
 * index and the bounded probe of `listStatement`: a case-insensitive substring of the title,
 * every character literal, with the status and priority filters, every sort and cursor
 * pagination, through each of the statement's paths (a probe that fills the page, a rare
 * filter served by its own index, a short search answered from a bounded scan); and the
 * migrations that build those indexes concurrently, outside a transaction, under the
 * migrations lock.
 *
 * CI budget: 60 s
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { TaskTitleTrigramByOwner1766100000000 } from '../../migrations/1766100000000-task-title-trigram-by-owner.js';
import { SchemaMigrator } from '../../src/infrastructure/database/schema-migrator.js';
import type { TaskFilter, TaskSort } from '../../src/modules/tasks/task.js';
import { listStatement } from '../../src/modules/tasks/tasks.repository.js';
import {
  TITLE_SEARCH_BUCKETS,
  TITLE_SEARCH_INDEXES,
  titleSearchBucket,
  titleSearchIndexName,
} from '../../src/modules/tasks/title-search.js';
import { registerAndLogin, type TestUser } from '../support/auth.js';
import { databaseUrlFor, startTestApp, withDatabase, type TestApp } from '../support/test-app.js';

const TASKS = '/api/v1/tasks';
const SORTS: TaskSort[] = ['createdAt', '-createdAt', 'dueAt', '-dueAt', 'priority', '-priority'];
const RANK = { low: 1, medium: 2, high: 3 } as const;
const MIGRATIONS_LOCK = "hashtext('taskd:migrations')";
/** One secret for both instances of the query-timeout test: tokens are verified with it. */
const JWT_SECRET = 'task-search-e2e-secret-0123456789abcdef';
/** Enough rows that a page asking for one or two tasks probes only part of them. */
const ROWS = 500;

interface Seeded {
  id: string;
  title: string;
  status: 'todo' | 'in_progress' | 'done';
  priority: 'low' | 'medium' | 'high';
  dueAt: string | null;
  createdAt: string;
}

interface Page {
  items: Array<{ id: string; title: string }>;
  nextCursor: string | null;
}

/** Titles by position: a common term, a rare one in three places, a short one at both ends. */
function titleOf(i: number): string {
  const special: Record<number, string> = {
    1: 'zq one',
    498: 'ZQ two',
    3: 'Walrus early',
    240: 'the WALRUS',
    497: 'walrus late',
    10: '100% natural',
    11: '1000 things',
    12: 'a_b_c',
    13: 'axbxc',
    14: 'back\\slash',
    15: 'backslash',
    16: 'Été à Paris',
    17: 'ÉTÉ indien',
  };
  return special[i] ?? (i % 2 === 0 ? `Weekly REPORT ${i}` : `chore ${i}`);
}

function seededRows(): Seeded[] {
  const base = Date.parse('2026-01-01T00:00:00.000Z');
  return Array.from({ length: ROWS }, (_, i) => ({
    id: randomUUID(),
    title: titleOf(i),
    // Ties on every sort key, broken by id.
    createdAt: new Date(base + Math.floor(i / 3) * 60_000).toISOString(),
    dueAt: i % 4 === 0 ? null : new Date(base + ((i * 37) % 50) * 3_600_000).toISOString(),
    status: [5, 290].includes(i) ? 'in_progress' : i % 3 === 0 ? 'done' : 'todo',
    priority: [7, 150, 495].includes(i) ? 'high' : i % 2 === 0 ? 'medium' : 'low',
  }));
}

/** A fresh user id whose owner falls in the given part of the trigram index. */
function userIdIn(bucket: number): string {
  for (;;) {
    const id = randomUUID();
    if (titleSearchBucket(id) === bucket) return id;
  }
}

type PlanNode = Record<string, unknown> & { Plans?: PlanNode[] };
const nodesOf = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(nodesOf)];

/**
 * Prepares `statement` as `list` on the client and runs it once under EXPLAIN ANALYZE, planned
 * as `mode` says (for its values, or once for any): every node of the plan, and the parameters
 * as literals for a further `EXECUTE list(…)`.
 */
async function analyzePrepared(
  client: pg.Client,
  { sql, params }: { sql: string; params: unknown[] },
  mode: string,
): Promise<{ nodes: PlanNode[]; literals: string }> {
  await client.query(`SET plan_cache_mode = ${mode}`);
  await client.query(`PREPARE list AS ${sql}`);
  const literals = params.map((value) => client.escapeLiteral(String(value))).join(', ');
  const { rows: plans } = await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
    `EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE list(${literals})`,
  );
  return { nodes: nodesOf(plans[0]!['QUERY PLAN'][0]!.Plan), literals };
}

/** What the list promises, computed from the rows themselves. */
function expected(rows: Seeded[], sort: TaskSort, filter: TaskFilter): string[] {
  const q = filter.q?.toLowerCase();
  const keep = rows.filter(
    (row) =>
      (filter.status === undefined || row.status === filter.status) &&
      (filter.priority === undefined || row.priority === filter.priority) &&
      (q === undefined || row.title.toLowerCase().includes(q)),
  );
  const descending = sort.startsWith('-');
  const keyOf = (row: Seeded): number => {
    if (sort.endsWith('createdAt')) return Date.parse(row.createdAt);
    if (sort.endsWith('dueAt')) {
      return row.dueAt === null ? (descending ? -Infinity : Infinity) : Date.parse(row.dueAt);
    }
    return RANK[row.priority];
  };
  const direction = descending ? -1 : 1;
  return keep
    .sort((a, b) => {
      const byKey = keyOf(a) === keyOf(b) ? 0 : keyOf(a) < keyOf(b) ? -1 : 1;
      return direction * (byKey || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    })
    .map((row) => row.id);
}

describe('task search and filters at the index (e2e)', () => {
  let t: TestApp;
  let alice: TestUser;
  let bob: TestUser;
  let rows: Seeded[];

  beforeAll(async () => {
    t = await startTestApp({ env: { JWT_SECRET } });
    [alice, bob] = await Promise.all([registerAndLogin(t.app), registerAndLogin(t.app)]);
    rows = seededRows();
    await withDatabase(t.databaseName, async (client) => {
      await insert(client, alice.userId, rows);
      // Another user's titles hold every term searched for: none of them may show.
      await insert(client, bob.userId, seededRows().slice(0, 60));
      // Many other users with many tasks, so that the planner has a real choice to make; the
      // rare term is common among them. Half share Alice's part of the trigram index.
      await client.query(
        `INSERT INTO users (id, email, name, password_hash, created_at, updated_at)
         SELECT id, 'seed-' || g || '@example.test', 'Seed', 'x', now(), now()
           FROM unnest($1::uuid[]) WITH ORDINALITY AS s(id, g)`,
        [Array.from({ length: 40 }, (_, g) => userIdIn(g % 2 === 0 ? titleSearchBucket(alice.userId) : g % 8))],
      );
      await client.query(
        `INSERT INTO tasks (id, user_id, title, status, priority, due_at, created_at, updated_at)
         SELECT gen_random_uuid(), u.id, 'seed task ' || g || CASE WHEN g % 20 = 0 THEN ' walrus' ELSE '' END,
                (ARRAY['todo', 'in_progress', 'done'])[1 + g % 3], 1 + g % 3,
                CASE WHEN g % 4 = 0 THEN NULL ELSE now() + g * interval '1 hour' END,
                now() - g * interval '1 minute', now()
           FROM users u CROSS JOIN generate_series(1, 500) g
          WHERE u.email LIKE 'seed-%'`,
      );
      await client.query('ANALYZE tasks');
    });
  });

  afterAll(async () => {
    await t?.close();
  });

  async function insert(client: pg.Client, userId: string, seeded: Seeded[]): Promise<void> {
    await client.query(
      `INSERT INTO tasks (id, user_id, title, status, priority, due_at, created_at, updated_at)
       SELECT id, $1, title, status, priority, due_at, created_at, created_at
         FROM unnest($2::uuid[], $3::text[], $4::text[], $5::smallint[], $6::timestamptz[], $7::timestamptz[])
              AS s(id, title, status, priority, due_at, created_at)`,
      [
        userId,
        seeded.map((row) => row.id),
        seeded.map((row) => row.title),
        seeded.map((row) => row.status),
        seeded.map((row) => RANK[row.priority]),
        seeded.map((row) => row.dueAt),
        seeded.map((row) => row.createdAt),
      ],
    );
  }

  async function page(user: TestUser, query: Record<string, string>): Promise<Page> {
    const res = await t.app.inject({
      method: 'GET',
      url: `${TASKS}?${new URLSearchParams(query).toString()}`,
      headers: user.auth,
    });
    expect(res.statusCode).toBe(200);
    return res.json<Page>();
  }

  /** Every page of a listing, following `nextCursor` until it is null. */
  async function listAll(query: Record<string, string>): Promise<{ ids: string[]; pages: Page[] }> {
    const pages: Page[] = [];
    let cursor: string | null = null;
    do {
      const next = await page(alice, cursor === null ? query : { ...query, cursor });
      pages.push(next);
      cursor = next.nextCursor;
      expect(pages.length).toBeLessThan(ROWS + 2);
    } while (cursor !== null);
    return { ids: pages.flatMap((p) => p.items.map((item) => item.id)), pages };
  }

  function queryOf(sort: TaskSort, filter: TaskFilter, limit: number): Record<string, string> {
    const query: Record<string, string> = { sort, limit: String(limit) };
    for (const [name, value] of Object.entries(filter))
      if (value !== undefined) query[name] = value;
    return query;
  }

  // One listing per case and sort, followed to its end, against what the rows say. The limits
  // are small so that the probe (a hundred rows per row of a page) covers only part of the
  // user's rows, and every path of the statement is taken.
  const cases: Array<[string, TaskFilter, number]> = [
    ['no filter', {}, 60],
    ['a common term, in another case', { q: 'report' }, 25],
    ['a rare term: the probe finds too few, the trigram index the rest', { q: 'WALRUS' }, 1],
    ['a rare status: served by its own index', { status: 'in_progress' }, 1],
    ['a rare priority', { priority: 'high' }, 1],
    ['a common status with a common term', { status: 'todo', q: 'Report' }, 4],
    ['status, priority and a rare term', { status: 'done', priority: 'medium', q: 'walrus' }, 1],
    ['status and priority', { status: 'done', priority: 'low' }, 9],
  ];

  describe.each(SORTS)('sort=%s', (sort) => {
    it.each(cases)('%s', async (_name, filter, limit) => {
      const { ids, pages } = await listAll(queryOf(sort, filter, limit));
      expect(ids).toEqual(expected(rows, sort, filter));
      // With a trigram to look up, or no search, every page but the last is full.
      for (const full of pages.slice(0, -1)) expect(full.items).toHaveLength(limit);
    });

    it('a search with no trigram finds every match, following its cursors', async () => {
      const { ids } = await listAll(queryOf(sort, { q: 'zq' }, 1));
      expect(ids).toEqual(expected(rows, sort, { q: 'zq' }));
      expect(ids).toHaveLength(2);
    });
  });

  it.each<TaskSort>(['createdAt', '-createdAt'])(
    'a search with no trigram reads a bounded run per page: a page may be empty and not the last (sort=%s)',
    async (sort) => {
      // The two matches are the second and the second-to-last rows: with one task a page, a
      // probe reads 200 rows, and the run between them comes back empty, with a cursor.
      const { ids, pages } = await listAll(queryOf(sort, { q: 'ZQ' }, 1));
      expect(ids).toEqual(expected(rows, sort, { q: 'zq' }));
      expect(pages.map((p) => [p.items.length, p.nextCursor !== null])).toEqual([
        [1, true],
        [0, true],
        [1, false],
      ]);
    },
  );

  it.each<[string, string, number[]]>([
    ['% is literal', '100%', [10]],
    ['_ is literal, in a short search', 'a_b', [12]],
    ['\\ is literal, in a short search', '\\', [14]],
    ['\\ is literal, with a trigram', 'back\\s', [14]],
    ['letters beyond ASCII ignore case', 'été', [16, 17]],
    ['a single character', 'é', [16, 17]],
  ])('%s: q=%s', async (_name, q, positions) => {
    const { ids } = await listAll({ q, sort: 'createdAt' });
    expect([...ids].sort()).toEqual(positions.map((i) => rows[i]!.id).sort());
    expect(ids).toEqual(expected(rows, 'createdAt', { q }));
  });

  it('never shows another user’s task, whatever the path', async () => {
    for (const q of ['walrus', 'zq', 'report']) {
      const seen = await page(bob, { q, limit: '100' });
      const own = new Set(rows.map((row) => row.id));
      expect(seen.items.length).toBeGreaterThan(0);
      expect(seen.items.filter((item) => own.has(item.id))).toEqual([]);
    }
  });

  it('refuses a cursor from a search replayed with another term', async () => {
    const first = await page(alice, { q: 'walrus', limit: '1' });
    expect(first.nextCursor).not.toBeNull();
    const res = await t.app.inject({
      method: 'GET',
      url: `${TASKS}?q=report&limit=1&cursor=${encodeURIComponent(first.nextCursor!)}`,
      headers: alice.auth,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'VALIDATION_FAILED' });
  });

  // ---------------------------------------------------------------- plans

  describe('plans', () => {

    // A user with many tasks, of which three are in progress and none holds the term: for a
    // user with few, reading all of them is as cheap as any index. Their titles share a part of
    // the trigram index with Alice's and the seed users' who hold the rare term.
    let HEAVY: string;

    beforeAll(async () => {
      HEAVY = userIdIn(titleSearchBucket(alice.userId));
      await withDatabase(t.databaseName, async (client) => {
        await client.query(
          `INSERT INTO users (id, email, name, password_hash, created_at, updated_at)
           VALUES ($1, 'heavy@example.test', 'Heavy', 'x', now(), now())`,
          [HEAVY],
        );
        await client.query(
          `INSERT INTO tasks (id, user_id, title, status, priority, created_at, updated_at)
           SELECT gen_random_uuid(), $1, 'chore ' || g, CASE WHEN g % 7000 = 0 THEN 'in_progress' ELSE 'done' END,
                  2, now() - g * interval '1 minute', now()
             FROM generate_series(1, 20000) g`,
          [HEAVY],
        );
        // VACUUM merges the trigram indexes' pending lists, as autovacuum does: until then every
        // lookup also reads the list of entries not yet merged, which makes a seq scan of a table
        // this small look cheaper.
        await client.query('VACUUM ANALYZE tasks');
      });
    });

    async function planOf(sort: TaskSort, filter: TaskFilter, mode: string): Promise<PlanNode[]> {
      const statement = listStatement(HEAVY, { filter, sort, after: null, limit: 21 });
      return withDatabase(t.databaseName, async (client) => {
        const { nodes } = await analyzePrepared(client, statement, mode);
        return nodes;
      });
    }

    const filters: TaskFilter[] = [
      { q: 'walrus' },
      { q: 'zq' },
      { status: 'in_progress' },
      { priority: 'high' },
      { status: 'done', priority: 'low', q: 'report' },
    ];
    const shapes = ['force_custom_plan', 'force_generic_plan'].flatMap((mode) =>
      SORTS.flatMap((sort) => filters.map((filter) => [mode, sort, filter] as const)),
    );

    it.each(shapes)(
      'reads only the caller’s rows, through indexes (%s, sort=%s, %j)',
      async (mode, sort, filter) => {
        const nodes = await planOf(sort, filter, mode);
        expect(nodes.filter((node) => node['Node Type'] === 'Seq Scan')).toEqual([]);
        const scans = nodes.filter((node) =>
          ['Index Scan', 'Index Only Scan', 'Bitmap Index Scan'].includes(
            node['Node Type'] as string,
          ),
        );
        expect(scans.length).toBeGreaterThan(0);
        for (const scan of scans) {
          if (TITLE_SEARCH_INDEXES.includes(String(scan['Index Name']))) {
            // The trigram index's part that holds the caller's titles; a generic plan holds a
            // lookup for each part, and only the caller's ever runs.
            if (scan['Index Name'] !== titleSearchIndexName(titleSearchBucket(HEAVY))) {
              expect(scan['Actual Loops']).toBe(0);
            }
            continue;
          }
          // The page's own rows are fetched by id at the end, the owner checked again on each.
          const lookup =
            scan['Index Name'] === 'tasks_pkey' &&
            /^\(id = .+\.id\)$/.test(String(scan['Index Cond']));
          expect(String(scan[lookup ? 'Filter' : 'Index Cond'])).toContain('user_id =');
        }
        // What an index finds is kept only where the caller owns it: a part of the trigram
        // index's matches just above the lookup, the others' in the heap scan itself.
        for (const node of nodes) {
          const overTitlePart = nodesOf(node).some((below) =>
            TITLE_SEARCH_INDEXES.includes(String(below['Index Name'])),
          );
          if (node['Node Type'] === 'Subquery Scan' && /^part(_\d+)?$/.test(String(node['Alias']))) {
            expect(overTitlePart).toBe(true);
            expect(String(node['Filter'])).toMatch(/^\(\(?part(_\d+)?\.user_id = (\$1|'[0-9a-f-]{36}'::uuid)\)/);
          } else if (node['Node Type'] === 'Bitmap Heap Scan' && !overTitlePart) {
            expect(`${String(node['Recheck Cond'])} ${String(node['Filter'])}`).toContain('user_id =');
          }
        }
        // A lookup per part in a generic plan; a custom plan keeps only the caller's.
        const parts = nodes.filter((node) => /^part(_\d+)?$/.test(String(node['Alias'])));
        const lookups = mode === 'force_generic_plan' ? TITLE_SEARCH_BUCKETS : 1;
        expect(parts).toHaveLength(filter.q === 'walrus' || filter.q === 'report' ? lookups : 0);
      },
    );

    it.each(['force_custom_plan', 'force_generic_plan'])(
      'probes the default order from its index alone, never the heap, once vacuumed (%s)',
      async (mode) => {
        // Without the covering index the probe read each of its 2,100 rows from the heap, where
        // at scale the caller's rows lie among every other user's.
        const statement = listStatement(HEAVY, {
          filter: { q: 'zqx' },
          sort: '-createdAt',
          after: null,
          limit: 21,
        });
        const probe = await withDatabase(t.databaseName, async (client) => {
          await client.query('VACUUM tasks');
          const { nodes } = await analyzePrepared(client, statement, mode);
          return nodes.find(
            (node) => node['Index Name'] === 'tasks_user_created_at',
          );
        });
        expect(probe).toMatchObject({
          'Node Type': 'Index Only Scan',
          'Actual Rows': 2_100,
          'Heap Fetches': 0,
        });
      },
    );

    it.each(['force_custom_plan', 'force_generic_plan'])(
      'looks a rare term up in the part of the trigram index that holds the caller’s titles (%s)',
      async (mode) => {
        const bucket = titleSearchBucket(HEAVY);
        // A term of its own per run: the index keeps a deleted row's entries until VACUUM.
        const term = mode === 'force_custom_plan' ? 'narwhal' : 'axolotl';
        const statement = listStatement(HEAVY, {
          filter: { q: term },
          sort: '-createdAt',
          after: null,
          limit: 21,
        });
        const found = await withDatabase(t.databaseName, async (client) => {
          // The caller's two matches lie past the probe; three users in each part hold ten each.
          await client.query(
            `INSERT INTO tasks (id, user_id, title, status, priority, created_at, updated_at)
             SELECT gen_random_uuid(), $1, 'old ' || $2 || ' ' || g, 'todo', 2, now() - interval '1 year', now()
               FROM generate_series(1, 2) g`,
            [HEAVY, term],
          );
          const others = Array.from({ length: TITLE_SEARCH_BUCKETS * 3 }, (_, i) =>
            userIdIn(i % TITLE_SEARCH_BUCKETS),
          );
          await client.query(
            `INSERT INTO users (id, email, name, password_hash, created_at, updated_at)
             SELECT id, id || '@example.test', 'Other', 'x', now(), now() FROM unnest($1::uuid[]) id`,
            [others],
          );
          await client.query(
            `INSERT INTO tasks (id, user_id, title, status, priority, created_at, updated_at)
             SELECT gen_random_uuid(), u, $2 || ' ' || g, 'todo', 2, now(), now()
               FROM unnest($1::uuid[]) u CROSS JOIN generate_series(1, 10) g`,
            [others, term],
          );
          // As with many users: a generic plan then takes one to hold a row in a thousand, and
          // once added the caller's every row from the `(user_id, …)` btree to the lookup.
          await client.query('ALTER TABLE tasks ALTER COLUMN user_id SET (n_distinct = 1000)');
          await client.query('ANALYZE tasks');
          const { nodes, literals } = await analyzePrepared(client, statement, mode);
          const { rows: page } = await client.query<{ id: string }>(`EXECUTE list(${literals})`);
          await client.query('DELETE FROM tasks WHERE title LIKE $1', [`%${term}%`]);
          await client.query('DELETE FROM users WHERE id = ANY($1::uuid[])', [others]);
          await client.query('ALTER TABLE tasks ALTER COLUMN user_id RESET (n_distinct)');
          await client.query('ANALYZE tasks');
          return { nodes: nodes, page: page.length };
        });
        const ran = found.nodes.filter((node) => Number(node['Actual Loops']) > 0);
        // The caller's 2 and the 30 of the three others in their part: not the 210 elsewhere.
        expect(ran.filter((node) => node['Node Type'] === 'Bitmap Index Scan')).toEqual([
          expect.objectContaining({ 'Index Name': titleSearchIndexName(bucket), 'Actual Rows': 32 }),
        ]);
        expect(ran.filter((node) => node['Node Type'] === 'Bitmap Heap Scan')).toEqual([
          expect.objectContaining({ 'Actual Rows': 32 }),
        ]);
        // The caller's kept from those 32 by the owner's check above the lookup.
        const callersPart = found.nodes.filter(
          (node) =>
            /^part(_\d+)?$/.test(String(node['Alias'])) &&
            nodesOf(node).some((below) => below['Index Name'] === titleSearchIndexName(bucket)),
        );
        expect(callersPart).toEqual([
          expect.objectContaining({ 'Actual Rows': 2, 'Rows Removed by Filter': 30 }),
        ]);
        expect(found.page).toBe(2);
      },
    );

    it('fetches only the page’s rows when one user holds the whole table, in a generic plan', async () => {
      // With few users the generic plan expects a user to have most rows, and once joined the
      // page's few ids to all of them (a hash join over the user's rows).
      const alone = await startTestApp({ env: { JWT_SECRET } });
      try {
        const rowsRead = await withDatabase(alone.databaseName, async (client) => {
          const owner = randomUUID();
          await client.query(
            `INSERT INTO users (id, email, name, password_hash, created_at, updated_at)
             VALUES ($1, 'alone@example.test', 'Alone', 'x', now(), now())`,
            [owner],
          );
          await client.query(
            `INSERT INTO tasks (id, user_id, title, status, priority, due_at, created_at, updated_at)
             SELECT gen_random_uuid(), $1, 'chore ' || g, (ARRAY['todo', 'in_progress', 'done'])[1 + g % 3],
                    1 + g % 3, now() + g * interval '1 hour', now() - g * interval '1 minute', now()
               FROM generate_series(1, 5000) g`,
            [owner],
          );
          await client.query('ANALYZE tasks');
          const statement = listStatement(owner, {
            filter: { status: 'todo' },
            sort: 'dueAt',
            after: null,
            limit: 21,
          });
          const { nodes } = await analyzePrepared(client, statement, 'force_generic_plan');
          return nodes
            .filter((node) =>
              /^(Index|Index Only|Bitmap Heap|Seq) Scan$/.test(String(node['Node Type'])),
            )
            .reduce(
              (sum, node) =>
                sum +
                (Number(node['Actual Rows']) + Number(node['Rows Removed by Filter'] ?? 0)) *
                  Number(node['Actual Loops']),
              0,
            );
        });
        // The probe reads about 63 rows for 21 todos, then the page is fetched by id.
        expect(rowsRead).toBeLessThan(200);
      } finally {
        await alone.close();
      }
    });
  });

  // ---------------------------------------------------------------- migrations

  describe('the index migrations', () => {
    const SEARCH_MIGRATION = 'TaskTitleTrigramByOwner1766100000000';
    const OLD_SEARCH_INDEX = 'tasks_user_title_trgm';

    function db<T>(work: (client: pg.Client) => Promise<T>, name = t.databaseName): Promise<T> {
      return withDatabase(name, work);
    }

    /**
     * Makes the search index's latest migration pending again, as on a database that predates
     * it: the single trigram index led by `user_id` instead of the parts by owner.
     */
    async function unapplySearchMigration(name = t.databaseName): Promise<void> {
      await db(async (client) => {
        for (const index of TITLE_SEARCH_INDEXES) await client.query(`DROP INDEX IF EXISTS ${index}`);
        await client.query(
          `CREATE INDEX IF NOT EXISTS ${OLD_SEARCH_INDEX} ON tasks USING gin (user_id, title gin_trgm_ops)`,
        );
        await client.query('DELETE FROM migrations WHERE name = $1', [SEARCH_MIGRATION]);
      }, name);
    }

    /** The trigram indexes there are, by name, and whether each is valid. */
    async function searchIndexes(name = t.databaseName): Promise<Record<string, boolean>> {
      return db(async (client) => {
        const { rows: found } = await client.query<{ name: string; valid: boolean }>(
          `SELECT x.indexname AS name, i.indisvalid AS valid
             FROM pg_indexes x JOIN pg_index i ON i.indexrelid = to_regclass(x.indexname)
            WHERE x.tablename = 'tasks' AND x.indexdef LIKE '%gin_trgm_ops%'`,
        );
        return Object.fromEntries(found.map((index) => [index.name, index.valid]));
      }, name);
    }

    /** Every part of the trigram index by owner, valid, and nothing else. */
    const ALL_PARTS_VALID = Object.fromEntries(TITLE_SEARCH_INDEXES.map((index) => [index, true]));

    it('leaves the search indexes valid after the migrations, with their extensions', async () => {
      const found = await db(async (client) => {
        const { rows: indexes } = await client.query<{
          indexname: string;
          indexdef: string;
          valid: boolean;
        }>(
          `SELECT x.indexname, x.indexdef, i.indisvalid AS valid
             FROM pg_indexes x JOIN pg_index i ON i.indexrelid = to_regclass(x.indexname)
            WHERE x.tablename = 'tasks'
              AND (x.indexname LIKE 'tasks_title_trgm_%' OR x.indexname IN ('tasks_user_title_trgm', 'tasks_user_status_priority'))
            ORDER BY x.indexname`,
        );
        const { rows: extensions } = await client.query<{ extname: string }>(
          "SELECT extname FROM pg_extension WHERE extname IN ('pg_trgm', 'btree_gin') ORDER BY extname",
        );
        const { rows: statistics } = await client.query<{ stxname: string }>(
          "SELECT stxname FROM pg_statistic_ext WHERE stxname = 'tasks_user_status_priority_mcv'",
        );
        return {
          indexes,
          extensions: extensions.map((e) => e.extname),
          statistics: statistics.length,
        };
      });
      expect(found).toEqual({
        indexes: [
          ...TITLE_SEARCH_INDEXES.map((indexname, bucket) => ({
            indexname,
            indexdef: expect.stringContaining(
              `USING gin (title gin_trgm_ops) WHERE ((get_byte(uuid_send(user_id), 15) & 7) = ${bucket})`,
            ),
            valid: true,
          })),
          {
            indexname: 'tasks_user_status_priority',
            indexdef: expect.stringContaining('USING btree (user_id, status, priority)'),
            valid: true,
          },
        ],
        extensions: ['btree_gin', 'pg_trgm'],
        statistics: 1,
      });
    });

    it('replaces the single trigram index of an older database with the parts by owner, and reverts', async () => {
      await unapplySearchMigration();
      expect(await searchIndexes()).toEqual({ [OLD_SEARCH_INDEX]: true });

      await t.app.get(SchemaMigrator).migrate();
      expect(await searchIndexes()).toEqual(ALL_PARTS_VALID);
      const { ids } = await listAll({ q: 'walrus', sort: 'createdAt' });
      expect(ids).toEqual([3, 240, 497].map((i) => rows[i]!.id));

      // Reverted, as `migration:revert` would: the single index again, and no part left.
      const runner = t.app.get(DataSource).createQueryRunner();
      try {
        await new TaskTitleTrigramByOwner1766100000000().down(runner);
      } finally {
        await runner.release();
      }
      await db((client) => client.query('DELETE FROM migrations WHERE name = $1', [SEARCH_MIGRATION]));
      expect(await searchIndexes()).toEqual({ [OLD_SEARCH_INDEX]: true });
      expect((await listAll({ q: 'walrus', sort: 'createdAt' })).ids).toEqual(ids);
      await t.app.get(SchemaMigrator).migrate();
      expect(await searchIndexes()).toEqual(ALL_PARTS_VALID);
    });

    it('finishes a replacement stopped part-way: some parts built, the old index still there', async () => {
      await unapplySearchMigration();
      await db(async (client) => {
        await client.query(
          `CREATE INDEX ${TITLE_SEARCH_INDEXES[0]} ON tasks USING gin (title gin_trgm_ops) WHERE ((get_byte(uuid_send(user_id), 15) & 7) = 0)`,
        );
      });

      await t.app.get(SchemaMigrator).migrate();

      expect(await searchIndexes()).toEqual(ALL_PARTS_VALID);
    });

    it('builds the index concurrently while another replica waits for the migrations lock, with no deadlock', async () => {
      await unapplySearchMigration();
      const deadlocks = () =>
        db(async (client) => {
          const { rows: stats } = await client.query<{ deadlocks: string }>(
            'SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()',
          );
          return Number(stats[0]!.deadlocks);
        });
      const before = await deadlocks();
      // "Another replica" holds the lock and builds an index concurrently, as a migration would,
      // while this one waits for the lock to migrate in turn.
      const replica = new pg.Client({ connectionString: databaseUrlFor(t.databaseName) });
      await replica.connect();
      try {
        await replica.query(`SELECT pg_advisory_lock(${MIGRATIONS_LOCK})`);
        const migrating = t.app.get(SchemaMigrator).migrate();
        await new Promise((resolve) => setTimeout(resolve, 300));
        const built = replica
          .query('CREATE INDEX CONCURRENTLY tasks_replica_probe ON tasks (created_at)')
          .then(
            () => 'built',
            (error: Error) => error.message,
          );
        expect(await built).toBe('built');
        await replica.query(`SELECT pg_advisory_unlock(${MIGRATIONS_LOCK})`);
        await expect(migrating).resolves.toBeUndefined();
      } finally {
        await replica.query('DROP INDEX IF EXISTS tasks_replica_probe').catch(() => undefined);
        await replica.end();
      }
      // The statistics of the server process that reports a deadlock reach the view shortly after.
      await new Promise((resolve) => setTimeout(resolve, 1_200));
      expect(await deadlocks()).toBe(before);
      expect(await searchIndexes()).toEqual(ALL_PARTS_VALID);
    });

    it('waits as long as the build takes, past the requests’ query timeout', async () => {
      const slow = await startTestApp({ env: { REQUEST_TIMEOUT_MS: '1000', JWT_SECRET } });
      try {
        await unapplySearchMigration(slow.databaseName);
        // A write in flight holds the table: the concurrent build waits for it, here 3 s, past
        // the pool's query timeout (REQUEST_TIMEOUT_MS + 1 s).
        const writer = new pg.Client({ connectionString: databaseUrlFor(slow.databaseName) });
        await writer.connect();
        await writer.query('BEGIN');
        await writer.query('LOCK TABLE tasks IN ROW EXCLUSIVE MODE');
        const migrating = slow.app.get(SchemaMigrator).migrate();
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        await writer.query('COMMIT');
        await writer.end();
        await expect(migrating).resolves.toBeUndefined();
        expect(await searchIndexes(slow.databaseName)).toEqual(ALL_PARTS_VALID);
      } finally {
        await slow.close();
      }
    });

    describe('the default order’s covering index', () => {
      const COVERING_MIGRATION = 'TaskCreatedAtCoveringIndex1766000000000';
      const PLAIN = 'ON tasks (user_id, created_at, id)';

      async function createdAtIndexes(): Promise<
        Array<{ name: string; definition: string; valid: boolean }>
      > {
        return db(async (client) => {
          const { rows: found } = await client.query<{
            name: string;
            definition: string;
            valid: boolean;
          }>(
            `SELECT x.indexname AS name, x.indexdef AS definition, i.indisvalid AS valid
               FROM pg_indexes x JOIN pg_index i ON i.indexrelid = to_regclass(x.indexname)
              WHERE x.tablename = 'tasks' AND x.indexname LIKE 'tasks_user_created_at%'
              ORDER BY x.indexname`,
          );
          return found;
        });
      }

      const covering = [
        {
          name: 'tasks_user_created_at',
          definition: expect.stringMatching(
            /USING btree \(user_id, created_at, id\) INCLUDE \(title, status, priority\)$/,
          ),
          valid: true,
        },
      ];

      it('replaces the plain index of an older database, under the same name', async () => {
        await db(async (client) => {
          await client.query('DROP INDEX tasks_user_created_at');
          await client.query(`CREATE INDEX tasks_user_created_at ${PLAIN}`);
          await client.query('DELETE FROM migrations WHERE name = $1', [COVERING_MIGRATION]);
        });

        await t.app.get(SchemaMigrator).migrate();

        expect(await createdAtIndexes()).toEqual(covering);
        const { ids } = await listAll({ q: 'walrus', sort: '-createdAt' });
        expect(ids).toEqual([497, 240, 3].map((i) => rows[i]!.id));
      });

      it('does not take a plain index left by an interrupted revert for the covering one', async () => {
        await db(async (client) => {
          await client.query('DROP INDEX tasks_user_created_at');
          await client.query(`CREATE INDEX tasks_user_created_at ${PLAIN}`);
          await client.query(`CREATE INDEX tasks_user_created_at_next ${PLAIN}`);
          await client.query('DELETE FROM migrations WHERE name = $1', [COVERING_MIGRATION]);
        });

        await t.app.get(SchemaMigrator).migrate();

        expect(await createdAtIndexes()).toEqual(covering);
      });

      it('finishes a replacement stopped between the drop and the rename', async () => {
        await db(async (client) => {
          await client.query('DROP INDEX tasks_user_created_at');
          await client.query(
            `CREATE INDEX tasks_user_created_at_next ${PLAIN} INCLUDE (title, status, priority)`,
          );
          await client.query('DELETE FROM migrations WHERE name = $1', [COVERING_MIGRATION]);
        });

        await t.app.get(SchemaMigrator).migrate();

        expect(await createdAtIndexes()).toEqual(covering);
      });
    });

    it('rebuilds an index a failed concurrent build left invalid', async () => {
      const part = TITLE_SEARCH_INDEXES[titleSearchBucket(alice.userId)]!;
      await db(async (client) => {
        await client.query(
          `UPDATE pg_index SET indisvalid = false WHERE indexrelid = '${part}'::regclass`,
        );
        await client.query('DELETE FROM migrations WHERE name = $1', [SEARCH_MIGRATION]);
      });
      expect(await searchIndexes()).toMatchObject({ [part]: false });

      await t.app.get(SchemaMigrator).migrate();

      expect(await searchIndexes()).toEqual(ALL_PARTS_VALID);
      const { ids } = await listAll({ q: 'walrus', sort: 'createdAt' });
      expect(ids).toEqual([3, 240, 497].map((i) => rows[i]!.id));
    });
  });
});
