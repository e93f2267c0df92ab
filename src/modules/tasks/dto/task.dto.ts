import { ApiProperty } from '@nestjs/swagger';
import {
  DESCRIPTION_MAX_LENGTH,
  TASK_PRIORITIES,
  TASK_STATUSES,
  TITLE_MAX_LENGTH,
  type Task,
  type TaskPriority,
  type TaskStatus,
} from '../task.js';

/** A task as clients see it (the OpenAPI document's `Task`); never its owner or idempotency key. */
export class TaskDto {
  @ApiProperty({
    format: 'uuid',
    description: 'UUIDv7',
    example: '01936f3e-8b1c-7def-8a12-3456789abcde',
  })
  id!: string;

  @ApiProperty({ minLength: 1, maxLength: TITLE_MAX_LENGTH, example: 'Write the quarterly report' })
  title!: string;

  @ApiProperty({
    type: 'string',
    nullable: true,
    maxLength: DESCRIPTION_MAX_LENGTH,
    example: 'Numbers from finance are in the shared folder.',
  })
  description!: string | null;

  @ApiProperty({ enum: TASK_STATUSES, enumName: 'TaskStatus', example: 'todo' })
  status!: TaskStatus;

  @ApiProperty({ enum: TASK_PRIORITIES, enumName: 'TaskPriority', example: 'medium' })
  priority!: TaskPriority;

  @ApiProperty({
    type: 'string',
    format: 'date-time',
    nullable: true,
    example: '2026-03-01T17:00:00.000Z',
  })
  dueAt!: string | null;

  @ApiProperty({ format: 'date-time', example: '2026-02-20T09:15:00.000Z' })
  createdAt!: string;

  @ApiProperty({ format: 'date-time', example: '2026-02-21T10:30:00.000Z' })
  updatedAt!: string;

  @ApiProperty({
    type: 'integer',
    minimum: 1,
    description: 'Starts at 1, grows by one on every change; the ETag',
    example: 1,
  })
  version!: number;
}

export class TaskPageDto {
  @ApiProperty({ type: [TaskDto] })
  items!: TaskDto[];

  @ApiProperty({
    type: 'string',
    nullable: true,
    description:
      'Pass as `cursor` for the next page; null on the last page. Only null ends the listing: a search for a short text (see `q`) may answer fewer than `limit` tasks, even none, before its last page.',
    example:
      'WyIyMDI2LTAyLTIwVDA5OjE1OjAwLjAwMFoiLCIwMTkzNmYzZS04YjFjLTdkZWYtOGExMi0zNDU2Nzg5YWJjZGUiXQ.3q2-7wAAAAAAAAAAAAAAAA',
  })
  nextCursor!: string | null;
}

export function toTaskDto(task: Task): TaskDto {
  return {
    id: task.id,
    title: task.title,
    description: task.description,
    status: task.status,
    priority: task.priority,
    dueAt: task.dueAt,
    createdAt: task.createdAt,
    updatedAt: task.updatedAt,
    version: task.version,
  };
}
