/**
 * The entities and the migrations describe one schema. The service migrates a database of its
 * own; then
 *
 * - TypeORM's schema diff (what `typeorm schema:log` would print) between the entities the
 *   modules register and that database is empty, and every table but the migrations' own has an
 *   entity;
 * - the index definitions in `pg_catalog` are the ones listed below, so that a new or changed
 *   index, including those the entities leave to the migrations (`synchronize: false`:
 *   expression, partial and GIN indexes), is a visible diff in review.
 *
 * CI budget: 15 s
 */
import { DataSource } from 'typeorm';
import { startTestApp, withDatabase, type TestApp } from '../support/test-app.js';

/**
 * `pg_indexes.indexdef` of every index of the public schema, by table then index name. An index
 * added, dropped or changed by a migration is changed here too, by hand.
 */
const EXPECTED_INDEXES: Record<string, string[]> = {
  buffer_applied_operations: [
    'CREATE INDEX buffer_applied_operations_applied_at_idx ON public.buffer_applied_operations USING btree (applied_at)',
    'CREATE UNIQUE INDEX buffer_applied_operations_pkey ON public.buffer_applied_operations USING btree (id)',
  ],
  migrations: ['CREATE UNIQUE INDEX "PK_8c82d7f526340ab734260ea46be" ON public.migrations USING btree (id)'],
  task_aliases: [
    'CREATE UNIQUE INDEX task_aliases_pkey ON public.task_aliases USING btree (id)',
    'CREATE INDEX task_aliases_task_id_idx ON public.task_aliases USING btree (task_id)',
  ],
  task_tombstones: [
    'CREATE INDEX task_tombstones_deleted_at_idx ON public.task_tombstones USING btree (deleted_at)',
    'CREATE UNIQUE INDEX task_tombstones_pkey ON public.task_tombstones USING btree (user_id, id)',
  ],
  tasks: [
    'CREATE UNIQUE INDEX tasks_pkey ON public.tasks USING btree (id)',
    'CREATE INDEX tasks_title_trgm_0 ON public.tasks USING gin (title gin_trgm_ops) WHERE ((get_byte(uuid_send(user_id), 15) & 7) = 0)',
    'CREATE INDEX tasks_title_trgm_1 ON public.tasks USING gin (title gin_trgm_ops) WHERE ((get_byte(uuid_send(user_id), 15) & 7) = 1)',
    'CREATE INDEX tasks_title_trgm_2 ON public.tasks USING gin (title gin_trgm_ops) WHERE ((get_byte(uuid_send(user_id), 15) & 7) = 2)',
    'CREATE INDEX tasks_title_trgm_3 ON public.tasks USING gin (title gin_trgm_ops) WHERE ((get_byte(uuid_send(user_id), 15) & 7) = 3)',
    'CREATE INDEX tasks_title_trgm_4 ON public.tasks USING gin (title gin_trgm_ops) WHERE ((get_byte(uuid_send(user_id), 15) & 7) = 4)',
    'CREATE INDEX tasks_title_trgm_5 ON public.tasks USING gin (title gin_trgm_ops) WHERE ((get_byte(uuid_send(user_id), 15) & 7) = 5)',
    'CREATE INDEX tasks_title_trgm_6 ON public.tasks USING gin (title gin_trgm_ops) WHERE ((get_byte(uuid_send(user_id), 15) & 7) = 6)',
    'CREATE INDEX tasks_title_trgm_7 ON public.tasks USING gin (title gin_trgm_ops) WHERE ((get_byte(uuid_send(user_id), 15) & 7) = 7)',
    'CREATE INDEX tasks_user_created_at ON public.tasks USING btree (user_id, created_at, id) INCLUDE (title, status, priority)',
    "CREATE INDEX tasks_user_due_at_nulls_last_asc ON public.tasks USING btree (user_id, COALESCE(due_at, 'infinity'::timestamp with time zone), id)",
    "CREATE INDEX tasks_user_due_at_nulls_last_desc ON public.tasks USING btree (user_id, COALESCE(due_at, '-infinity'::timestamp with time zone), id)",
    'CREATE UNIQUE INDEX tasks_user_idempotency_key ON public.tasks USING btree (user_id, idempotency_key) WHERE (idempotency_key IS NOT NULL)',
    'CREATE INDEX tasks_user_priority ON public.tasks USING btree (user_id, priority, id)',
    'CREATE INDEX tasks_user_status_priority ON public.tasks USING btree (user_id, status, priority)',
  ],
  users: [
    'CREATE UNIQUE INDEX users_email_key ON public.users USING btree (email)',
    'CREATE UNIQUE INDEX users_pkey ON public.users USING btree (id)',
  ],
};

describe('the schema (e2e)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp();
  });

  afterAll(async () => {
    await t.close();
  });

  it('is what the entities describe: the schema diff is empty', async () => {
    const dataSource = t.app.get(DataSource);
    const diff = await dataSource.driver.createSchemaBuilder().log();
    expect(diff.upQueries.map((query) => query.query)).toEqual([]);
  });

  it('has an entity for every table but the migrations ledger', async () => {
    const dataSource = t.app.get(DataSource);
    const tables = await withDatabase(t.databaseName, async (client) =>
      (
        await client.query<{ tablename: string }>(
          `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`,
        )
      ).rows.map((row) => row.tablename),
    );
    const entityTables = dataSource.entityMetadatas.map((metadata) => metadata.tableName).sort();
    expect(entityTables).toEqual(tables.filter((table) => table !== 'migrations'));
  });

  it('has exactly the indexes listed here', async () => {
    const indexes = await withDatabase(t.databaseName, async (client) =>
      (
        await client.query<{ tablename: string; indexdef: string }>(
          `SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY tablename, indexname`,
        )
      ).rows,
    );
    const byTable: Record<string, string[]> = {};
    for (const { tablename, indexdef } of indexes) (byTable[tablename] ??= []).push(indexdef);
    expect(byTable).toEqual(EXPECTED_INDEXES);
  });
});
