/**
 * Tasks in PostgreSQL, through TypeORM's repository of `TaskEntity`.
 *
 * Every statement filters by owner in SQL: another user's task is indistinguishable from a
 * missing one. Reads take the request context (deadline, breaker: `Database.run`). The apply
 * statements (insert, merge, delete) take the `EntityManager` they run on: the pool's for a
 * direct write, the replay transaction's later, so that a change has one code path whether it
 * is applied at once or from the offline buffer. They are harmless to replay and independent of
 * the order in which writes arrive (docs/design/replicas.md, section 2):
 *   - insert: not over a row with the same id (a replay) or key (another create holds it), nor
 *     over the task's tombstone (it was deleted); a run of creates goes in one statement;
 *   - merge: each field only where the update's position is later than the field's;
 *   - delete: removes the row and records the tombstone.
 * Statements are written by hand where TypeORM's builders cannot say them (conditional merges
 * per field, inserts guarded by another table, multi-row applies from arrays, keyset row
 * comparisons), and run through the repository's `query()`. UPDATE and DELETE are wrapped in a
 * CTE so that the driver returns plain rows for them as for SELECT.
 */
import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { EntityManager, Repository } from 'typeorm';
import type { RequestContext } from '../../common/context/request-context.js';
import { Database } from '../../infrastructure/database/database.js';
import { timeOfPosition } from '../buffer/write-order.js';
import { TaskEntity } from './task.entity.js';
import { TITLE_SEARCH_BUCKET_SQL, TITLE_SEARCH_BUCKETS, titleSearchBucket } from './title-search.js';
import {
  priorityOfRank,
  priorityRank,
  TASK_FIELD_NAMES,
  TASK_FIELDS,
  sortKeyOf,
  type NewTask,
  type Task,
  type TaskDeletion,
  type TaskFields,
  type TaskFilter,
  type TaskPageStart,
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
  after: TaskPageStart | null;
  limit: number;
}

/**
 * When a merged update grows the version: whenever the row takes any of it (a replayed update:
 * applied later, it counts as a change), or only when a value actually changes (a direct one:
 * setting fields to the values they have changes nothing, the ETag stays).
 */
export type VersionGrowth = 'when-taken' | 'when-changed';

/** What PostgreSQL knows of a task id, for deciding what to do with a write of it. */
export interface TaskPresence {
  /** The task has a row (under this id, or under `aliasOf`). */
  stored: boolean;
  /** The id is an alias of this task (a create merged into the one holding its key). */
  aliasOf: string | undefined;
  /** The task was deleted (its tombstone is kept for the retention period). */
  deleted: boolean;
  /** The position of the delete, when deleted and known. */
  deletedAt: string | undefined;
}

export interface TaskListRows {
  /** The tasks of the page, in order: at most `limit`. */
  tasks: Task[];
  /**
   * Set when a bounded scan (a search the trigram index cannot serve) stopped before the
   * user's last row and before `limit` tasks: where the next page starts.
   */
  resumeAfter: TaskPageStart | null;
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
const POSITION_COLUMNS = TASK_FIELD_NAMES.map((field) => TASK_FIELDS[field].positionColumn).join(', ');

@Injectable()
export class TasksRepository {
  constructor(
    @InjectRepository(TaskEntity) private readonly tasks: Repository<TaskEntity>,
    private readonly db: Database,
  ) {}

  /** The user's task; an id merged into another task (an alias) finds that task. */
  async findById(ctx: RequestContext, userId: string, id: string): Promise<Task | undefined> {
    return this.db.run(ctx, async () => {
      const [row] = await this.select(`SELECT ${COLUMNS} FROM tasks WHERE id = $1 AND user_id = $2`, [id, userId]);
      if (row) return toTask(row);
      const [aliased] = await this.select(
        `SELECT ${COLUMNS} FROM tasks
          WHERE user_id = $2 AND id = (SELECT task_id FROM task_aliases WHERE id = $1 AND user_id = $2)`,
        [id, userId],
      );
      return aliased && toTask(aliased);
    });
  }

  async findByIdempotencyKey(ctx: RequestContext, userId: string, key: string): Promise<Task | undefined> {
    const [row] = await this.db.run(ctx, () =>
      this.select(`SELECT ${COLUMNS} FROM tasks WHERE user_id = $1 AND idempotency_key = $2`, [userId, key]),
    );
    return row && toTask(row);
  }

