/**
 * The SQL the repository sends, as built (no database): owner filtering, literal search, keyset
 * conditions, and the apply statements of the merge by position (docs/design/replicas.md,
 * section 2): inserts guarded by tombstones, merges field by field with both ways the version
 * grows and an optional version guard, deletes that leave tombstones, aliases for merged creates.
 * Every field of TASK_FIELDS must appear in the statements that write fields, and no value is
 * ever written into the SQL text. The e2e suites run the same statements against PostgreSQL.
 */
import { describe, expect, it } from '@jest/globals';
import { timeOfPosition } from '../buffer/write-order.js';
import { TASK_FIELD_NAMES, TASK_FIELDS, type NewTask, type TaskDeletion, type TaskFields, type TaskUpdate } from './task.js';
import {
  TITLE_SEARCH_BUCKETS,
  TITLE_SEARCH_BUCKET_SQL,
  titleSearchBucket,
} from './title-search.js';
import {
  deleteManyStatement,
  deleteStatement,
  escapeLike,
  hasTrigram,
  insertManyStatement,
  insertStatement,
  keyAliasesStatement,
  listStatement,
  mergeStatement,
  SCAN_ROWS_PER_PAGE_ROW,
  type Statement,
} from './tasks.repository.js';

const USER = '0193a000-0000-7000-8000-000000000001';
const OTHER_USER = '0193a000-0000-7000-8000-000000000002';
const ID = '0193a000-0000-7000-8000-0000000000aa';
const ID_2 = '0193a000-0000-7000-8000-0000000000bb';
/** Positions with 19 digits: text no SQL keyword or placeholder could contain by chance. */
const POSITION = '1813849200123456789';
const LATER = '1813849200123459999';
const squash = (sql: string) => sql.replace(/\s+/g, ' ').trim();
const COLUMNS =
  'id, user_id, title, description, status, priority, due_at, created_at, updated_at, version';

/** Field values no statement could contain unless it interpolated them. */
const VALUES: TaskFields = {
  title: "Robert'); DROP TABLE tasks;-- title-marker",
  description: 'description-marker $1 %s',
  status: 'in_progress',
  priority: 'high',
  dueAt: '2031-07-08T09:10:11.123Z',
};

function newTask(overrides: Partial<NewTask> = {}): NewTask {
  return {
    id: ID,
    userId: USER,
    ...VALUES,
    createdAt: '2030-01-02T03:04:05.678Z',
    updatedAt: '2030-01-02T03:04:05.679Z',
    version: 1,
    idempotencyKey: 'idempotency-key-marker',
    position: POSITION,
    ...overrides,
  };
}

function update(overrides: Partial<TaskUpdate> = {}): TaskUpdate {
  return { id: ID, userId: USER, changes: { ...VALUES }, position: POSITION, expectedVersion: null, ...overrides };
}

function deletion(overrides: Partial<TaskDeletion> = {}): TaskDeletion {
  return { id: ID, userId: USER, position: POSITION, expectedVersion: null, ...overrides };
}

/** Every string value of the parameters (arrays flattened), long enough to be telling. */
function textValues(params: unknown[]): string[] {
  return params
    .flat()
    .filter((value): value is string | number => typeof value === 'string' || typeof value === 'number')
    .map(String)
    .filter((text) => text.length >= 6);
}

