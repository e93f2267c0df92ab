/**
 * Every migration, in order. Listed as classes (not a glob) so that the same list serves the
 * compiled server, the tests running from source and the TypeORM CLI.
 */
import { CreateUsers1764000000000 } from './1764000000000-create-users.js';
import { CreateTasks1764100000000 } from './1764100000000-create-tasks.js';
import { CreateBufferAppliedOperations1764200000000 } from './1764200000000-create-buffer-applied-operations.js';
import { TaskUpdatedAtMicroseconds1764300000000 } from './1764300000000-task-updated-at-microseconds.js';
import { CreateTaskAliases1764400000000 } from './1764400000000-create-task-aliases.js';
import { ReplicaPositions1765000000000 } from './1765000000000-replica-positions.js';
import { TaskTitleSearchIndex1765900000000 } from './1765900000000-task-title-search-index.js';
import { TaskStatusPriorityIndex1765900100000 } from './1765900100000-task-status-priority-index.js';
import { TaskCreatedAtCoveringIndex1766000000000 } from './1766000000000-task-created-at-covering-index.js';
import { TaskTitleTrigramByOwner1766100000000 } from './1766100000000-task-title-trigram-by-owner.js';

export const MIGRATIONS = [
  CreateUsers1764000000000,
  CreateTasks1764100000000,
  CreateBufferAppliedOperations1764200000000,
  TaskUpdatedAtMicroseconds1764300000000,
  CreateTaskAliases1764400000000,
  ReplicaPositions1765000000000,
  TaskTitleSearchIndex1765900000000,
  TaskStatusPriorityIndex1765900100000,
  TaskCreatedAtCoveringIndex1766000000000,
  TaskTitleTrigramByOwner1766100000000,
];