  async list(ctx: RequestContext, userId: string, options: TaskListOptions): Promise<TaskListRows> {
    const { sql, params } = listStatement(userId, options);
    // The hottest read: run without TypeORM's query runner (Database.read).
    const rows = await this.db.read<TaskRow & { matched?: boolean }>(ctx, sql, params);
    const stop = rows.find((row) => row.matched === false);
    return {
      tasks: rows.filter((row) => row.matched !== false).map(toTask),
      resumeAfter: stop ? { key: sortKeyOf(toTask(stop), options.sort), id: stop.id } : null,
    };
  }

  /**
   * Applies a create; false when it inserted nothing: a row with its id exists already, another
   * task of the user holds its idempotency key, or it was deleted.
   */
  async insert(manager: EntityManager, task: NewTask): Promise<boolean> {
    const { sql, params } = insertStatement(task);
    const rows = (await manager.withRepository(this.tasks).query(sql, params)) as unknown[];
    return rows.length === 1;
  }

  /** Applies creates in one statement, in their order; resolves with how many went in. */
  async insertMany(manager: EntityManager, tasks: readonly NewTask[]): Promise<number> {
    if (tasks.length === 0) return 0;
    const { sql, params } = insertManyStatement(tasks);
    const [row] = (await manager.withRepository(this.tasks).query(sql, params)) as { inserted: number }[];
    return row?.inserted ?? 0;
  }

  /**
   * Applies an update by merging it field by field; the task as it is now, or undefined when no
   * row took any of it (missing, another version than `expectedVersion`, or every field written
   * at a later position already). `versionGrows`: when the version grows by one (see
   * `mergeStatement`).
   */
  async merge(manager: EntityManager, change: TaskUpdate, versionGrows: VersionGrowth = 'when-taken'): Promise<Task | undefined> {
    const { sql, params } = mergeStatement(change, versionGrows);
    const [row] = (await manager.withRepository(this.tasks).query(sql, params)) as TaskRow[];
    return row && toTask(row);
  }

  /**
   * Applies a delete: removes the row and records its tombstone; false when no row matched
   * (missing, another owner's, or another version than `expectedVersion`), and then no tombstone
   * is written.
   */
  async delete(manager: EntityManager, deletion: TaskDeletion): Promise<boolean> {
    const { sql, params } = deleteStatement(deletion);
    const [row] = (await manager.withRepository(this.tasks).query(sql, params)) as { deleted: number }[];
    return (row?.deleted ?? 0) > 0;
  }

  /**
   * Applies deletes that need no version in one statement: each removes its task (an alias's:
   * the task it stands for) if there is one, and records the tombstone whether or not (the
   * create may still be on its way from another replica's buffer). Resolves with the rows removed.
   */
  async deleteMany(manager: EntityManager, deletions: readonly TaskDeletion[]): Promise<number> {
    if (deletions.length === 0) return 0;
    const { sql, params } = deleteManyStatement(deletions);
    const [row] = (await manager.withRepository(this.tasks).query(sql, params)) as { deleted: number }[];
    return row?.deleted ?? 0;
  }

  /**
   * For replayed creates that found their idempotency key held by another task of the same
   * user, and were not deleted themselves: records each one's id as an alias of that task.
   */
  async recordKeyAliases(manager: EntityManager, tasks: readonly NewTask[]): Promise<number> {
    const keyed = tasks.filter((task) => task.idempotencyKey !== null);
    if (keyed.length === 0) return 0;
    const { sql, params } = keyAliasesStatement(keyed);
    const [row] = (await manager.withRepository(this.tasks).query(sql, params)) as { recorded: number }[];
    return row?.recorded ?? 0;
  }

  /** What PostgreSQL knows of each of the user's task ids given (one statement for all). */
  async presenceOf(manager: EntityManager, ids: ReadonlyArray<{ userId: string; id: string }>): Promise<TaskPresence[]> {
    if (ids.length === 0) return [];
    const rows = (await manager.withRepository(this.tasks).query(
      `SELECT EXISTS (SELECT 1 FROM tasks t WHERE t.id = coalesce(a.task_id, r.id) AND t.user_id = r.user_id) AS stored,
              a.task_id AS alias_of,
              s.id IS NOT NULL AS deleted,
              s.position AS deleted_at
         FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS r(id, user_id, n)
         LEFT JOIN task_aliases a ON a.id = r.id AND a.user_id = r.user_id
         LEFT JOIN task_tombstones s ON s.user_id = r.user_id AND s.id = coalesce(a.task_id, r.id)
        ORDER BY r.n`,
      [ids.map((entry) => entry.id), ids.map((entry) => entry.userId)],
    )) as { stored: boolean; alias_of: string | null; deleted: boolean; deleted_at: string | null }[];
    return rows.map((row) => ({
      stored: row.stored,
      aliasOf: row.alias_of ?? undefined,
      deleted: row.deleted,
      deletedAt: row.deleted_at ?? undefined,
    }));
  }