/** The statement's SQL names none of its values: each one is a placeholder. */
function expectNoInterpolation({ sql, params }: Statement): void {
  const values = textValues(params);
  expect(values.length).toBeGreaterThan(0);
  for (const value of values) expect(sql).not.toContain(value);
  const highest = Math.max(0, ...[...sql.matchAll(/\$(\d+)/g)].map((match) => Number(match[1])));
  expect(highest).toBe(params.length);
}

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
    // One lookup per part of the trigram index, each naming its part's predicate; the caller's
    // part ($7) switches its own on.
    // Every other condition is checked on the part's matches, outside the lookup.
    for (let part = 0; part < TITLE_SEARCH_BUCKETS; part++) {
      expect(text).toContain(
        `( SELECT id, created_at AS sort_key FROM ( SELECT id, user_id, status, priority, created_at, due_at FROM tasks WHERE $7::int = ${part} AND (get_byte(uuid_send(user_id), 15) & 7) = ${part} AND title ILIKE $4 ESCAPE '\\' OFFSET 0 ) part WHERE user_id = $1 AND priority = $2 AND status = $3 )`,
      );
    }
    expect(text.match(/ UNION ALL \( SELECT id, created_at AS sort_key FROM \( SELECT/g)).toHaveLength(
      TITLE_SEARCH_BUCKETS - 1,
    );
    expect(text).toContain(
      'WHERE (SELECT count(*) FROM hits) < $5 AND (SELECT count(*) FROM probe) = $6 ORDER BY sort_key DESC, id DESC LIMIT $5',
    );
    expect(text).toMatch(
      /FROM page CROSS JOIN LATERAL \( SELECT id, .* FROM tasks WHERE tasks.id = page.id AND tasks.user_id = \$1 OFFSET 0 \) task ORDER BY page.sort_key DESC, page.id DESC$/,
    );
    expect(params).toEqual([USER, 3, 'todo', "%a\\%'bcd%", 21, 21 * SCAN_ROWS_PER_PAGE_ROW, titleSearchBucket(USER)]);
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

  it('names the part of the trigram index by the owner id’s last byte, as PostgreSQL computes it', () => {
    expect(titleSearchBucket('0193a000-0000-7000-8000-0000000000ff')).toBe(7);
    expect(titleSearchBucket('0193a000-0000-7000-8000-0000000000F8')).toBe(0);
    expect(titleSearchBucket('0193a000-0000-7000-8000-0000000000a3')).toBe(3);
    expect(TITLE_SEARCH_BUCKET_SQL).toBe(`(get_byte(uuid_send(user_id), 15) & ${TITLE_SEARCH_BUCKETS - 1})`);
    // Only a search the index serves names it: a status alone does not, nor a short term.
    for (const filter of [{ status: 'todo' as const }, { q: 'ab' }]) {
      const { sql } = listStatement(USER, { filter, sort: '-createdAt', after: null, limit: 21 });
      expect(sql).not.toContain('get_byte');
    }
    const { sql } = listStatement(USER, { filter: { status: 'todo' }, sort: '-createdAt', after: null, limit: 21 });
    expect(squash(sql)).toContain('SELECT id, created_at AS sort_key FROM tasks WHERE user_id = $1 AND status = $2 OFFSET 0');
  });

  it('counts a trigram only in three letters or digits in a row, in any script', () => {
    for (const q of ['abc', 'x-abc', 'a1b', 'été', '任务管', '2026'])
      expect(hasTrigram(q)).toBe(true);
    for (const q of ['ab', 'a b c', '50%', '%%%', '___', 'a\\b', '12'])
      expect(hasTrigram(q)).toBe(false);
  });

  describe('insert', () => {
    it('inserts every field with its position column set to the create\'s, priority as its rank, unless a row, the key or a tombstone is there', () => {
      const task = newTask();
      const statement = insertStatement(task);
      const sql = squash(statement.sql);

      expect(statement.params).toEqual([
        ID,
        USER,
        VALUES.title,
        VALUES.description,
        VALUES.status,
        3,
        VALUES.dueAt,
        task.createdAt,
        task.updatedAt,
        1,
        'idempotency-key-marker',
        POSITION,
      ]);
      for (const field of TASK_FIELD_NAMES) {
        expect(sql).toMatch(new RegExp(`INSERT INTO tasks \\([^)]*\\b${TASK_FIELDS[field].column}\\b[^)]*\\b${TASK_FIELDS[field].positionColumn}\\b`));
      }
      // Every position column takes the create's position: none (NULL) for a create accepted now.
      expect(sql.match(/\$12::bigint/g)).toHaveLength(TASK_FIELD_NAMES.length);
      expect(insertStatement({ ...task, position: null }).params.at(-1)).toBeNull();
      expect(sql).toContain('WHERE NOT EXISTS (SELECT 1 FROM task_tombstones WHERE user_id = $2 AND id = $1)');
      expect(sql).toContain('ON CONFLICT DO NOTHING RETURNING id');
      expectNoInterpolation(statement);
    });

    it('inserts many as one INSERT … SELECT from parallel arrays, in their order, each with its own position and tombstone guard', () => {
      const first = newTask({ idempotencyKey: null });
      const second = newTask({ id: ID_2, userId: OTHER_USER, title: 'second-title-marker', priority: 'low', idempotencyKey: 'k-marker', position: LATER });
      const statement = insertManyStatement([first, second]);
      const sql = squash(statement.sql);

      expect(statement.params).toEqual([
        [ID, ID_2],
        [USER, OTHER_USER],
        [VALUES.title, 'second-title-marker'],
        [VALUES.description, VALUES.description],
        [VALUES.status, VALUES.status],
        [3, 1],
        [VALUES.dueAt, VALUES.dueAt],
        [first.createdAt, second.createdAt],
        [first.updatedAt, second.updatedAt],
        [1, 1],
        [null, 'k-marker'],
        [POSITION, LATER],
      ]);
      for (const field of TASK_FIELD_NAMES) {
        expect(sql).toMatch(new RegExp(`INSERT INTO tasks \\([^)]*\\b${TASK_FIELDS[field].column}\\b[^)]*\\b${TASK_FIELDS[field].positionColumn}\\b`));
      }
      expect(sql).toContain(`SELECT id, user_id, title, description, status, priority, due_at, created_at, updated_at, version, idempotency_key, ${TASK_FIELD_NAMES.map(() => 'position').join(', ')} FROM unnest(`);
      expect(sql).toContain('WITH ORDINALITY AS change(');
      expect(sql).toContain('WHERE NOT EXISTS (SELECT 1 FROM task_tombstones s WHERE s.user_id = change.user_id AND s.id = change.id) ORDER BY n ON CONFLICT DO NOTHING');
      expectNoInterpolation(statement);
    });
  });

  describe('merge', () => {
    /** The condition under which a field takes the update: its own position is older, or NULL. */
    const wins = (positionColumn: string) => `(${positionColumn} IS NULL OR ${positionColumn} < $3::bigint)`;

    it('sets each field of the patch, and its position, only where its own position is older; params: id, owner, position, its time, the values', () => {
      const statement = mergeStatement(update());
      const sql = squash(statement.sql);

      expect(statement.params).toEqual([ID, USER, POSITION, timeOfPosition(POSITION), VALUES.title, VALUES.description, VALUES.status, 3, VALUES.dueAt]);
      TASK_FIELD_NAMES.forEach((field, n) => {
        const { column, positionColumn } = TASK_FIELDS[field];
        expect(sql).toContain(`${column} = CASE WHEN ${wins(positionColumn)} THEN $${5 + n} ELSE ${column} END`);
        expect(sql).toContain(`${positionColumn} = CASE WHEN ${wins(positionColumn)} THEN $3::bigint ELSE ${positionColumn} END`);
      });
      expect(sql).toContain(`WHERE id = $1 AND user_id = $2 AND (${TASK_FIELD_NAMES.map((field) => wins(TASK_FIELDS[field].positionColumn)).join(' OR ')})`);
      expect(sql).toMatch(/RETURNING id, user_id, title, description, status, priority, due_at, created_at, updated_at, version \) SELECT .* FROM updated$/);
      expectNoInterpolation(statement);
    });

    it('touches only the fields of the patch', () => {
      for (const field of TASK_FIELD_NAMES) {
        const statement = mergeStatement(update({ changes: { [field]: VALUES[field] } }));
        const sql = squash(statement.sql);
        const { column, positionColumn } = TASK_FIELDS[field];
        expect(statement.params).toHaveLength(5);
        expect(sql).toContain(`${column} = CASE WHEN ${wins(positionColumn)} THEN $5 ELSE ${column} END`);
        for (const other of TASK_FIELD_NAMES.filter((name) => name !== field)) {
          expect(sql).not.toContain(TASK_FIELDS[other].positionColumn);
        }
      }
    });

    it("grows the version and moves updated_at forward whenever the row takes it ('when-taken', replay's way)", () => {
      const sql = squash(mergeStatement(update({ changes: { title: 'x-marker' } })).sql);
      expect(sql).toContain('version = version + CASE WHEN true THEN 1 ELSE 0 END');
      expect(sql).toContain('updated_at = CASE WHEN true THEN GREATEST(updated_at, $4::timestamptz) ELSE updated_at END');
    });

    it("grows the version only when a value it takes actually changes ('when-changed', a direct write's way)", () => {
      const statement = mergeStatement(update({ changes: { title: 'x-marker', dueAt: null } }), 'when-changed');
      const sql = squash(statement.sql);
      const changed = `(${wins('title_pos')} AND title IS DISTINCT FROM $5) OR (${wins('due_at_pos')} AND due_at IS DISTINCT FROM $6)`;
      expect(statement.params).toEqual([ID, USER, POSITION, timeOfPosition(POSITION), 'x-marker', null]);
      expect(sql).toContain(`version = version + CASE WHEN ${changed} THEN 1 ELSE 0 END`);
      expect(sql).toContain(`updated_at = CASE WHEN ${changed} THEN GREATEST(updated_at, $4::timestamptz) ELSE updated_at END`);
    });

    it('applies only to the version a client named in If-Match, as the last parameter', () => {
      const statement = mergeStatement(update({ changes: { priority: 'low' }, expectedVersion: 7 }), 'when-changed');
      expect(statement.params).toEqual([ID, USER, POSITION, timeOfPosition(POSITION), 1, 7]);
      expect(squash(statement.sql)).toContain(`WHERE id = $1 AND user_id = $2 AND (${wins('priority_pos')}) AND version = $6`);
      expect(squash(mergeStatement(update()).sql)).not.toMatch(/AND version = \$/);
    });

    it('refuses an update that sets no field', () => {
      expect(() => mergeStatement(update({ changes: {} }))).toThrow('at least one field');
    });
  });

  describe('delete', () => {
    it('removes the owner\'s row and records its tombstone at the delete\'s position, keeping the later one', () => {
      const statement = deleteStatement(deletion());
      const sql = squash(statement.sql);

      expect(statement.params).toEqual([ID, USER, POSITION]);
      expect(sql).toContain('DELETE FROM tasks WHERE id = $1 AND user_id = $2 RETURNING id');
      expect(sql).toContain('INSERT INTO task_tombstones (user_id, id, position) SELECT $2, $1, $3::bigint WHERE EXISTS (SELECT 1 FROM deleted)');
      expect(sql).toContain('ON CONFLICT (user_id, id) DO UPDATE SET position = GREATEST(task_tombstones.position, EXCLUDED.position)');
      expectNoInterpolation(statement);
    });

    it('deletes only the version a client named in If-Match', () => {
      const statement = deleteStatement(deletion({ expectedVersion: 5 }));
      expect(statement.params).toEqual([ID, USER, POSITION, 5]);
      expect(squash(statement.sql)).toContain('DELETE FROM tasks WHERE id = $1 AND user_id = $2 AND version = $4 RETURNING id');
    });

    it('deletes many, each by its own owner, through aliases, with a tombstone for each task whether or not its row is there', () => {
      const statement = deleteManyStatement([deletion(), deletion({ id: ID_2, userId: OTHER_USER, position: LATER })]);
      const sql = squash(statement.sql);

      expect(statement.params).toEqual([
        [ID, ID_2],
        [USER, OTHER_USER],
        [POSITION, LATER],
      ]);
      expect(sql).toContain('FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS requested(id, user_id, position)');
      expect(sql).toContain('LEFT JOIN task_aliases alias ON alias.id = requested.id AND alias.user_id = requested.user_id');
      expect(sql).toContain('WHERE tasks.id = target.id AND tasks.user_id = target.user_id');
      expect(sql).toContain('INSERT INTO task_tombstones (user_id, id, position) SELECT user_id, id, position FROM target ON CONFLICT (user_id, id) DO UPDATE SET position = GREATEST(task_tombstones.position, EXCLUDED.position)');
      expectNoInterpolation(statement);
    });
  });

  it('records aliases for creates whose key another task of the same user holds, unless they were deleted themselves', () => {
    const statement = keyAliasesStatement([newTask(), newTask({ id: ID_2, userId: OTHER_USER, idempotencyKey: 'other-key-marker' })]);
    const sql = squash(statement.sql);

    expect(statement.params).toEqual([
      [ID, ID_2],
      [USER, OTHER_USER],
      ['idempotency-key-marker', 'other-key-marker'],
    ]);
    expect(sql).toContain('INSERT INTO task_aliases (id, user_id, task_id) SELECT created.id, created.user_id, tasks.id');
    expect(sql).toContain('JOIN tasks ON tasks.user_id = created.user_id AND tasks.idempotency_key = created.idempotency_key AND tasks.id <> created.id');
    expect(sql).toContain('WHERE NOT EXISTS (SELECT 1 FROM task_tombstones s WHERE s.user_id = created.user_id AND s.id = created.id)');
    expectNoInterpolation(statement);
  });
});
