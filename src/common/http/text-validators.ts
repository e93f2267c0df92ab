/**
 * Text fields as PostgreSQL stores them.
 *
 * Lengths count Unicode code points, as PostgreSQL's `varchar(n)` does: class-validator's
 * `MaxLength` counts differently (it discounts variation selectors), so a value it accepts could
 * still overflow the column and fail as a 500. NUL characters are refused for the same reason:
 * PostgreSQL text cannot hold them.
 */
import { ValidateBy, type ValidationOptions } from 'class-validator';

export function IsText(min: number, max: number, options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isText',
      constraints: [min, max],
      validator: {
        validate: (value: unknown) => textProblem(value, min, max) === undefined,
        defaultMessage: (args) =>
          `${args?.property ?? 'value'} ${textProblem(args?.value, min, max) ?? 'is invalid'}`,
      },
    },
    options,
  );
}

export function codePointLength(value: string): number {
  let length = value.length;
  for (let i = 0; i < value.length; i += 1) {
    const unit = value.charCodeAt(i);
    // A high surrogate followed by a low one is a single code point.
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        length -= 1;
        i += 1;
      }
    }
  }
  return length;
}

function textProblem(value: unknown, min: number, max: number): string | undefined {
  if (typeof value !== 'string') return 'must be a string';
  if (value.includes('\u0000')) return 'must not contain NUL characters';
  const length = codePointLength(value);
  if (length < min) {
    return min === 1 ? 'must not be empty' : `must be longer than or equal to ${min} characters`;
  }
  if (length > max) return `must be shorter than or equal to ${max} characters`;
  return undefined;
}
