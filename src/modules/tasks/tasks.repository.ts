/**
 * Tasks in PostgreSQL, with explicit parameterised SQL (no entity hydration on the hot paths).
 *
 * Every statement filters by owner in SQL: another user's task is indistinguishable from a
 * missing one. The apply statements (insert, update, delete) take a change that is complete
 * beforehand and are harmless to replay; they run on a `SqlExecutor`, so that a direct write (on
 * the pool) and its replay from the offline buffer (in the replay transaction) are the very
 * same code:
 *   - insert: `ON CONFLICT DO NOTHING` (a replay, or a second request with the same
 *     idempotency key, inserts nothing); a run of buffered creates goes in one multi-row insert;
 *   - update: guarded by the version it was computed from (or, when that is unknown, by
 *     `updated_at` older than the change), so it can never undo a newer change;
 *   - delete: a missing row is no error.
 * UPDATE and DELETE are wrapped in a CTE so that the driver returns plain rows for them as for
 * SELECT (TypeORM returns `[rows, count]` for a bare UPDATE or DELETE).
 */
import { Injectable } from '@nestjs/common';
import type { RequestContext } from '../../common/context/request-context.js';
import { DatabaseService } from '../../infrastructure/database/database.service.js';
import type { SqlExecutor } from '../../infrastructure/database/sql-executor.js';
import {
  priorityOfRank,
  priorityRank,
  sortKeyOf,
  type NewTask,
  type Task,
  type TaskDeletion,
  type TaskFilter,
  type TaskPatch,
  type TaskPosition,
  type TaskSort,
  type TaskStatus,
  type TaskUpdate,
} from './task.js';

export interface Statement {
  sql: string;
  params: unknown[];
}

export interface TaskListOptions {
  filter: TaskFilter;
  sort: TaskSort;
  /** Start after this task; null for the first page. */
  after: TaskPosition | null;
  limit: number;
}

export interface TaskListRows {
  /** The tasks of the page, in order: at most `limit`. */
  tasks: Task[];
  /**
   * Set when a bounded scan (a search the trigram index cannot serve) stopped before the
   * user's last row and before `limit` tasks: where the next page starts.
   */
  resumeAfter: TaskPosition | null;
}

interface TaskRow {
  id: string;
  user_id: string;
  title: string;
  description: string | null;
  status: TaskStatus;
  priority: number;
  /** timestamptz columns arrive as ISO 8601 strings (see pg-types.ts). */
  due_at: string | null;
  created_at: string;
  updated_at: string;
  version: number;
}

const COLUMNS =
  'id, user_id, title, description, status, priority, due_at, created_at, updated_at, version';

@Injectable()
export class TasksRepository {
  constructor(private readonly database: DatabaseService) {}

  async findById(ctx: RequestContext, userId: string, id: string): Promise<Task | undefined> {
    const rows = await this.database.query<TaskRow>(
      ctx,
      `SELECT ${COLUMNS} FROM tasks WHERE id = $1 AND user_id = $2`,
      [id, userId],
    );
    return rows[0] && toTask(rows[0]);
  }

  async findByIdempotencyKey(
    ctx: RequestContext,
    userId: string,
    key: string,
  ): Promise<Task | undefined> {
    const rows = await this.database.query<TaskRow>(
      ctx,
      `SELECT ${COLUMNS} FROM tasks WHERE user_id = $1 AND idempotency_key = $2`,
      [userId, key],
    );
    return rows[0] && toTask(rows[0]);
  }

  async list(ctx: RequestContext, userId: string, options: TaskListOptions): Promise<TaskListRows> {
    const { sql, params } = listStatement(userId, options);
    const rows = await this.database.query<TaskRow & { matched?: boolean }>(ctx, sql, params);
    const stop = rows.find((row) => row.matched === false);
    return {
      tasks: rows.filter((row) => row.matched !== false).map(toTask),
      resumeAfter: stop ? { key: sortKeyOf(toTask(stop), options.sort), id: stop.id } : null,
    };
  }

  /**
   * Applies a create; false when a row with its id or idempotency key already exists. A direct
   * write passes its operation's id, recorded as applied in the same statement.
   */
  async insert(db: SqlExecutor, task: NewTask, operationId?: string): Promise<boolean> {
    const { sql, params } = insertStatement(task, operationId);
    const rows = await db.query<{ id: string }>(sql, params);
    return rows.length === 1;
  }

