/**
 * Validation rules of task fields that class-validator does not have as such, each with its
 * schema in the OpenAPI document. Text fields use the common `TextField` (code-point lengths,
 * patterns), as every field stored in PostgreSQL does.
 */
import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, ValidateBy } from 'class-validator';
import { DATE_PATTERN, DATE_TIME_PATTERN, parseIsoInstant } from '../iso-time.js';

export { TextField, Trimmed } from '../../../common/http/text-validators.js';

const DUE_AT_MESSAGE =
  'must be an ISO 8601 date-time with seconds and an offset, such as 2026-03-01T17:00:00Z, or a date alone, such as 2026-03-01';

export function IsIsoDateTime(): PropertyDecorator {
  return ValidateBy({
    name: 'isIsoDateTime',
    validator: {
      validate: (value: unknown) => typeof value === 'string' && parseIsoInstant(value) !== undefined,
      defaultMessage: (args) => `${args?.property ?? 'value'} ${DUE_AT_MESSAGE}`,
    },
  });
}

/**
 * `dueAt` of a request: an RFC 3339 date-time or a date alone, or null. The schema says both
 * forms (`anyOf`), each with the pattern that bounds it as the server does.
 */
export function DueAtField(): PropertyDecorator {
  return applyDecorators(
    ApiPropertyOptional({
      type: 'string',
      nullable: true,
      anyOf: [
        { type: 'string', format: 'date-time', pattern: DATE_TIME_PATTERN },
        { type: 'string', format: 'date', pattern: DATE_PATTERN },
      ],
      description:
        'An RFC 3339 date-time with seconds and an offset (`Z` or `±hh:mm`, fractions optional), or a date alone meaning midnight UTC, in the years 0001–9999; stored and returned in UTC with milliseconds. null for none.',
      example: '2026-03-01T17:00:00.000Z',
    }),
    IsOptional(),
    IsIsoDateTime(),
  );
}

/** A field holding one of `values`; absent when not `required`, never null. */
export function EnumField(
  values: readonly string[],
  enumName: string,
  options: { required?: boolean; description?: string; example?: string },
): PropertyDecorator {
  const { required = false, ...doc } = options;
  const schema = { enum: [...values], enumName, ...doc };
  return applyDecorators(
    required ? ApiProperty(schema) : ApiPropertyOptional(schema),
    ValidateBy({
      name: 'isIn',
      constraints: [values],
      validator: {
        validate: (value: unknown) => (!required && value === undefined) || (typeof value === 'string' && values.includes(value)),
        defaultMessage: (args) => `${args?.property ?? 'value'} must be one of the following values: ${values.join(', ')}`,
      },
    }),
  );
}
