/**
 * `npm run bench:scale`: does the task list stay flat as the table grows? The built server (its
 * production command line) is measured against a database of 1,000,000 tasks, 100,000 of them
 * the caller's, and against one of 10,000, all the caller's: a plain list, a filtered and
 * sorted one, and a title search for a common term (1 title in 97), a rare one (5 of the
 * caller's titles), an absent one and a short one (no trigram: a bounded scan). Each route is
 * loaded by autocannon at both sizes; the table gives req/s and p99 at each, and the ratio of
 * the p99s (target: at most 1.2). Then, at the large size, the plan of each route's statement
 * (EXPLAIN ANALYZE, as first planned and as the server's prepared statements end up planned),
 * and what the indexes behind the filters cost a create.
 *
 *   node --import ./bench/support/register-ts.mjs bench/scale.ts [--duration 10] [--connections 50]
 *     [--rounds 4] [--json bench/results/scale.json] [--small 10000:10000] [--large 1000000:100000]
 *
 * The rows are written with SQL (generate_series), not over HTTP: the indexes of `tasks` are
 * dropped for the load and built again from their own definitions, as a restore would. Uses its
 * own databases (`taskd_bench_scale_small` and `_large`, dropped at the end) and Redis key
 * prefixes. Each route is loaded on both sizes back to back, in alternating order.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import type { TaskFilter, TaskSort } from '../src/modules/tasks/task.js';
import { listStatement } from '../src/modules/tasks/tasks.repository.js';
import { TITLE_SEARCH_INDEXES } from '../src/modules/tasks/title-search.js';
import {
  api,
  cpuMs,
  inTurn,
  killAll,
  load,
  startServer,
  type Figures,
  type Server,
} from './support/harness.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    json: { type: 'string', default: 'bench/results/scale.json' },
    small: { type: 'string', default: '10000:10000' },
    large: { type: 'string', default: '1000000:100000' },
    rounds: { type: 'string', default: '4' },
  },
});
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const ADMIN_URL =
  process.env.BENCH_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const ROUNDS = Number(args.rounds);
const JWT_SECRET = 'bench-secret-0123456789-0123456789-0123456789';
/** The creates' new indexes, whose write cost the last phase measures. */
const FILTER_INDEXES = [...TITLE_SEARCH_INDEXES, 'tasks_user_status_priority'];

interface Size {
  name: 'small' | 'large';
  tasks: number;
  own: number;
}

const SIZES: Size[] = [
  { name: 'small', ...parseSize(args.small!) },
  { name: 'large', ...parseSize(args.large!) },
];

interface Route {
  name: string;
  query: Record<string, string>;
}

const ROUTES: Route[] = [
  { name: 'list', query: {} },
  { name: 'list status=todo sort=dueAt', query: { status: 'todo', sort: 'dueAt' } },
  { name: 'q, common term (1 in 97)', query: { q: 'budget' } },
  { name: 'q, rare term (5 titles)', query: { q: 'walrus' } },
  { name: 'q, absent term', query: { q: 'zqx' } },
  { name: 'q, short: bounded scan', query: { q: 'zq' } },
];

interface PlanSummary {
  ms: number;
  /** Rows the plan's table and index scans produced or filtered out: the work done. */
  rowsRead: number;
  indexes: string[];
  text?: string;
}

/** A route's figures at one size, with the CPU time a request cost the server and PostgreSQL. */
interface Measured extends Figures {
  serverCpuUs: number;
  postgresCpuUs: number;
}

const results: Array<{ name: string; query: string; small?: Measured; large?: Measured }> =
  ROUTES.map((route) => ({
    name: route.name,
    query: new URLSearchParams(route.query).toString(),
  }));
const plans: Record<string, Record<string, { custom: PlanSummary; generic: PlanSummary }>> = {};
const notes: Record<string, number | string> = {};