  /** Deletes tombstones older than `retentionMs`, a chunk at a time; resolves with how many went. */
  async pruneTombstones(ctx: RequestContext, retentionMs: number): Promise<number> {
    const cutoff = new Date(Date.now() - retentionMs);
    let total = 0;
    for (;;) {
      // By hand: DELETE takes no LIMIT, hence the chunk chosen by a subquery.
      const [row] = (await this.db.run(ctx, () =>
        this.tasks.query(
          `WITH gone AS (
             DELETE FROM task_tombstones
              WHERE (user_id, id) IN (SELECT user_id, id FROM task_tombstones WHERE deleted_at < $1 LIMIT ${PRUNE_CHUNK})
             RETURNING 1
           )
           SELECT count(*)::int AS deleted FROM gone`,
          [cutoff],
        ),
      )) as { deleted: number }[];
      const deleted = row?.deleted ?? 0;
      total += deleted;
      if (deleted < PRUNE_CHUNK) return total;
    }
  }

  private select(sql: string, params: unknown[]): Promise<TaskRow[]> {
    return this.tasks.query(sql, params) as Promise<TaskRow[]>;
  }
}

/** Rows deleted per statement when pruning, so that no prune holds locks for long. */
const PRUNE_CHUNK = 10_000;

/** The value a field's column holds (priorities as ranks). */
function columnValue(field: keyof TaskFields, value: unknown): unknown {
  return field === 'priority' ? priorityRank(value as TaskFields['priority']) : value;
}

// The same text for every create: built once, not on every request.
const INSERT_SQL = `INSERT INTO tasks (${COLUMNS}, idempotency_key, ${POSITION_COLUMNS})
          SELECT $1::uuid, $2::uuid, $3::varchar, $4::varchar, $5::varchar, $6::smallint,
                 $7::timestamptz, $8::timestamptz, $9::timestamptz, $10::integer, $11::varchar,
                 ${TASK_FIELD_NAMES.map(() => '$12::bigint').join(', ')}
           WHERE NOT EXISTS (SELECT 1 FROM task_tombstones WHERE user_id = $2 AND id = $1)
          ON CONFLICT DO NOTHING
          RETURNING id`;

/** One create: every field at its position (null: see NewTask), unless its id or key is taken or it was deleted. */
export function insertStatement(task: NewTask): Statement {
  return {
    sql: INSERT_SQL,
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
      task.position,
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
            INSERT INTO tasks (${COLUMNS}, idempotency_key, ${POSITION_COLUMNS})
            SELECT ${COLUMNS}, idempotency_key, ${TASK_FIELD_NAMES.map(() => 'position').join(', ')}
              FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                          $6::smallint[], $7::timestamptz[], $8::timestamptz[],
                          $9::timestamptz[], $10::integer[], $11::text[], $12::bigint[])
                   WITH ORDINALITY AS change(${COLUMNS}, idempotency_key, position, n)
             WHERE NOT EXISTS (SELECT 1 FROM task_tombstones s
                                WHERE s.user_id = change.user_id AND s.id = change.id)
             ORDER BY n
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
      column((task) => task.position),
    ],
  };
}

/**
 * An update merged field by field: a field takes the update's value (and position) only where
 * its own position is older (NULL is older than any). The version grows by one when the row
 * takes the update, or, with 'when-changed', only when a value actually changes; `updated_at`
 * then becomes the later of its value and the update's time. A row takes part only if at least
 * one field's position is older, so a replay changes nothing.
 */
