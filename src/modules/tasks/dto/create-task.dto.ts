import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsOptional, ValidateIf } from 'class-validator';
import {
  DESCRIPTION_MAX_LENGTH,
  TASK_PRIORITIES,
  TASK_STATUSES,
  TITLE_MAX_LENGTH,
  type TaskPriority,
  type TaskStatus,
} from '../task.js';
import { IsIsoDateTime, IsText, Trim } from './task-validators.js';

export const TITLE_DOC = {
  description: `1–${TITLE_MAX_LENGTH} characters (Unicode code points) after leading and trailing whitespace is removed`,
  minLength: 1,
  maxLength: TITLE_MAX_LENGTH,
  example: 'Write the quarterly report',
};
export const DESCRIPTION_DOC = {
  type: 'string',
  nullable: true,
  description: `Up to ${DESCRIPTION_MAX_LENGTH} characters, stored as sent; null for none`,
  maxLength: DESCRIPTION_MAX_LENGTH,
  example: 'Numbers from finance are in the shared folder.',
} as const;
export const DUE_AT_DOC = {
  type: 'string',
  format: 'date-time',
  nullable: true,
  description:
    'ISO 8601 date-time with an offset (`Z` or `±hh:mm`), or a date alone meaning midnight UTC; stored and returned in UTC with milliseconds. null for none.',
  example: '2026-03-01T17:00:00.000Z',
} as const;

/** Body of `POST /api/v1/tasks`. Any other field (id, userId, version, timestamps, …) is a 400. */
export class CreateTaskDto {
  @ApiProperty(TITLE_DOC)
  @Trim()
  @IsText(1, TITLE_MAX_LENGTH)
  title!: string;

  @ApiPropertyOptional(DESCRIPTION_DOC)
  @IsOptional()
  @IsText(0, DESCRIPTION_MAX_LENGTH)
  description?: string | null;

  @ApiPropertyOptional({
    enum: TASK_STATUSES,
    enumName: 'TaskStatus',
    default: 'todo',
    example: 'todo',
  })
  @ValidateIf((dto: CreateTaskDto) => dto.status !== undefined)
  @IsIn(TASK_STATUSES)
  status?: TaskStatus;

  @ApiPropertyOptional({
    enum: TASK_PRIORITIES,
    enumName: 'TaskPriority',
    default: 'medium',
    example: 'high',
  })
  @ValidateIf((dto: CreateTaskDto) => dto.priority !== undefined)
  @IsIn(TASK_PRIORITIES)
  priority?: TaskPriority;

  @ApiPropertyOptional(DUE_AT_DOC)
  @IsOptional()
  @IsIsoDateTime()
  dueAt?: string | null;
}
