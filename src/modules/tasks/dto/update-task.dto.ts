import { IsOptional, ValidateIf } from 'class-validator';
import { RequestBodySchema } from '../../../common/http/request-schema.js';
import { TASK_PRIORITIES, TASK_STATUSES, type TaskPriority, type TaskStatus } from '../task.js';
import { DESCRIPTION_DOC, DESCRIPTION_RULE, TITLE_DOC, TITLE_RULE } from './create-task.dto.js';
import { DueAtField, EnumField, TextField, Trimmed } from './task-validators.js';

/**
 * Body of `PATCH /api/v1/tasks/{id}`: the fields to change, at least one (`minProperties: 1` in
 * the document). An absent field is left as it is; `description` and `dueAt` are cleared with
 * null, the others cannot be null.
 */
@RequestBodySchema({ minProperties: 1 })
export class UpdateTaskDto {
  @TextField(TITLE_RULE, { ...TITLE_DOC, required: false })
  @ValidateIf((dto: UpdateTaskDto) => dto.title !== undefined)
  @Trimmed()
  title?: string;

  @TextField(DESCRIPTION_RULE, { ...DESCRIPTION_DOC, required: false })
  @IsOptional()
  description?: string | null;

  @EnumField(TASK_STATUSES, 'TaskStatus', { example: 'in_progress' })
  status?: TaskStatus;

  @EnumField(TASK_PRIORITIES, 'TaskPriority', { example: 'high' })
  priority?: TaskPriority;

  @DueAtField()
  dueAt?: string | null;
}
