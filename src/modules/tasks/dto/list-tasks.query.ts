import { ApiPropertyOptional } from '@nestjs/swagger';
// No examples on the query: Swagger UI's "Try it out" would send them (a cursor from nowhere).
import { Transform } from 'class-transformer';
import { IsOptional, ValidateBy } from 'class-validator';
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
import { EnumField, TextField } from './task-validators.js';

/** Only plain decimal digits become a number; anything else ("1e2", "", "abc") fails as it is. */
const toInteger = ({ value }: { value: unknown }) =>
  typeof value === 'string' && /^\d{1,6}$/.test(value) ? Number(value) : value;

/** An empty search (`?q=`, as a search box sends it) means no search. */
const emptyToUndefined = ({ value }: { value: unknown }) => (value === '' ? undefined : value);

/** An integer from `min` to `max`, whose message names the rule that failed. */
function IsIntegerBetween(min: number, max: number): PropertyDecorator {
  const problem = (value: unknown) => {
    if (typeof value !== 'number' || !Number.isInteger(value)) return 'must be an integer';
    if (value < min) return `must not be less than ${min}`;
    if (value > max) return `must not be greater than ${max}`;
    return undefined;
  };
  return ValidateBy({
    name: 'isIntegerBetween',
    constraints: [min, max],
    validator: {
      validate: (value: unknown) => problem(value) === undefined,
      defaultMessage: (args) => `${args?.property ?? 'value'} ${problem(args?.value) ?? 'is invalid'}`,
    },
  });
}

/**
 * Query of `GET /api/v1/tasks`. Unknown parameters are a 400, and so is a parameter given twice.
 */
export class ListTasksQueryDto {
  @EnumField(TASK_STATUSES, 'TaskStatus', { description: 'Only tasks with this status' })
  status?: TaskStatus;

  @EnumField(TASK_PRIORITIES, 'TaskPriority', { description: 'Only tasks with this priority' })
  priority?: TaskPriority;

  @TextField(
    { minLength: 0, maxLength: TITLE_MAX_LENGTH, pattern: 'storable' },
    {
      required: false,
      description:
        'Only tasks whose title contains this text, ignoring case. Every character is literal, `%`, `_` and `\\` included (`50%` finds "50% done"). Empty means no search. A text without three letters or digits in a row (`ab`, `50%`, `#`) is looked for in a bounded run of your tasks per page: such a page may hold fewer than `limit` tasks, even none, and still have a `nextCursor` that continues the search.',
    },
  )
  @Transform(emptyToUndefined)
  @IsOptional()
  q?: string;

  @EnumField(TASK_SORTS, 'TaskSort', {
    description: `Sort key, \`-\` for descending; ties are broken by id in the same direction. Tasks without a due date come last in both \`dueAt\` and \`-dueAt\`. Default: \`${DEFAULT_TASK_SORT}\`.`,
  })
  sort?: TaskSort;

  // No `default` in the schema, as for every optional request field: the default is told.
  @ApiPropertyOptional({
    type: 'integer',
    minimum: 1,
    maximum: MAX_PAGE_SIZE,
    description: `Tasks per page (decimal digits). Default: ${DEFAULT_PAGE_SIZE}.`,
  })
  @Transform(toInteger)
  @IsOptional()
  @IsIntegerBetween(1, MAX_PAGE_SIZE)
  limit?: number;

  @TextField(
    { minLength: 0, maxLength: 512, pattern: 'any' },
    {
      required: false,
      description:
        "Opaque: the previous page's `nextCursor`, valid only with the same filters and sort. A cursor that was altered, or comes from another query, is a 400.",
    },
  )
  @IsOptional()
  cursor?: string;
}