function parseSize(text: string): { tasks: number; own: number } {
  const [tasks, own] = text.split(':').map(Number) as [number, number];
  if (!(tasks >= own && own >= 10 && tasks % own === 0))
    throw new Error(`bad size ${text}: tasks:own, own dividing tasks`);
  return { tasks, own };
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

// ---------- database ----------

function databaseUrl(name: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

function databaseOf(size: Size): string {
  return `taskd_bench_scale_${size.name}`;
}

async function dropDatabase(size: Size): Promise<void> {
  await withClient(ADMIN_URL, (admin) =>
    admin.query(`DROP DATABASE IF EXISTS ${databaseOf(size)} WITH (FORCE)`),
  );
}

/**
 * The rows: `own` of them the caller's, spread evenly among the others' (900 other users), in
 * creation order. Titles are three words of a vocabulary; every 97th row also holds "budget",
 * five of the caller's rows (and 1 in 20,011 of the others') "walrus"; none holds "zqx" or
 * "zq". Statuses 60% done, 30% todo, 10% in progress; priorities 25/50/25%; 40% without a due
 * date; every other task of each user's has a description (counted along the caller's own rows,
 * so that a page of theirs weighs the same at both sizes). Ids are UUIDv7-like, in creation
 * order, as the service makes them.
 */
const SEED_TASKS = `
  WITH words AS (
    SELECT string_to_array('review plan draft call email write fix update send check prepare meeting client report design test deploy server database backup invoice contract schedule team project release notes slides demo feedback bug feature docs onboarding hiring interview expenses travel flight hotel dentist doctor groceries laundry garden car insurance tax refund renew passport license subscription payment rent mortgage bank account password security audit migration refactor cleanup performance metrics dashboard alert incident postmortem roadmap strategy quarterly goals okr sync standup retro sprint backlog ticket support customer partner vendor order shipment delivery inventory warehouse supplier pricing quote proposal pitch marketing campaign newsletter blog post video podcast social media launch event conference workshop training course book article research analysis survey data model experiment prototype mockup wireframe logo brand website landing page signup login checkout cart search filter export import api sdk library upgrade patch config deployment cluster network firewall dns certificate domain storage cache queue worker cron job pipeline build lint format translate proofread approve merge branch commit tag version archive delete restore reconcile share invite remove assign estimate prioritise visit phone reply follow up remind extend cancel borrow reserve pay collect file sign scan print mail pick drop clean repair paint buy sell return donate organise outline pack unpack move', ' ') AS w
  )
  INSERT INTO tasks (id, user_id, title, description, status, priority, due_at, created_at, updated_at, version)
  SELECT (lpad(to_hex(ms), 12, '0') || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
         owner,
         initcap(w[1 + (g * 7919) % array_length(w, 1)]) || ' ' || w[1 + (g * 104729 + 13) % array_length(w, 1)]
           || ' ' || w[1 + (g * 1299709 + 7) % array_length(w, 1)]
           || CASE WHEN g % 97 = 0 THEN ' budget' ELSE '' END
           || CASE WHEN (owner = $1::uuid AND own_index % ($3::bigint / 5) = 1) OR (owner <> $1::uuid AND g % 20011 = 0) THEN ' walrus' ELSE '' END,
         CASE WHEN (CASE WHEN owner = $1::uuid THEN own_index ELSE g END) % 2 = 0
              THEN 'Notes for task ' || g || ': ' || repeat('details ', 10) END,
         CASE WHEN r < 60 THEN 'done' WHEN r < 90 THEN 'todo' ELSE 'in_progress' END,
         CASE WHEN r2 < 25 THEN 1 WHEN r2 < 75 THEN 2 ELSE 3 END,
         CASE WHEN r3 < 40 THEN NULL ELSE created + (r3 - 40) * interval '12 hours' END,
         created, created, 1
    FROM (
      SELECT g, w, md5(g::text) AS h,
             CASE WHEN g % ($2::bigint / $3::bigint) = 0 THEN $1::uuid
                  ELSE ('00000000-0000-7000-9000-' || lpad(to_hex(1 + g % 900), 12, '0'))::uuid END AS owner,
             g / ($2::bigint / $3::bigint) AS own_index,
             abs(hashint8(g)) % 100 AS r, abs(hashint8(g + 1000000007)) % 100 AS r2, abs(hashint8(g * 3)) % 100 AS r3,
             timestamptz '2024-01-01' + g * interval '60 seconds' AS created,
             (extract(epoch FROM timestamptz '2024-01-01' + g * interval '60 seconds') * 1000)::bigint AS ms
        FROM words, generate_series(1::bigint, $2::bigint) g
    ) s`;

async function seed(size: Size, callerId: string): Promise<void> {
  const started = performance.now();
  await withClient(databaseUrl(databaseOf(size)), async (client) => {
    await client.query(
      `INSERT INTO users (id, email, name, password_hash, created_at, updated_at)
       SELECT ('00000000-0000-7000-9000-' || lpad(to_hex(u), 12, '0'))::uuid, 'other-' || u || '@example.test',
              'Other', 'x', now(), now()
         FROM generate_series(1, 900) u`,
    );
    // Every index but the primary key's, as the migrations made them, built again after the load.
    const { rows: indexes } = await client.query<{ name: string; definition: string }>(
      `SELECT i.indexname AS name, i.indexdef AS definition FROM pg_indexes i
        WHERE i.tablename = 'tasks'
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = to_regclass(i.indexname))`,
    );
    for (const index of indexes) await client.query(`DROP INDEX ${index.name}`);
    await client.query(SEED_TASKS, [callerId, size.tasks, size.own]);
    await client.query("SET maintenance_work_mem = '256MB'");
    const buildSeconds: string[] = [];
    for (const index of indexes) {
      const building = performance.now();
      await client.query(index.definition);
      buildSeconds.push(`${index.name} ${((performance.now() - building) / 1000).toFixed(1)}`);
    }
    await client.query('VACUUM (ANALYZE) tasks');
    await client.query('ANALYZE users');
    // The load and the builds leave hundreds of megabytes of dirty buffers: written now, not by
    // the checkpointer and the backends during the first loads measured.
    await client.query('CHECKPOINT');
    const { rows: sizes } = await client.query<{ name: string; mb: number }>(
      `SELECT c.relname AS name, round(pg_relation_size(c.oid) / 1048576.0)::int AS mb
         FROM pg_class c WHERE c.oid = 'tasks'::regclass
            OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'tasks'::regclass)
        ORDER BY c.relname`,
    );
    notes[`${size.name}IndexBuildSeconds`] = buildSeconds.join(', ');
    notes[`${size.name}SizesMb`] = sizes.map((row) => `${row.name} ${row.mb}`).join(', ');
  });
  notes[`${size.name}SeedSeconds`] = Number(((performance.now() - started) / 1000).toFixed(1));
}

// ---------- plans ----------

type PlanNode = Record<string, unknown> & { Plans?: PlanNode[] };
const nodesOf = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(nodesOf)];

function statementOf(callerId: string, route: Route) {
  const { sort, ...filter } = route.query;
  return listStatement(callerId, {
    filter: filter as TaskFilter,
    sort: (sort ?? '-createdAt') as TaskSort,
    after: null,
    limit: 21,
  });
}

/**
 * EXPLAIN ANALYZE of a route's first page, as a prepared statement planned for its values
 * (what the server's first executions of it get) and planned once for any (what they end up
 * with: PostgreSQL switches to such a generic plan when it looks no dearer).
 */
async function explain(target: Prepared, route: Route) {
  const { sql, params } = statementOf(target.callerId, route);
  const withText = target.size.name === 'large';
  return withClient(databaseUrl(databaseOf(target.size)), async (client) => {
    await client.query(`PREPARE page AS ${sql}`);
    const literals = params.map((value) => client.escapeLiteral(String(value))).join(', ');
    const summary = async (mode: string): Promise<PlanSummary> => {
      await client.query(`SET plan_cache_mode = ${mode}`);
      await client.query(`EXECUTE page(${literals})`); // warm
      const { rows } = await client.query<{
        'QUERY PLAN': Array<{ Plan: PlanNode; 'Execution Time': number }>;
      }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE page(${literals})`);
      const plan = rows[0]!['QUERY PLAN'][0]!;
      const nodes = nodesOf(plan.Plan);
      const scans = nodes.filter((node) =>
        /^(Index|Index Only|Bitmap Heap|Seq) Scan$/.test(String(node['Node Type'])),
      );
      const result: PlanSummary = {
        ms: Number(plan['Execution Time'].toFixed(2)),
        rowsRead: scans.reduce(
          (sum, node) =>
            sum +
            (Number(node['Actual Rows'] ?? 0) +
              Number(node['Rows Removed by Filter'] ?? 0) +
              Number(node['Rows Removed by Index Recheck'] ?? 0)) *
              Number(node['Actual Loops'] ?? 1),
          0,
        ),
        indexes: [
          ...new Set(
            nodes
              .map((node) => node['Index Name'])
              .filter((name): name is string => typeof name === 'string'),
          ),
        ],
      };
      if (withText) {
        const text = await client.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE page(${literals})`,
        );
        result.text = text.rows.map((row) => row['QUERY PLAN']).join('\n');
      }
      return result;
    };
    return {
      custom: await summary('force_custom_plan'),
      generic: await summary('force_generic_plan'),
    };
  });
}