export function mergeStatement(change: TaskUpdate, versionGrows: VersionGrowth = 'when-taken'): Statement {
  const params: unknown[] = [change.id, change.userId, change.position, timeOfPosition(change.position)];
  const sets: string[] = [];
  const wins: string[] = [];
  const changes: string[] = [];
  for (const field of TASK_FIELD_NAMES) {
    const value = change.changes[field];
    if (value === undefined) continue;
    const { column, positionColumn } = TASK_FIELDS[field];
    params.push(columnValue(field, value));
    const parameter = `$${params.length}`;
    const wins_ = `(${positionColumn} IS NULL OR ${positionColumn} < $3::bigint)`;
    wins.push(wins_);
    changes.push(`(${wins_} AND ${column} IS DISTINCT FROM ${parameter})`);
    sets.push(`${column} = CASE WHEN ${wins_} THEN ${parameter} ELSE ${column} END`);
    sets.push(`${positionColumn} = CASE WHEN ${wins_} THEN $3::bigint ELSE ${positionColumn} END`);
  }
  if (sets.length === 0) throw new Error('an update must change at least one field');
  const changed = versionGrows === 'when-changed' ? changes.join(' OR ') : 'true';
  sets.push(`version = version + CASE WHEN ${changed} THEN 1 ELSE 0 END`);
  sets.push(`updated_at = CASE WHEN ${changed} THEN GREATEST(updated_at, $4::timestamptz) ELSE updated_at END`);
  let guard = '';
  if (change.expectedVersion !== null) {
    params.push(change.expectedVersion);
    guard = ` AND version = $${params.length}`;
  }
  return {
    sql: `WITH updated AS (
            UPDATE tasks SET ${sets.join(', ')}
             WHERE id = $1 AND user_id = $2 AND (${wins.join(' OR ')})${guard}
            RETURNING ${COLUMNS}
          )
          SELECT ${COLUMNS} FROM updated`,
    params,
  };
}

/** A delete: the row goes and its tombstone is recorded, in one statement. */
export function deleteStatement(deletion: TaskDeletion): Statement {
  const params: unknown[] = [deletion.id, deletion.userId, deletion.position];
  let guard = '';
  if (deletion.expectedVersion !== null) {
    params.push(deletion.expectedVersion);
    guard = ' AND version = $4';
  }
  return {
    sql: `WITH deleted AS (
            DELETE FROM tasks WHERE id = $1 AND user_id = $2${guard} RETURNING id
          ),
          buried AS (
            INSERT INTO task_tombstones (user_id, id, position)
            SELECT $2, $1, $3::bigint WHERE EXISTS (SELECT 1 FROM deleted)
            ON CONFLICT (user_id, id) DO UPDATE
              SET position = GREATEST(task_tombstones.position, EXCLUDED.position)
          )
          SELECT count(*)::int AS deleted FROM deleted`,
    params,
  };
}

/**
 * Aliases for creates whose key another task of the same user holds (not themselves: a create
 * that went in holds its own key; not a create that was deleted).
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
             WHERE NOT EXISTS (SELECT 1 FROM task_tombstones s
                                WHERE s.user_id = created.user_id AND s.id = created.id)
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

/**
 * Deletes without a version guard: each removes its task (an alias's: the task it stands for)
 * and records its tombstone, kept at the latest position.
 */
