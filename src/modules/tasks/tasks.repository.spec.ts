/**
 * The SQL the repository sends, as built (no database): owner filtering, literal search,
 * keyset conditions and the replay guards. The e2e suite runs the same statements for real.
 */
import { describe, expect, it } from '@jest/globals';
import type { NewTask, TaskUpdate } from './task.js';
import {
  deleteManyStatement,
  deleteStatement,
  escapeLike,
  hasTrigram,
  insertManyStatement,
  insertStatement,
  listStatement,
  SCAN_ROWS_PER_PAGE_ROW,
  updateStatement,
} from './tasks.repository.js';

const USER = '0193a000-0000-7000-8000-000000000001';
const ID = '0193a000-0000-7000-8000-0000000000aa';
const squash = (sql: string) => sql.replace(/\s+/g, ' ').trim();
const COLUMNS =
  'id, user_id, title, description, status, priority, due_at, created_at, updated_at, version';

describe('task statements', () => {
  it('escapes LIKE wildcards and the escape character itself', () => {
    expect(escapeLike('50%_off\\now')).toBe('50\\%\\_off\\\\now');
    expect(escapeLike('plain')).toBe('plain');
  });

  it('lists by owner first, in the order of the sort, one row more than a page', () => {
    const { sql, params } = listStatement(USER, {
      filter: {},
      sort: '-createdAt',
      after: null,
      limit: 21,
    });
    expect(squash(sql)).toBe(
      `SELECT ${COLUMNS} FROM tasks WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`,
    );
    expect(params).toEqual([USER, 21]);
  });

  it('lets the priority index apply a priority filter under a priority sort', () => {
    const { sql, params } = listStatement(USER, {
      filter: { priority: 'high' },
      sort: 'priority',
      after: null,
      limit: 21,
    });
    expect(squash(sql)).toBe(
      `SELECT ${COLUMNS} FROM tasks WHERE user_id = $1 AND priority = $2 ORDER BY priority ASC, id ASC LIMIT $3`,
    );
    expect(params).toEqual([USER, 3, 21]);
  });

  it('reads a bounded run in order for other filters, then the matches through their own index', () => {
    const { sql, params } = listStatement(USER, {
      filter: { status: 'todo', priority: 'high', q: "a%'bcd" },
      sort: '-createdAt',
      after: null,
      limit: 21,
    });
    const text = squash(sql);
    const residual = "priority = $2 AND status = $3 AND title ILIKE $4 ESCAPE '\\'";
    expect(text).toContain(
      'WITH probe AS MATERIALIZED ( SELECT id, created_at AS sort_key, status, priority, title FROM tasks WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT (SELECT $6::bigint) )',
    );
    expect(text).toContain(
      `hits AS MATERIALIZED ( SELECT id, sort_key FROM probe WHERE ${residual} LIMIT $5 )`,
    );
    expect(text).toContain(
      'SELECT id, sort_key, true FROM hits WHERE (SELECT count(*) FROM hits) = $5 OR (SELECT count(*) FROM probe) < $6',
    );
    expect(text).toContain(
      `SELECT id, created_at AS sort_key FROM tasks WHERE user_id = $1 AND ${residual} OFFSET 0`,
    );
    expect(text).toContain(
      'WHERE (SELECT count(*) FROM hits) < $5 AND (SELECT count(*) FROM probe) = $6 ORDER BY sort_key DESC, id DESC LIMIT $5',
    );
    expect(text).toMatch(
      /FROM page CROSS JOIN LATERAL \( SELECT id, .* FROM tasks WHERE tasks.id = page.id AND tasks.user_id = \$1 OFFSET 0 \) task ORDER BY page.sort_key DESC, page.id DESC$/,
    );
    expect(params).toEqual([USER, 3, 'todo', "%a\\%'bcd%", 21, 21 * SCAN_ROWS_PER_PAGE_ROW]);
  });

  it('answers a search without a trigram from the bounded run alone, saying where it stopped', () => {
    const { sql, params } = listStatement(USER, {
      filter: { q: 'ab' },
      sort: 'dueAt',
      after: { key: null, id: ID },
      limit: 6,
    });
    const text = squash(sql);
    expect(text).not.toContain(') matching');
    expect(text).toContain('SELECT id, sort_key, true FROM hits UNION ALL');
    expect(text).toContain(
      'SELECT id, sort_key, false FROM probe WHERE (SELECT count(*) FROM hits) < $5 AND (SELECT count(*) FROM probe) = $6 ORDER BY sort_key DESC, id DESC LIMIT 1',
    );
    expect(params).toEqual([USER, '%ab%', 'infinity', ID, 6, 6 * SCAN_ROWS_PER_PAGE_ROW]);
  });

  it('counts a trigram only in three letters or digits in a row, in any script', () => {
    for (const q of ['abc', 'x-abc', 'a1b', 'été', '任务管', '2026'])
      expect(hasTrigram(q)).toBe(true);
    for (const q of ['ab', 'a b c', '50%', '%%%', '___', 'a\\b', '12'])
      expect(hasTrigram(q)).toBe(false);
  });

  it('continues strictly after the cursor, in the direction of the sort', () => {
    const asc = listStatement(USER, {
      filter: {},
      sort: 'priority',
      after: { key: 2, id: ID },
      limit: 5,
    });
    expect(squash(asc.sql)).toContain('(priority, id) > ($2::smallint, $3::uuid)');
    expect(asc.params).toEqual([USER, 2, ID, 5]);

    const desc = listStatement(USER, {
      filter: {},
      sort: '-createdAt',
      after: { key: '2026-01-01T00:00:00.000Z', id: ID },
      limit: 5,
    });
    expect(squash(desc.sql)).toContain('(created_at, id) < ($2::timestamptz, $3::uuid)');
  });

  it('sorts a missing due date last in both directions, and resumes inside them', () => {
    const asc = listStatement(USER, {
      filter: {},
      sort: 'dueAt',
      after: { key: null, id: ID },
      limit: 5,
    });
    expect(squash(asc.sql)).toContain(
      "ORDER BY COALESCE(due_at, 'infinity'::timestamptz) ASC, id ASC",
    );
    expect(asc.params).toEqual([USER, 'infinity', ID, 5]);

    const desc = listStatement(USER, {
      filter: {},
      sort: '-dueAt',
      after: { key: null, id: ID },
      limit: 5,
    });
    expect(squash(desc.sql)).toContain(
      "ORDER BY COALESCE(due_at, '-infinity'::timestamptz) DESC, id DESC",
    );
    expect(desc.params).toEqual([USER, '-infinity', ID, 5]);
  });

  it('inserts with ON CONFLICT DO NOTHING and the priority as its rank', () => {
    const task: NewTask = {
      id: ID,
      userId: USER,
      title: 't',
      description: null,
      status: 'todo',
      priority: 'low',
      dueAt: null,
      createdAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:00:00.000Z',
      version: 1,
      idempotencyKey: 'k',
    };
    const { sql, params } = insertStatement(task);
    expect(squash(sql)).toContain('ON CONFLICT DO NOTHING RETURNING id');
    expect(params).toEqual([
      ID,
      USER,
      't',
      null,
      'todo',
      1,
      null,
      task.createdAt,
      task.updatedAt,
      1,
      'k',
    ]);
    // A direct write records its operation as applied in the same statement, if its row went in.
    const direct = insertStatement(task, 'op-1');
    expect(squash(direct.sql)).toMatch(
      /^WITH inserted AS \(INSERT INTO tasks .* RETURNING id\), applied AS \( INSERT INTO buffer_applied_operations \(id, applied_at\) SELECT \$12::uuid, now\(\) FROM inserted ON CONFLICT DO NOTHING \) SELECT id FROM inserted$/,
    );
    expect(direct.params).toEqual([...params, 'op-1']);
  });

  it('guards an update by owner and by the version it was computed from', () => {
    const change: TaskUpdate = {
      id: ID,
      userId: USER,
      changes: { priority: 'high', description: null },
      expectedVersion: 3,
      version: 4,
      updatedAt: '2026-01-01T00:00:00.000Z',
    };
    const { sql, params } = updateStatement(change);
    expect(squash(sql)).toContain(
      'UPDATE tasks SET description = $4, priority = $5, version = $7, updated_at = $3 WHERE id = $1 AND user_id = $2 AND version = $6',
    );
    expect(params).toEqual([ID, USER, change.updatedAt, null, 3, 3, 4]);
  });

  it('guards an update without a known version by its time, so it never undoes a newer change', () => {
    const { sql } = updateStatement({
      id: ID,
      userId: USER,
      changes: { title: 'x' },
      expectedVersion: null,
      version: null,
      updatedAt: '2026-01-01T00:00:00.000Z',
    });
    expect(squash(sql)).toContain(
      'SET title = $4, version = version + 1, updated_at = $3 WHERE id = $1 AND user_id = $2 AND updated_at < $3',
    );
  });

  it('deletes by owner, optionally only a given version', () => {
    expect(squash(deleteStatement({ id: ID, userId: USER, expectedVersion: null }).sql)).toContain(
      'DELETE FROM tasks WHERE id = $1 AND user_id = $2 RETURNING id',
    );
    const guarded = deleteStatement({ id: ID, userId: USER, expectedVersion: 5 });
    expect(squash(guarded.sql)).toContain('WHERE id = $1 AND user_id = $2 AND version = $3');
    expect(guarded.params).toEqual([ID, USER, 5]);
  });
  it('inserts many as one INSERT … SELECT from parallel arrays, in their order, ignoring conflicts', () => {
    const base: NewTask = {
      id: ID,
      userId: USER,
      title: 't',
      description: null,
      status: 'todo',
      priority: 'high',
      dueAt: null,
      createdAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:00:00.000Z',
      version: 1,
      idempotencyKey: null,
    };
    const second = {
      ...base,
      id: 'id-2',
      title: 'u',
      priority: 'low' as const,
      idempotencyKey: 'k',
    };
    const { sql, params } = insertManyStatement([base, second]);
    expect(squash(sql)).toContain('WITH ORDINALITY');
    expect(squash(sql)).toContain('ORDER BY position ON CONFLICT DO NOTHING');
    expect(params).toHaveLength(11);
    expect(params[0]).toEqual([ID, 'id-2']);
    expect(params[2]).toEqual(['t', 'u']);
    expect(params[5]).toEqual([3, 1]);
    expect(params[10]).toEqual([null, 'k']);
  });

  it('deletes many, each by its own owner', () => {
    const { sql, params } = deleteManyStatement([
      { id: ID, userId: USER, expectedVersion: null },
      { id: 'id-2', userId: 'user-2', expectedVersion: null },
    ]);
    expect(squash(sql)).toContain(
      'WHERE tasks.id = deletion.id AND tasks.user_id = deletion.user_id',
    );
    expect(params).toEqual([
      [ID, 'id-2'],
      [USER, 'user-2'],
    ]);
  });
});