// ---------- insert cost ----------

/** Server time per insert: 20,000 single-row inserts of the caller's in one transaction, rolled back. */
async function insertMicroseconds(target: Prepared): Promise<number> {
  const callerId = target.callerId;
  return withClient(databaseUrl(databaseOf(target.size)), async (client) => {
    await client.query('BEGIN');
    const started = performance.now();
    await client.query(
      `DO $$
       BEGIN
         FOR i IN 1..20000 LOOP
           INSERT INTO tasks (id, user_id, title, description, status, priority, due_at, created_at, updated_at, version)
           VALUES (gen_random_uuid(), '${callerId}', 'Benchmark task ' || i || ' about ' || md5(i::text),
                   'created in a loop', 'todo', 2, now() + interval '1 day', now(), now(), 1);
         END LOOP;
       END $$`,
    );
    const elapsed = performance.now() - started;
    await client.query('ROLLBACK');
    return Number(((elapsed * 1000) / 20_000).toFixed(1));
  });
}

async function insertCost(target: Prepared): Promise<void> {
  const { server, token } = target;
  const url = databaseUrl(databaseOf(target.size));
  const createBody = JSON.stringify({
    title: 'Benchmark task about the budget',
    description: 'created under load',
    priority: 'high',
  });
  const create = () =>
    load(`${server.url}/api/v1/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body: createBody,
      connections: CONNECTIONS,
      duration: DURATION,
      expect: 201,
    });
  /** Two loops: the range of server time per insert. */
  const perInsert = async () => {
    const runs = [await insertMicroseconds(target), await insertMicroseconds(target)].sort(
      (x, y) => x - y,
    );
    return `${runs[0]}–${runs[1]}`;
  };
  const definitions = await withClient(url, async (client) => {
    const { rows } = await client.query<{ indexname: string; indexdef: string }>(
      'SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY($1)',
      [FILTER_INDEXES],
    );
    return new Map(rows.map((row) => [row.indexname, row.indexdef]));
  });
  const drop = (name: string) => withClient(url, (client) => client.query(`DROP INDEX ${name}`));
  log('insert cost, with the filter indexes…');
  notes.insertMicrosecondsWithBoth = await perInsert();
  const withIndexes = await create();
  await drop('tasks_user_status_priority');
  notes.insertMicrosecondsWithTrigramIndexOnly = await perInsert();
  for (const index of TITLE_SEARCH_INDEXES) await drop(index);
  log('insert cost, without them…');
  notes.insertMicrosecondsWithNeither = await perInsert();
  const withoutIndexes = await create();
  await withClient(url, async (client) => {
    for (const definition of definitions.values()) await client.query(definition);
  });
  notes.postReqPerSecWithFilterIndexes = withIndexes.reqPerSec;
  notes.postReqPerSecWithoutFilterIndexes = withoutIndexes.reqPerSec;
  notes.postP99WithFilterIndexes = withIndexes.p99;
  notes.postP99WithoutFilterIndexes = withoutIndexes.p99;
}

// ---------- main ----------

interface Prepared {
  size: Size;
  server: Server;
  callerId: string;
  token: string;
  bufferPath: string;
}

/** A database of the size, seeded, and the server on it, its caller logged in. */
async function prepare(size: Size): Promise<Prepared> {
  log(`${size.name}: ${size.tasks} tasks, ${size.own} of them the caller's`);
  await dropDatabase(size);
  const bufferPath = mkdtempSync(path.join(tmpdir(), `taskd-bench-scale-${size.name}-`));
  const env = {
    NODE_ENV: 'development',
    DATABASE_URL: databaseUrl(databaseOf(size)),
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0',
    REDIS_KEY_PREFIX: `taskd-bench-scale-${size.name}:`,
    BUFFER_PATH: bufferPath,
    JWT_SECRET,
    LOG_LEVEL: 'warn',
  };
  // The first start creates the database and migrates it; the caller registers over HTTP.
  let server = await startServer(env);
  const email = `bench-scale-${Date.now()}@example.com`;
  const password = 'bench-password-1';
  const registered = await api(server.url, 'POST', '/api/v1/auth/register', {
    email,
    password,
    name: 'Bench',
  });
  if (registered.status !== 201) throw new Error(`register: ${registered.status}`);
  const callerId = registered.json.id as string;
  await server.stop();
  log('  seeding…');
  await seed(size, callerId);
  server = await startServer(env);
  const { json: tokens } = await api(server.url, 'POST', '/api/v1/auth/login', { email, password });
  return { size, server, callerId, token: tokens.accessToken as string, bufferPath };
}

/**
 * The rounds' means, and each round's p99: one 10-s p99 on a shared two-core machine moves by
 * tens of percent, so the ratio is read from four rounds a size, not one.
 */
function mean(runs: Measured[]): Measured & { p99s: number[] } {
  const average = (pick: (f: Measured) => number, digits: number) =>
    Number((runs.reduce((sum, f) => sum + pick(f), 0) / runs.length).toFixed(digits));
  return {
    p99s: runs.map((f) => f.p99),
    requests: runs.reduce((sum, f) => sum + f.requests, 0),
    reqPerSec: average((f) => f.reqPerSec, 0),
    p50: average((f) => f.p50, 2),
    p99: average((f) => f.p99, 2),
    unexpected: runs.reduce((sum, f) => sum + f.unexpected, 0),
    errors: runs.reduce((sum, f) => sum + f.errors, 0),
    serverCpuUs: average((f) => f.serverCpuUs, 0),
    postgresCpuUs: average((f) => f.postgresCpuUs, 0),
  };
}

interface CpuSnapshot {
  server: number;
  /** By PostgreSQL server process, those of the service's pool. */
  postgres: Map<number, number>;
}

/**
 * CPU used so far by the server and by the PostgreSQL processes serving its pool: unlike
 * latency on a machine shared with other work, CPU per request does not move with the load
 * next door.
 */
async function cpuOf(target: Prepared): Promise<CpuSnapshot> {
  const pids = await withClient(databaseUrl(databaseOf(target.size)), async (client) => {
    const { rows } = await client.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'taskd'",
    );
    return rows.map((row) => row.pid);
  });
  return {
    server: cpuMs(target.server.pid),
    postgres: new Map(pids.map((pid) => [pid, cpuMs(pid)])),
  };
}

