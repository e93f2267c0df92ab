import { IsOptional } from 'class-validator';
import type { TextRule } from '../../../common/http/text-validators.js';
import {
  DESCRIPTION_MAX_LENGTH,
  TASK_PRIORITIES,
  TASK_STATUSES,
  TITLE_MAX_LENGTH,
  type TaskPriority,
  type TaskStatus,
} from '../task.js';
import { DueAtField, EnumField, TextField, Trimmed } from './task-validators.js';

export const TITLE_RULE: TextRule = { minLength: 1, maxLength: TITLE_MAX_LENGTH, pattern: 'notBlank' };
export const DESCRIPTION_RULE: TextRule = { minLength: 0, maxLength: DESCRIPTION_MAX_LENGTH, pattern: 'storable' };

export const TITLE_DOC = {
  description: `1–${TITLE_MAX_LENGTH} characters (Unicode code points, counted as sent), not all whitespace; stored without leading and trailing whitespace`,
  example: 'Write the quarterly report',
};
export const DESCRIPTION_DOC = {
  nullable: true,
  description: `Up to ${DESCRIPTION_MAX_LENGTH} characters, stored as sent; null for none`,
  example: 'Numbers from finance are in the shared folder.',
};

/** Body of `POST /api/v1/tasks`. Any other field (id, userId, version, timestamps, …) is a 400. */
export class CreateTaskDto {
  @TextField(TITLE_RULE, TITLE_DOC)
  @Trimmed()
  title!: string;

  @TextField(DESCRIPTION_RULE, { ...DESCRIPTION_DOC, required: false })
  @IsOptional()
  description?: string | null;

  // No `default` in the schema: generated clients would make the field required.
  @EnumField(TASK_STATUSES, 'TaskStatus', { description: 'Default: `todo`', example: 'todo' })
  status?: TaskStatus;

  @EnumField(TASK_PRIORITIES, 'TaskPriority', { description: 'Default: `medium`', example: 'high' })
  priority?: TaskPriority;

  @DueAtField()
  dueAt?: string | null;
}