  /** Applies creates in one statement, in their order; resolves with how many were new. */
  async insertMany(db: SqlExecutor, tasks: readonly NewTask[]): Promise<number> {
    if (tasks.length === 0) return 0;
    const { sql, params } = insertManyStatement(tasks);
    const [row] = await db.query<{ inserted: number }>(sql, params);
    return row?.inserted ?? 0;
  }

  /** Applies an update; the task as it is now, or undefined when the guard matched no row. */
  async update(db: SqlExecutor, change: TaskUpdate): Promise<Task | undefined> {
    const { sql, params } = updateStatement(change);
    const rows = await db.query<TaskRow>(sql, params);
    return rows[0] && toTask(rows[0]);
  }

  /** Applies a delete; false when no row matched (missing, another owner's, or another version). */
  async delete(db: SqlExecutor, deletion: TaskDeletion): Promise<boolean> {
    const { sql, params } = deleteStatement(deletion);
    const rows = await db.query<{ id: string }>(sql, params);
    return rows.length === 1;
  }

  /** Applies deletes without a version guard in one statement; resolves with how many rows went. */
  async deleteMany(db: SqlExecutor, deletions: readonly TaskDeletion[]): Promise<number> {
    if (deletions.length === 0) return 0;
    const { sql, params } = deleteManyStatement(deletions);
    const [row] = await db.query<{ deleted: number }>(sql, params);
    return row?.deleted ?? 0;
  }

  /**
   * For replayed creates that found their idempotency key held by another task of the same
   * user: records each one's id as an alias of that task. Resolves with how many were recorded.
   */
  async recordKeyAliases(db: SqlExecutor, tasks: readonly NewTask[]): Promise<number> {
    const keyed = tasks.filter((task) => task.idempotencyKey !== null);
    if (keyed.length === 0) return 0;
    const { sql, params } = keyAliasesStatement(keyed);
    const [row] = await db.query<{ recorded: number }>(sql, params);
    return row?.recorded ?? 0;
  }

  /** The task an alias stands for (see `recordKeyAliases`), if `id` is one of the user's. */
  async aliasTarget(db: SqlExecutor, userId: string, id: string): Promise<string | undefined> {
    const rows = await db.query<{ task_id: string }>(
      'SELECT task_id FROM task_aliases WHERE id = $1 AND user_id = $2',
      [id, userId],
    );
    return rows[0]?.task_id;
  }

  /** Whether the user has a task with this id (whatever its version). */
  async exists(db: SqlExecutor, userId: string, id: string): Promise<boolean> {
    const rows = await db.query(`SELECT 1 FROM tasks WHERE id = $1 AND user_id = $2`, [id, userId]);
    return rows.length === 1;
  }
}

/**
 * One create. Given the id of the operation it carries out (a direct write), the same statement
 * records that id as applied: should the answer be lost on its way back (the connection dies
 * after the commit), the operation is buffered, and its replay must find it applied rather than
 * insert the task again after someone deleted it.
 */
export function insertStatement(task: NewTask, operationId?: string): Statement {
  const insert = `INSERT INTO tasks (${COLUMNS}, idempotency_key)
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
          ON CONFLICT DO NOTHING
          RETURNING id`;
  return {
    // Recorded only when the row went in: a create that found its key taken is not applied,
    // and its replay must still be free to insert should the key's task be gone by then.
    sql: operationId
      ? `WITH inserted AS (${insert}),
              applied AS (
                INSERT INTO buffer_applied_operations (id, applied_at)
                SELECT $12::uuid, now() FROM inserted
                ON CONFLICT DO NOTHING
              )
         SELECT id FROM inserted`
      : insert,
    params: [
      task.id,
      task.userId,
      task.title,
      task.description,
      task.status,
      priorityRank(task.priority),
      task.dueAt,
      task.createdAt,
      task.updatedAt,
      task.version,
      task.idempotencyKey,
      ...(operationId ? [operationId] : []),
    ],
  };
}

/**
 * Many creates as one INSERT … SELECT from parallel arrays, in their order (`WITH ORDINALITY`),
 * so that when two of them claim the same idempotency key the earlier one wins, as it would
 * one statement at a time. ON CONFLICT DO NOTHING also covers conflicts within the statement.
 */
