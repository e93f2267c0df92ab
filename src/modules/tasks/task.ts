/**
 * Tasks as the domain sees them, and the changes the write use cases build. Everything here is
 * plain serialisable data (timestamps as ISO 8601 UTC strings): a change is complete before it
 * is applied, so the offline buffer can store it as it is and apply it later.
 */

export const TASK_STATUSES = ['todo', 'in_progress', 'done'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const TASK_PRIORITIES = ['low', 'medium', 'high'] as const;
export type TaskPriority = (typeof TASK_PRIORITIES)[number];

export const TASK_SORTS = [
  'createdAt',
  '-createdAt',
  'dueAt',
  '-dueAt',
  'priority',
  '-priority',
] as const;
export type TaskSort = (typeof TASK_SORTS)[number];
export const DEFAULT_TASK_SORT: TaskSort = '-createdAt';

export const TITLE_MAX_LENGTH = 200;
export const DESCRIPTION_MAX_LENGTH = 10_000;
export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

/** A stored task, owner included. */
export interface Task {
  id: string;
  userId: string;
  title: string;
  description: string | null;
  status: TaskStatus;
  priority: TaskPriority;
  dueAt: string | null;
  createdAt: string;
  updatedAt: string;
  version: number;
}

/** The fields a client may set. */
export interface TaskFields {
  title: string;
  description: string | null;
  status: TaskStatus;
  priority: TaskPriority;
  dueAt: string | null;
}

/**
 * Every field a client may set, with its column and the column of its position (the one list
 * the repository builds its statements from; a test checks that the DTOs, the entity and the
 * migrations agree with it). Adding a field: docs/adding-a-task-field.md.
 */
export const TASK_FIELDS = {
  title: { column: 'title', positionColumn: 'title_pos' },
  description: { column: 'description', positionColumn: 'description_pos' },
  status: { column: 'status', positionColumn: 'status_pos' },
  priority: { column: 'priority', positionColumn: 'priority_pos' },
  dueAt: { column: 'due_at', positionColumn: 'due_at_pos' },
} as const satisfies Record<keyof TaskFields, { column: string; positionColumn: string }>;

export const TASK_FIELD_NAMES = Object.keys(TASK_FIELDS) as (keyof TaskFields)[];

export type TaskPatch = Partial<TaskFields>;

/** A create, complete: applied with `INSERT … ON CONFLICT DO NOTHING`. */
export interface NewTask extends Task {
  /** The client's `Idempotency-Key`, unique per user; null when none was sent. */
  idempotencyKey: string | null;
  /**
   * Every field's position until a later write changes it: null (older than any position) for
   * every create this release accepts. A create comes before every other write of its task
   * whatever the clocks say (the task's id is chosen when the create is accepted, so no write can
   * name it earlier), so its fields need no place in the order; one taken from a replica's clock
   * could even beat a later update through a replica whose clock runs behind. Entries the previous
   * release buffered carry a position, applied as given.
   */
  position: string | null;
}

/**
 * An update, complete: each field of `changes` is set unless the stored field was last written
 * at a later position (docs/design/replicas.md, section 2). With `expectedVersion` (a client's
 * `If-Match`) it applies only to that version.
 */
export interface TaskUpdate {
  id: string;
  userId: string;
  changes: TaskPatch;
  position: string;
  expectedVersion: number | null;
}

/** A delete, complete; `expectedVersion` guards it when the client sent `If-Match`. */
export interface TaskDeletion {
  id: string;
  userId: string;
  position: string;
  expectedVersion: number | null;
}

/** A client's `If-Match`: the task must exist (`*`) or have one of these versions. */
export type VersionCondition = '*' | readonly number[];

/** Where a page starts: the sort key and id of the last task of the previous page. */
export interface TaskPageStart {
  /** ISO time for createdAt and dueAt (null: no due date), the rank 1–3 for priority. */
  key: string | number | null;
  id: string;
}

export interface TaskFilter {
  status?: TaskStatus;
  priority?: TaskPriority;
  /** Substring of the title, case-insensitive; `%`, `_` and `\` are literal. */
  q?: string;
}

export interface TaskPage {
  items: Task[];
  nextCursor: string | null;
}

/** Priorities are stored as ranks so that ordering by the column means low < medium < high. */
const PRIORITY_RANK: Record<TaskPriority, number> = { low: 1, medium: 2, high: 3 };

export function priorityRank(priority: TaskPriority): number {
  return PRIORITY_RANK[priority];
}

export function priorityOfRank(rank: number): TaskPriority {
  const priority = TASK_PRIORITIES[rank - 1];
  if (!priority) throw new Error(`unknown priority rank: ${rank}`);
  return priority;
}

/** The value a task has for a sort's key, as it goes into a cursor. */
export function sortKeyOf(task: Task, sort: TaskSort): string | number | null {
  switch (sort) {
    case 'createdAt':
    case '-createdAt':
      return task.createdAt;
    case 'dueAt':
    case '-dueAt':
      return task.dueAt;
    case 'priority':
    case '-priority':
      return priorityRank(task.priority);
  }
}
