/**
 * The global validation pipe: DTOs are whitelisted (an unknown field is a 400, never stored),
 * transformed to their classes, and failures become `VALIDATION_FAILED` with one entry per field.
 */
import { ValidationPipe, type ValidationError } from '@nestjs/common';
import { ValidationFailedError, type FieldError } from '../errors/domain-errors.js';

export function createValidationPipe(): ValidationPipe {
  return new ValidationPipe({
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