export function deleteManyStatement(deletions: readonly TaskDeletion[]): Statement {
  return {
    sql: `WITH target AS (
            SELECT coalesce(alias.task_id, requested.id) AS id, requested.user_id, max(requested.position) AS position
              FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS requested(id, user_id, position)
              LEFT JOIN task_aliases alias
                     ON alias.id = requested.id AND alias.user_id = requested.user_id
             GROUP BY 1, 2
          ),
          deleted AS (
            DELETE FROM tasks USING target
             WHERE tasks.id = target.id AND tasks.user_id = target.user_id
            RETURNING 1
          ),
          buried AS (
            INSERT INTO task_tombstones (user_id, id, position)
            SELECT user_id, id, position FROM target
            ON CONFLICT (user_id, id) DO UPDATE
              SET position = GREATEST(task_tombstones.position, EXCLUDED.position)
          )
          SELECT count(*)::int AS deleted FROM deleted`,
    params: [
      deletions.map((deletion) => deletion.id),
      deletions.map((deletion) => deletion.userId),
      deletions.map((deletion) => deletion.position),
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
 * on the filter finds (the caller's part of the trigram index for `q`, see `title-search.ts`;
 * `(user_id, status, priority)` for the others), sorted. A common filter thus costs a short
 * read in order, a rare one the probe plus its few matches, whatever the number of the user's
 * rows. Plans: docs/performance.md.
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
  const titleCondition =
    q === undefined ? undefined : `title ILIKE ${bind(`%${escapeLike(q)}%`)} ESCAPE '\\'`;
  if (titleCondition !== undefined) residual.push(titleCondition);
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
  let matching = '';
  if (titleCondition !== undefined && !bounded) {
    const others = [...scan, ...residual.filter((condition) => condition !== titleCondition)];
    matching = titleLookups(spec, titleCondition, others, bind(titleSearchBucket(userId)));
  } else if (!bounded) {
    matching = `SELECT id, ${spec.key} AS sort_key FROM tasks
          WHERE ${[...scan, ...residual].join(' AND ')}
         OFFSET 0`;
  }
  return { sql: probedPage(spec, { scan, residual, matching, limit, probeRows }), params };
}

/**
 * A rare search's matches, from the trigram index split by owner (`title-search.ts`): one
 * lookup per part, each naming its index's predicate as a constant (PostgreSQL uses a partial
 * index only for a statement that contains its predicate), switched on by the caller's part, a
 * parameter: the others are a one-time filter that is false, and never run. So the statement's
 * text is the same for every caller (one prepared statement, not one per part).
 *
 * Every other condition (the owner, the cursor, status, priority) is checked on the part's
 * matches, outside the lookup (kept apart by OFFSET 0). Inside, the planner would add an index
 * on them to the lookup (a BitmapAnd), and a generic plan, which takes a user to hold one row in
 * the number of users, does: all 100,000 row pointers of a heavy caller's from a `(user_id, …)`
 * btree, 8 ms, for a few matches.
 */
function titleLookups(spec: SortSpec, title: string, others: string[], callerPart: string): string {
  const lookup = (part: number) => `(
         SELECT id, ${spec.key} AS sort_key FROM (
           SELECT id, user_id, status, priority, created_at, due_at FROM tasks
            WHERE ${callerPart}::int = ${part} AND ${TITLE_SEARCH_BUCKET_SQL} = ${part} AND ${title}
           OFFSET 0
         ) part WHERE ${others.join(' AND ')}
       )`;
  return Array.from({ length: TITLE_SEARCH_BUCKETS }, (_, part) => lookup(part)).join(' UNION ALL ');
}

interface ProbedPage {
  /** Conditions the sort's index applies, and those checked on each row read. */
  scan: string[];
  residual: string[];
  /**
   * Every match after the cursor, through the filter's own index; empty when no index serves
   * the filter: the page is then the probe's matches, and where it stopped.
   */
  matching: string;
  /** Placeholders: the rows asked for, and the probe's length. */
  limit: string;
  probeRows: string;
}

/** The statement of a filtered page (see `listStatement`). */
function probedPage(spec: SortSpec, page: ProbedPage): string {
  const { scan, residual, limit, probeRows } = page;
  const reverse = spec.direction === 'ASC' ? 'DESC' : 'ASC';
  // Each count is an InitPlan, evaluated only when a condition needs it: a probe that fills
  // the page early is never read to its end.
  const settled = `(SELECT count(*) FROM hits) = ${limit} OR (SELECT count(*) FROM probe) < ${probeRows}`;
  const unsettled = `(SELECT count(*) FROM hits) < ${limit} AND (SELECT count(*) FROM probe) = ${probeRows}`;
  const bounded = page.matching === '';
  const rest = bounded
    ? `SELECT id, sort_key, false FROM probe
        WHERE ${unsettled}
        ORDER BY ${orderBy('sort_key', 'id', reverse)}
        LIMIT 1`
    : // OFFSET 0 keeps the planner from reading these in sort order through the sort's index:
      // it fetches them all through the filter's own index, then sorts the few there are.
      `SELECT id, sort_key, true FROM (${page.matching}) matching
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
  // The probe reads only columns that `tasks_user_created_at` includes: in the default order it
  // is an index-only scan, whatever other users' rows lie between the caller's in the heap.
  return `WITH probe AS MATERIALIZED (
            SELECT id, ${spec.key} AS sort_key, status, priority, title FROM tasks
             WHERE ${scan.join(' AND ')}
             ORDER BY ${orderBy(spec.key, 'id', spec.direction)}
             LIMIT (SELECT ${probeRows}::bigint)
          ), hits AS MATERIALIZED (
            SELECT id, sort_key FROM probe WHERE ${residual.join(' AND ')} LIMIT ${limit}
          ), page (id, sort_key, matched) AS (
            SELECT id, sort_key, true FROM hits${bounded ? '' : ` WHERE ${settled}`}
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
