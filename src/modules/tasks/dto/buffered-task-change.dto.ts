import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import {
  DESCRIPTION_MAX_LENGTH,
  TASK_PRIORITIES,
  TASK_STATUSES,
  TITLE_MAX_LENGTH,
  type TaskPriority,
  type TaskStatus,
} from '../task.js';
import type { BufferedTaskChange } from '../tasks.service.js';

/**
 * The answer to an update accepted into the write buffer (202): the task's id and exactly the
 * fields the update will set, with the values they will have (a due date in canonical UTC
 * form). `updatedAt` is the task's `updatedAt` once the update is applied; the version is not
 * shown, since it depends on what is applied before. An update of a task that turns out to be
 * gone when it is replayed is set aside, not applied.
 */
export class BufferedTaskChangeDto {
  @ApiProperty({ format: 'uuid', example: '01936f3e-8b1c-7def-8a12-3456789abcde' })
  id!: string;

  @ApiPropertyOptional({ minLength: 1, maxLength: TITLE_MAX_LENGTH, example: 'Send the report' })
  title?: string;

  @ApiPropertyOptional({ type: 'string', nullable: true, maxLength: DESCRIPTION_MAX_LENGTH })
  description?: string | null;

  @ApiPropertyOptional({ enum: TASK_STATUSES, enumName: 'TaskStatus', example: 'done' })
  status?: TaskStatus;

  @ApiPropertyOptional({ enum: TASK_PRIORITIES, enumName: 'TaskPriority', example: 'high' })
  priority?: TaskPriority;

  @ApiPropertyOptional({
    type: 'string',
    format: 'date-time',
    nullable: true,
    example: '2026-03-01T17:00:00.000Z',
  })
  dueAt?: string | null;

  @ApiProperty({
    format: 'date-time',
    description: "The task's updatedAt once this update is applied",
    example: '2026-02-21T10:30:00.000Z',
  })
  updatedAt!: string;
}

export function toBufferedTaskChangeDto(change: BufferedTaskChange): BufferedTaskChangeDto {
  const dto: BufferedTaskChangeDto = { id: change.id, updatedAt: change.updatedAt };
  if (change.title !== undefined) dto.title = change.title;
  if (change.description !== undefined) dto.description = change.description;
  if (change.status !== undefined) dto.status = change.status;
  if (change.priority !== undefined) dto.priority = change.priority;
  if (change.dueAt !== undefined) dto.dueAt = change.dueAt;
  return dto;
}
