/**
 * The global validation pipe: DTOs are whitelisted (an unknown field is a 400, never stored),
 * transformed to their classes, and failures become `VALIDATION_FAILED` with one entry per field.
 */
import { ValidationPipe, type ArgumentMetadata, type ValidationError } from '@nestjs/common';
import { ValidationFailedError, type FieldError } from '../errors/domain-errors.js';

/**
 * Deeper than any DTO goes. class-transformer and class-validator recurse into whatever they
 * are given: a body of a few thousand nested arrays (well under the size limit) overflows the
 * stack, which would be a 500.
 */
export const MAX_NESTING_DEPTH = 32;

/**
 * Refuses, before class-transformer and class-validator see it, input they cannot take: nesting
 * deeper than any DTO (it overflows their recursion) and text that is not well-formed Unicode.
 * A lone surrogate makes validator.js's `isEmail` throw (a 500), and PostgreSQL could only store
 * it as U+FFFD, silently changing what the client sent.
 */
class ScreeningValidationPipe extends ValidationPipe {
  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    if (metadata.type !== 'custom') {
      const refusal = screen(value, MAX_NESTING_DEPTH);
      if (refusal) throw refusal;
    }
    return super.transform(value, metadata);
  }
}

export function createValidationPipe(): ValidationPipe {
  return new ScreeningValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    forbidUnknownValues: true,
    transform: true,
    stopAtFirstError: true,
    validationError: { target: false, value: false },
    exceptionFactory: (errors) => {
      const fields = flatten(errors);
      const first = fields[0];
      return new ValidationFailedError(
        first ? `${first.field} ${first.message}` : 'the request is invalid',
        fields,
      );
    },
  });
}

function flatten(errors: ValidationError[], parent = ''): FieldError[] {
  return errors.flatMap((error) => {
    const field = parent ? `${parent}.${error.property}` : error.property;
    const own = Object.values(error.constraints ?? {}).map((message) => ({
      field,
      message: withoutFieldName(message, error.property),
    }));
    return [...own, ...flatten(error.children ?? [], field)];
  });
}

/** class-validator says "title must be …"; the field is already named beside the message. */
function withoutFieldName(message: string, property: string): string {
  if (message.startsWith('property ') && message.endsWith(' should not exist')) {
    return 'is not an allowed field';
  }
  return message.startsWith(`${property} `) ? message.slice(property.length + 1) : message;
}

/**
 * The first reason to refuse `value` outright, if any: objects or arrays nested deeper than
 * `limit`, or a string (value or key) that is not well-formed Unicode. Iterative, so any depth
 * is safe.
 */
export function screen(value: unknown, limit: number): ValidationFailedError | undefined {
  const stack: [unknown, number, string][] = [[value, 0, '']];
  while (stack.length > 0) {
    const [current, depth, path] = stack.pop()!;
    if (typeof current === 'string') {
      if (!current.isWellFormed()) {
        return ValidationFailedError.forField(path || 'value', 'must be well-formed Unicode text');
      }
      continue;
    }
    if (typeof current !== 'object' || current === null) continue;
    if (depth >= limit)
      return new ValidationFailedError(`the input is nested more than ${limit} levels deep`);
    for (const [key, child] of Object.entries(current)) {
      const childPath = path ? `${path}.${key}` : key;
      if (!key.isWellFormed())
        return ValidationFailedError.forField(childPath, 'must be well-formed Unicode text');
      stack.push([child, depth + 1, childPath]);
    }
  }
  return undefined;
}