export function insertManyStatement(tasks: readonly NewTask[]): Statement {
  const column = <V>(value: (task: NewTask) => V): V[] => tasks.map(value);
  return {
    sql: `WITH inserted AS (
            INSERT INTO tasks (${COLUMNS}, idempotency_key)
            SELECT ${COLUMNS}, idempotency_key
              FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                          $6::smallint[], $7::timestamptz[], $8::timestamptz[],
                          $9::timestamptz[], $10::integer[], $11::text[])
                   WITH ORDINALITY AS change(${COLUMNS}, idempotency_key, position)
             ORDER BY position
            ON CONFLICT DO NOTHING
            RETURNING 1
          )
          SELECT count(*)::int AS inserted FROM inserted`,
    params: [
      column((task) => task.id),
      column((task) => task.userId),
      column((task) => task.title),
      column((task) => task.description),
      column((task) => task.status),
      column((task) => priorityRank(task.priority)),
      column((task) => task.dueAt),
      column((task) => task.createdAt),
      column((task) => task.updatedAt),
      column((task) => task.version),
      column((task) => task.idempotencyKey),
    ],
  };
}

/** The columns a change sets, each only when given (never taken from the change's own keys). */
function patchColumns(changes: TaskPatch): Array<[column: string, value: unknown]> {
  const columns: Array<[string, unknown]> = [];
  if (changes.title !== undefined) columns.push(['title', changes.title]);
  if (changes.description !== undefined) columns.push(['description', changes.description]);
  if (changes.status !== undefined) columns.push(['status', changes.status]);
  if (changes.priority !== undefined) columns.push(['priority', priorityRank(changes.priority)]);
  if (changes.dueAt !== undefined) columns.push(['due_at', changes.dueAt]);
  return columns;
}

export function updateStatement(change: TaskUpdate): Statement {
  const params: unknown[] = [change.id, change.userId, change.updatedAt];
  const sets: string[] = [];
  for (const [column, value] of patchColumns(change.changes)) {
    params.push(value);
    sets.push(`${column} = $${params.length}`);
  }
  let guard: string;
  if (change.expectedVersion !== null) {
    params.push(change.expectedVersion, change.version ?? change.expectedVersion + 1);
    guard = `version = $${params.length - 1}`;
    sets.push(`version = $${params.length}`);
  } else {
    guard = 'updated_at < $3';
    sets.push('version = version + 1');
  }
  sets.push('updated_at = $3');
  return {
    sql: `WITH updated AS (
            UPDATE tasks SET ${sets.join(', ')}
             WHERE id = $1 AND user_id = $2 AND ${guard}
            RETURNING ${COLUMNS}
          )
          SELECT ${COLUMNS} FROM updated`,
    params,
  };
}

export function deleteStatement(deletion: TaskDeletion): Statement {
  const params: unknown[] = [deletion.id, deletion.userId];
  let guard = '';
  if (deletion.expectedVersion !== null) {
    params.push(deletion.expectedVersion);
    guard = ' AND version = $3';
  }
  return {
    sql: `WITH deleted AS (
            DELETE FROM tasks WHERE id = $1 AND user_id = $2${guard} RETURNING id
          )
          SELECT id FROM deleted`,
    params,
  };
}

/** Deletes without a version guard, each filtered by its own owner. */
/**
 * Aliases for creates whose key another task of the same user holds (not themselves: a create
 * that went in holds its own key).
 */
export function keyAliasesStatement(tasks: readonly NewTask[]): Statement {
  return {
    sql: `WITH recorded AS (
            INSERT INTO task_aliases (id, user_id, task_id)
            SELECT created.id, created.user_id, tasks.id
              FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS created(id, user_id, idempotency_key)
              JOIN tasks ON tasks.user_id = created.user_id
                        AND tasks.idempotency_key = created.idempotency_key
                        AND tasks.id <> created.id
            ON CONFLICT DO NOTHING
            RETURNING 1
          )
          SELECT count(*)::int AS recorded FROM recorded`,
    params: [
      tasks.map((task) => task.id),
      tasks.map((task) => task.userId),
      tasks.map((task) => task.idempotencyKey),
    ],
  };
}

/** Replayed deletes; an id recorded as an alias deletes the task it stands for. */
export function deleteManyStatement(deletions: readonly TaskDeletion[]): Statement {
  return {
    sql: `WITH deleted AS (
            DELETE FROM tasks
             USING (
               SELECT coalesce(alias.task_id, requested.id) AS id, requested.user_id
                 FROM unnest($1::uuid[], $2::uuid[]) AS requested(id, user_id)
                 LEFT JOIN task_aliases alias
                        ON alias.id = requested.id AND alias.user_id = requested.user_id
             ) AS deletion
             WHERE tasks.id = deletion.id AND tasks.user_id = deletion.user_id
            RETURNING 1
          )
          SELECT count(*)::int AS deleted FROM deleted`,
    params: [
      deletions.map((deletion) => deletion.id),
      deletions.map((deletion) => deletion.userId),
    ],
  };
}

