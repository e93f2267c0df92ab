import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional, ValidateIf } from 'class-validator';
import {
  DESCRIPTION_MAX_LENGTH,
  TASK_PRIORITIES,
  TASK_STATUSES,
  TITLE_MAX_LENGTH,
  type TaskPriority,
  type TaskStatus,
} from '../task.js';
import { DESCRIPTION_DOC, DUE_AT_DOC, TITLE_DOC } from './create-task.dto.js';
import { IsIsoDateTime, IsText, Trim } from './task-validators.js';

/**
 * Body of `PATCH /api/v1/tasks/{id}`: the fields to change, at least one. An absent field is
 * left as it is; `description` and `dueAt` are cleared with null, the others cannot be null.
 */
export class UpdateTaskDto {
  @ApiPropertyOptional(TITLE_DOC)
  @ValidateIf((dto: UpdateTaskDto) => dto.title !== undefined)
  @Trim()
  @IsText(1, TITLE_MAX_LENGTH)
  title?: string;

  @ApiPropertyOptional(DESCRIPTION_DOC)
  @IsOptional()
  @IsText(0, DESCRIPTION_MAX_LENGTH)
  description?: string | null;

  @ApiPropertyOptional({ enum: TASK_STATUSES, enumName: 'TaskStatus', example: 'in_progress' })
  @ValidateIf((dto: UpdateTaskDto) => dto.status !== undefined)
  @IsIn(TASK_STATUSES)
  status?: TaskStatus;

  @ApiPropertyOptional({ enum: TASK_PRIORITIES, enumName: 'TaskPriority', example: 'high' })
  @ValidateIf((dto: UpdateTaskDto) => dto.priority !== undefined)
  @IsIn(TASK_PRIORITIES)
  priority?: TaskPriority;

  @ApiPropertyOptional(DUE_AT_DOC)
  @IsOptional()
  @IsIsoDateTime()
  dueAt?: string | null;
}