/** One load, with its CPU per request; a pool connection opened meanwhile counts whole. */
async function measureLoad(target: Prepared, url: string): Promise<Measured> {
  const before = await cpuOf(target);
  const figures = await load(url, {
    headers: { authorization: `Bearer ${target.token}` },
    connections: CONNECTIONS,
    duration: DURATION,
  });
  const after = await cpuOf(target);
  let postgres = 0;
  for (const [pid, ms] of after.postgres) postgres += ms - (before.postgres.get(pid) ?? 0);
  const perRequest = (ms: number) => Math.round((ms * 1000) / Math.max(figures.requests, 1));
  return {
    ...figures,
    serverCpuUs: perRequest(after.server - before.server),
    postgresCpuUs: perRequest(postgres),
  };
}

/**
 * Each route on both sizes back to back, in rounds of alternating order (small, large, then
 * large, small), so that the machine's drift weighs on both alike; the figures are the means.
 */
async function loadRoutes(small: Prepared, large: Prepared): Promise<void> {
  const urlOf = (target: Prepared, i: number) =>
    `${target.server.url}/api/v1/tasks?${results[i]!.query}`;
  for (const [i, route] of ROUTES.entries()) {
    log(`  ${route.name}`);
    const runs: Record<Size['name'], Measured[]> = { small: [], large: [] };
    for (const target of [small, large]) {
      // Warm: the server's prepared statements and the caches.
      await load(urlOf(target, i), {
        headers: { authorization: `Bearer ${target.token}` },
        connections: 10,
        duration: 2,
      });
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const target of inTurn([small, large], round)) {
        runs[target.size.name].push(await measureLoad(target, urlOf(target, i)));
      }
    }
    results[i]!.small = mean(runs.small);
    results[i]!.large = mean(runs.large);
  }
}