interface SortSpec {
  /** The ordered expression; the same text as in the index that serves it. */
  key: string;
  cast: 'timestamptz' | 'smallint';
  direction: 'ASC' | 'DESC';
  /** What a missing due date sorts as, so that it comes last in either direction. */
  nullKey?: string;
}

const SORTS: Record<TaskSort, SortSpec> = {
  createdAt: { key: 'created_at', cast: 'timestamptz', direction: 'ASC' },
  '-createdAt': { key: 'created_at', cast: 'timestamptz', direction: 'DESC' },
  dueAt: {
    key: "COALESCE(due_at, 'infinity'::timestamptz)",
    cast: 'timestamptz',
    direction: 'ASC',
    nullKey: 'infinity',
  },
  '-dueAt': {
    key: "COALESCE(due_at, '-infinity'::timestamptz)",
    cast: 'timestamptz',
    direction: 'DESC',
    nullKey: '-infinity',
  },
  priority: { key: 'priority', cast: 'smallint', direction: 'ASC' },
  '-priority': { key: 'priority', cast: 'smallint', direction: 'DESC' },
};

/**
 * How many of a user's rows a filtered page reads in sort order, per row it may return, before
 * it turns to an index on the filter instead: a filter that keeps one row in a hundred or more
 * fills its page within them (see `listStatement`).
 */
export const SCAN_ROWS_PER_PAGE_ROW = 100;

/**
 * One page of a user's tasks. Keyset pagination: the page starts strictly after the previous
 * page's last (sort key, id), a row comparison the `(user_id, key, id)` index answers directly,
 * so deep pages cost what the first does and rows inserted meanwhile never shift a page.
 *
 * Without a filter (or with only the priority filter under a priority sort, which the sort's
 * index applies itself) the page is that index read in order. A filter the index cannot apply
 * (status, priority under another sort, `q`) is checked on each row read, and a filter that
 * keeps few rows would read all of a user's rows to fill one page (every row, for a search
 * term no title holds). So such a page first reads a bounded run of rows in order (the probe,
 * `SCAN_ROWS_PER_PAGE_ROW` per row asked for); when the probe neither fills the page nor
 * reaches the user's last row, the filter is rare, and the page is taken from the rows an index
 * on the filter finds (the trigram index for `q`, `(user_id, status, priority)` for the
 * others), sorted. A common filter thus costs a short read in order, a rare one the probe
 * plus its few matches, whatever the number of the user's rows. Plans: docs/performance.md.
 *
 * A `q` with no three letters or digits in a row has no trigram to look up: its page is only
 * the matches among the probe's rows, and when the probe stopped short of the user's last row,
 * one more row (`matched` false) says where it stopped, so that the next page resumes there.
 */
export function listStatement(userId: string, options: TaskListOptions): Statement {
  const spec = SORTS[options.sort];
  const params: unknown[] = [userId];
  const bind = (value: unknown): string => `$${params.push(value)}`;
  // Conditions the sort's index applies as it reads, and those checked on each row it reads.
  const scan = ['user_id = $1'];
  const residual: string[] = [];
  const { status, priority, q } = options.filter;
  if (priority !== undefined) {
    const condition = `priority = ${bind(priorityRank(priority))}`;
    (spec.key === 'priority' ? scan : residual).push(condition);
  }
  if (status !== undefined) residual.push(`status = ${bind(status)}`);
  if (q !== undefined) residual.push(`title ILIKE ${bind(`%${escapeLike(q)}%`)} ESCAPE '\\'`);
  if (options.after) {
    const comparison = spec.direction === 'ASC' ? '>' : '<';
    const key = bind(options.after.key ?? spec.nullKey ?? null);
    scan.push(
      `(${spec.key}, id) ${comparison} (${key}::${spec.cast}, ${bind(options.after.id)}::uuid)`,
    );
  }
  const limit = bind(options.limit);
  if (residual.length === 0) {
    return {
      sql: `SELECT ${COLUMNS} FROM tasks
             WHERE ${scan.join(' AND ')}
             ORDER BY ${orderBy(spec.key, 'id', spec.direction)}
             LIMIT ${limit}`,
      params,
    };
  }
  const probeRows = bind(options.limit * SCAN_ROWS_PER_PAGE_ROW);
  const bounded = q !== undefined && !hasTrigram(q);
  return { sql: probedPage(spec, { scan, residual, limit, probeRows, bounded }), params };
}

