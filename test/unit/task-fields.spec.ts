/**
 * The hand-kept lists of task fields agree with `TASK_FIELDS` (src/modules/tasks/task.ts), so
 * that a field added in one place and forgotten in another fails here rather than in a client
 * (docs/adding-a-task-field.md has the whole checklist):
 *
 * - the entity has the field's column and its position column, and no column nobody listed;
 * - the create and update bodies accept it (validation) and document it (OpenAPI), and the
 *   answers (a task, a buffered update) carry it, also through their mapping functions;
 * - the list cursor's MAC binds every filter the list query accepts;
 * - the buffered operations' payload version was bumped when the fields changed (an operation
 *   already in a buffer has the old shape and must be told apart and upgraded).
 *
 * The schema the migrations build is compared with the entity by test/e2e/schema.e2e-spec.ts, and
 * the repository's statements with TASK_FIELDS by tasks.repository.spec.ts.
 *
 * CI budget: 2 s
 */
import { describe, expect, it } from '@jest/globals';
import { getMetadataStorage } from 'class-validator';
import { getMetadataArgsStorage } from 'typeorm';
import type { BufferedOperation } from '../../src/modules/buffer/operation.js';
import { OperationRegistry } from '../../src/modules/buffer/operation-registry.js';
import { BufferedTaskChangeDto, toBufferedTaskChangeDto } from '../../src/modules/tasks/dto/buffered-task-change.dto.js';
import { CreateTaskDto } from '../../src/modules/tasks/dto/create-task.dto.js';
import { ListTasksQueryDto } from '../../src/modules/tasks/dto/list-tasks.query.js';
import { TaskDto, toTaskDto } from '../../src/modules/tasks/dto/task.dto.js';
import { UpdateTaskDto } from '../../src/modules/tasks/dto/update-task.dto.js';
import { TaskCursorCodec, type CursorScope } from '../../src/modules/tasks/task-cursor.js';
import { TaskEntity } from '../../src/modules/tasks/task.entity.js';
import { TASK_CREATE, TASK_DELETE, TASK_UPDATE, TaskOperations } from '../../src/modules/tasks/task-operations.js';
import { TASK_FIELD_NAMES, TASK_FIELDS, type Task } from '../../src/modules/tasks/task.js';
import type { BufferedTaskChange } from '../../src/modules/tasks/tasks.service.js';

/** Columns of `tasks` that no client sets: the row's identity, bookkeeping and idempotency. */
const SYSTEM_COLUMNS = ['id', 'user_id', 'created_at', 'updated_at', 'version', 'idempotency_key'];
/** What a task answer shows beside the fields a client sets. */
const TASK_ANSWER_EXTRAS = ['id', 'createdAt', 'updatedAt', 'version'];
/** What the answer to a buffered update shows beside the fields it sets. */
const BUFFERED_CHANGE_EXTRAS = ['id', 'updatedAt'];
/** List query parameters that are not filters (the cursor's MAC binds `sort` on its own). */
const LIST_PARAMETERS_NOT_FILTERS = ['sort', 'limit', 'cursor'];

/**
 * The task fields each payload version of the buffered task operations carries. Adding a field
 * changes a create's payload: bump the version in task-operations.ts, register the upgrade from
 * the previous one (what an operation already in a buffer gets for the new field), and add the
 * new version's line here.
 */
const FIELDS_BY_PAYLOAD_VERSION: Record<number, readonly string[]> = {
  1: ['title', 'description', 'status', 'priority', 'dueAt'],
  2: ['title', 'description', 'status', 'priority', 'dueAt'],
};

const sorted = (names: Iterable<string>) => [...names].sort();

function entityColumns(): string[] {
  return getMetadataArgsStorage()
    .columns.filter((column) => column.target === TaskEntity)
    .map((column) => column.options.name ?? column.propertyName);
}

/** Properties class-validator checks on a body (what the API accepts). */
function validatedProperties(dto: new () => object): string[] {
  return [...new Set(getMetadataStorage().getTargetValidationMetadatas(dto, '', true, false).map((m) => m.propertyName))];
}

