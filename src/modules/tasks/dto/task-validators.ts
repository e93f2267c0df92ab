/**
 * Validation rules of task fields that class-validator does not have as such. Text fields use
 * the common `IsText` (code-point lengths, no NUL), as every field stored in PostgreSQL does.
 */
import { Transform } from 'class-transformer';
import { ValidateBy, type ValidationOptions } from 'class-validator';
import { parseIsoInstant } from '../iso-time.js';

export { IsText } from '../../../common/http/text-validators.js';

export function IsIsoDateTime(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isIsoDateTime',
      validator: {
        validate: (value: unknown) =>
          typeof value === 'string' && parseIsoInstant(value) !== undefined,
        defaultMessage: (args) =>
          `${args?.property ?? 'value'} must be an ISO 8601 date-time with an offset, such as 2026-03-01T17:00:00Z`,
      },
    },
    options,
  );
}

/** Removes leading and trailing whitespace of a string; leaves anything else to the validators. */
export const Trim = (): PropertyDecorator =>
  Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value));
