import { ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsIn, IsInt, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';
import {
  DEFAULT_PAGE_SIZE,
  DEFAULT_TASK_SORT,
  MAX_PAGE_SIZE,
  TASK_PRIORITIES,
  TASK_SORTS,
  TASK_STATUSES,
  TITLE_MAX_LENGTH,
  type TaskPriority,
  type TaskSort,
  type TaskStatus,
} from '../task.js';
import { IsText } from './task-validators.js';

/** Only plain decimal digits become a number; anything else ("1e2", "", "abc") fails as it is. */
const toInteger = ({ value }: { value: unknown }) =>
  typeof value === 'string' && /^\d{1,6}$/.test(value) ? Number(value) : value;

/** An empty search (`?q=`, as a search box sends it) means no search. */
const emptyToUndefined = ({ value }: { value: unknown }) => (value === '' ? undefined : value);

/** Query of `GET /api/v1/tasks`. Unknown parameters are a 400. */
export class ListTasksQueryDto {
  @ApiPropertyOptional({
    enum: TASK_STATUSES,
    enumName: 'TaskStatus',
    description: 'Only tasks with this status',
  })
  @IsOptional()
  @IsIn(TASK_STATUSES)
  status?: TaskStatus;

  @ApiPropertyOptional({
    enum: TASK_PRIORITIES,
    enumName: 'TaskPriority',
    description: 'Only tasks with this priority',
  })
  @IsOptional()
  @IsIn(TASK_PRIORITIES)
  priority?: TaskPriority;

  @ApiPropertyOptional({
    description:
      'Only tasks whose title contains this text, ignoring case. Every character is literal, `%`, `_` and `\\` included (`50%` finds "50% done"). Empty means no search. A text without three letters or digits in a row (`ab`, `50%`, `#`) is looked for in a bounded run of your tasks per page: such a page may hold fewer than `limit` tasks, even none, and still have a `nextCursor` that continues the search.',
    maxLength: TITLE_MAX_LENGTH,
  })
  @Transform(emptyToUndefined)
  @IsOptional()
  @IsText(1, TITLE_MAX_LENGTH)
  q?: string;

  @ApiPropertyOptional({
    enum: TASK_SORTS,
    default: DEFAULT_TASK_SORT,
    description:
      'Sort key, `-` for descending; ties are broken by id in the same direction. Tasks without a due date come last in both `dueAt` and `-dueAt`.',
  })
  @IsOptional()
  @IsIn(TASK_SORTS)
  sort?: TaskSort;

  @ApiPropertyOptional({
    type: 'integer',
    minimum: 1,
    maximum: MAX_PAGE_SIZE,
    default: DEFAULT_PAGE_SIZE,
  })
  @Transform(toInteger)
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(MAX_PAGE_SIZE)
  limit?: number;

  @ApiPropertyOptional({
    description:
      "Opaque: the previous page's `nextCursor`, valid only with the same filters and sort. A cursor that was altered, or comes from another query, is a 400.",
    maxLength: 512,
  })
  @IsOptional()
  @IsString()
  @MaxLength(512)
  cursor?: string;
}