async function main(): Promise<void> {
  const prepared: Prepared[] = [];
  try {
    for (const size of SIZES) prepared.push(await prepare(size));
    const [small, large] = prepared as [Prepared, Prepared];
    log('loading…');
    await loadRoutes(small, large);
    for (const target of prepared) {
      plans[target.size.name] = {};
      for (const route of ROUTES)
        plans[target.size.name]![route.name] = await explain(target, route);
    }
    await insertCost(large);
  } finally {
    for (const target of prepared) {
      await target.server.stop();
      rmSync(target.bufferPath, { recursive: true, force: true });
    }
    for (const size of SIZES) await dropDatabase(size);
  }
  report();
}

function report(): void {
  const [small, large] = SIZES as [Size, Size];
  const label = (size: Size) =>
    size.tasks >= 1_000_000 ? `${size.tasks / 1_000_000}M` : `${size.tasks / 1000}k`;
  const pad = (v: string | number, n: number) => String(v).padStart(n);
  const lines = [
    `taskd bench:scale: ${CONNECTIONS} connections, ${DURATION} s per run, mean of ${ROUNDS} rounds; ${label(small)} tasks (${small.own} the caller's) against ${label(large)} (${large.own} the caller's)`,
    '',
    `${''.padEnd(32)}${pad(label(small), 17)}${pad(label(large), 17)}${pad('', 8)}${pad('CPU µs per request', 32)}`,
    `${'route'.padEnd(32)}${pad('req/s', 8)}${pad('p99 ms', 9)}${pad('req/s', 8)}${pad('p99 ms', 9)}${pad('p99 ×', 8)}` +
      `${pad(`pg ${label(small)}`, 8)}${pad(`pg ${label(large)}`, 8)}${pad(`app ${label(small)}`, 8)}${pad(`app ${label(large)}`, 8)}`,
  ];
  const rows = results.map((r) => ({
    ...r,
    p99Ratio: Number((r.large!.p99 / Math.max(r.small!.p99, 0.01)).toFixed(2)),
  }));
  for (const r of rows) {
    const [s, l] = [r.small!, r.large!];
    lines.push(
      `${r.name.padEnd(32)}${pad(s.reqPerSec, 8)}${pad(s.p99, 9)}${pad(l.reqPerSec, 8)}${pad(l.p99, 9)}${pad(r.p99Ratio.toFixed(2), 8)}` +
        `${pad(s.postgresCpuUs, 8)}${pad(l.postgresCpuUs, 8)}${pad(s.serverCpuUs, 8)}${pad(l.serverCpuUs, 8)}${r.p99Ratio <= 1.2 ? '' : '  p99 over 1.2×'}`,
    );
  }
  lines.push(
    '',
    `plans at ${label(large)}: EXPLAIN ANALYZE of the first page, time and rows its scans read (planned for its values / generic):`,
  );
  for (const route of ROUTES) {
    const plan = plans.large![route.name]!;
    lines.push(
      `  ${route.name.padEnd(30)} ${pad(plan.custom.ms, 7)} ms ${pad(plan.custom.rowsRead, 6)} rows / ${pad(plan.generic.ms, 7)} ms ${pad(plan.generic.rowsRead, 6)} rows  ${plan.generic.indexes.join(', ')}`,
    );
  }
  lines.push('');
  for (const [key, value] of Object.entries(notes)) lines.push(`${key.padEnd(40)} ${value}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  mkdirSync(path.dirname(args.json!), { recursive: true });
  writeFileSync(
    args.json!,
    JSON.stringify(
      {
        at: new Date().toISOString(),
        connections: CONNECTIONS,
        durationSeconds: DURATION,
        rounds: ROUNDS,
        sizes: SIZES,
        rows,
        plans,
        notes,
      },
      null,
      2,
    ),
  );
  process.stdout.write(`\nfigures written to ${args.json}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  killAll();
  process.exit(1);
});