/** Properties the OpenAPI document shows for a DTO. */
function documentedProperties(dto: new () => object): string[] {
  const names = (Reflect.getMetadata('swagger/apiModelPropertiesArray', dto.prototype) ?? []) as string[];
  return names.map((name) => name.replace(/^:/, ''));
}

/** An object with a distinct marker for every task field. */
function markers(): Record<string, string> {
  return Object.fromEntries(TASK_FIELD_NAMES.map((field) => [field, `marker-${field}`]));
}

describe('task fields', () => {
  it('are columns of the entity, each with its position column, and the entity has no other column', () => {
    const columns = entityColumns();
    const fieldColumns = TASK_FIELD_NAMES.flatMap((field) => [TASK_FIELDS[field].column, TASK_FIELDS[field].positionColumn]);
    expect(sorted(columns)).toEqual(sorted([...SYSTEM_COLUMNS, ...fieldColumns]));
  });

  it('are what a create and an update accept and document', () => {
    for (const dto of [CreateTaskDto, UpdateTaskDto]) {
      expect({ dto: dto.name, accepted: sorted(validatedProperties(dto)) }).toEqual({ dto: dto.name, accepted: sorted(TASK_FIELD_NAMES) });
      expect({ dto: dto.name, documented: sorted(documentedProperties(dto)) }).toEqual({ dto: dto.name, documented: sorted(TASK_FIELD_NAMES) });
    }
  });

  it('are in a task answer, documented and mapped', () => {
    expect(sorted(documentedProperties(TaskDto))).toEqual(sorted([...TASK_FIELD_NAMES, ...TASK_ANSWER_EXTRAS]));
    const task = { ...markers(), id: 'id', userId: 'user', createdAt: 'c', updatedAt: 'u', version: 1 } as unknown as Task;
    expect(toTaskDto(task)).toEqual({ ...markers(), id: 'id', createdAt: 'c', updatedAt: 'u', version: 1 });
  });

  it('are in the answer to a buffered update, documented and mapped', () => {
    expect(sorted(documentedProperties(BufferedTaskChangeDto))).toEqual(sorted([...TASK_FIELD_NAMES, ...BUFFERED_CHANGE_EXTRAS]));
    const change = { ...markers(), id: 'id', updatedAt: 'u' } as unknown as BufferedTaskChange;
    expect(toBufferedTaskChangeDto(change)).toEqual({ ...markers(), id: 'id', updatedAt: 'u' });
  });

  it('filter a listing only through the cursor MAC: a cursor is refused once any filter changes', () => {
    const filters = documentedProperties(ListTasksQueryDto).filter((name) => !LIST_PARAMETERS_NOT_FILTERS.includes(name));
    expect(filters.length).toBeGreaterThan(0);
    const codec = new TaskCursorCodec(Buffer.alloc(32, 7));
    const scope: CursorScope = { userId: 'u1', sort: '-createdAt' };
    const cursor = codec.encode({ key: '2026-01-01T00:00:00.000Z', id: '01936f3e-8b1c-7def-8a12-3456789abcde' }, scope);
    expect(codec.decode(cursor, scope)).toEqual({ key: '2026-01-01T00:00:00.000Z', id: '01936f3e-8b1c-7def-8a12-3456789abcde' });
    for (const filter of filters) {
      const changed = { ...scope, [filter]: `value-of-${filter}` } as CursorScope;
      expect({ filter, decoded: attempt(() => codec.decode(cursor, changed)) }).toEqual({ filter, decoded: 'refused' });
    }
  });

  it('are those of the current payload version of the buffered task operations', () => {
    const registry = new OperationRegistry();
    new TaskOperations(registry, {} as never, {} as never, {} as never).onModuleInit();
    const versions = [TASK_CREATE, TASK_UPDATE, TASK_DELETE].map(
      (kind) => registry.stamp({ kind } as BufferedOperation).version,
    );
    expect(new Set(versions).size).toBe(1);
    const current = versions[0]!;
    expect({ version: current, fields: FIELDS_BY_PAYLOAD_VERSION[current] }).toEqual({ version: current, fields: TASK_FIELD_NAMES });
  });
});

function attempt(work: () => unknown): 'accepted' | 'refused' {
  try {
    work();
    return 'accepted';
  } catch {
    return 'refused';
  }
}