interface ProbedPage {
  /** Conditions the sort's index applies, and those checked on each row read. */
  scan: string[];
  residual: string[];
  /** Placeholders: the rows asked for, and the probe's length. */
  limit: string;
  probeRows: string;
  /** No index serves the filter: the page is the probe's matches, then where it stopped. */
  bounded: boolean;
}

/** The statement of a filtered page (see `listStatement`). */
function probedPage(spec: SortSpec, page: ProbedPage): string {
  const { scan, residual, limit, probeRows } = page;
  const reverse = spec.direction === 'ASC' ? 'DESC' : 'ASC';
  // Each count is an InitPlan, evaluated only when a condition needs it: a probe that fills
  // the page early is never read to its end.
  const settled = `(SELECT count(*) FROM hits) = ${limit} OR (SELECT count(*) FROM probe) < ${probeRows}`;
  const unsettled = `(SELECT count(*) FROM hits) < ${limit} AND (SELECT count(*) FROM probe) = ${probeRows}`;
  const rest = page.bounded
    ? `SELECT id, sort_key, false FROM probe
        WHERE ${unsettled}
        ORDER BY ${orderBy('sort_key', 'id', reverse)}
        LIMIT 1`
    : // OFFSET 0 keeps the planner from reading these in sort order through the sort's index:
      // it fetches them all through the filter's own index, then sorts the few there are.
      `SELECT id, sort_key, true FROM (
         SELECT id, ${spec.key} AS sort_key FROM tasks
          WHERE ${[...scan, ...residual].join(' AND ')}
         OFFSET 0
       ) matching
        WHERE ${unsettled}
        ORDER BY ${orderBy('sort_key', 'id', spec.direction)}
        LIMIT ${limit}`;
  // A CTE is read back in the order it was written: `hits` holds the probe's first matches.
  // The page's rows are then fetched one by one by id (the lateral subquery, kept apart by
  // OFFSET 0): as a join, a generic plan that expects many rows per user (few users in all)
  // would read all of the user's rows to join the page's few.
  // The probe's length is a subquery so that the planner does not see it: shown a probe as long
  // as most of a user's rows, it would sort them all rather than read the first few in order,
  // not knowing that `hits` usually stops reading long before the end.
  return `WITH probe AS MATERIALIZED (
            SELECT id, ${spec.key} AS sort_key, status, priority, title FROM tasks
             WHERE ${scan.join(' AND ')}
             ORDER BY ${orderBy(spec.key, 'id', spec.direction)}
             LIMIT (SELECT ${probeRows}::bigint)
          ), hits AS MATERIALIZED (
            SELECT id, sort_key FROM probe WHERE ${residual.join(' AND ')} LIMIT ${limit}
          ), page (id, sort_key, matched) AS (
            SELECT id, sort_key, true FROM hits${page.bounded ? '' : ` WHERE ${settled}`}
            UNION ALL
            (${rest})
          )
          SELECT task.*, page.matched
            FROM page CROSS JOIN LATERAL (
              SELECT ${COLUMNS} FROM tasks WHERE tasks.id = page.id AND tasks.user_id = $1 OFFSET 0
            ) task
           ORDER BY ${orderBy('page.sort_key', 'page.id', spec.direction)}`;
}

function orderBy(key: string, id: string, direction: 'ASC' | 'DESC'): string {
  return `${key} ${direction}, ${id} ${direction}`;
}

/**
 * Whether the trigram index can look `q` up: pg_trgm takes trigrams from runs of letters and
 * digits, and a run of three has one whatever surrounds it.
 */
export function hasTrigram(q: string): boolean {
  return /[\p{L}\p{N}]{3}/u.test(q);
}

/** Makes every character of a search literal inside a LIKE pattern whose escape is `\`. */
export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (char) => `\\${char}`);
}

function toTask(row: TaskRow): Task {
  return {
    id: row.id,
    userId: row.user_id,
    title: row.title,
    description: row.description,
    status: row.status,
    priority: priorityOfRank(row.priority),
    dueAt: row.due_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    version: row.version,
  };
}
