/**
 * The global validation pipe: DTOs are whitelisted (an unknown field is a 400, never stored),
 * transformed to their classes, and failures become `VALIDATION_FAILED` with one entry per field
 * (at most MAX_FIELD_ERRORS of them, the rest counted), whose message names the rule that
 * failed: a missing field "is required", whatever else its validators check. Fields marked
 * `Trimmed` are trimmed once valid (they are validated as sent, as the document states them).
 */
import { ValidationPipe, type ArgumentMetadata, type ValidationError } from '@nestjs/common';
import { getMetadataStorage } from 'class-validator';
import { MAX_FIELD_ERRORS, ValidationFailedError, type FieldError } from '../errors/domain-errors.js';
import { hasTrimmedFields, trimFields } from './text-validators.js';

/**
 * Deeper than any DTO goes. class-transformer and class-validator recurse into whatever they
 * are given: a body of a few thousand nested arrays (well under the size limit) overflows the
 * stack, which would be a 500.
 */
export const MAX_NESTING_DEPTH = 32;

/**
 * More values (object entries and array items, at any depth) than any request holds: every DTO
 * is a few scalar fields. class-transformer copies nested objects key by key: ten thousand keys
 * under one field cost it over 100 ms, where the same keys at the top are refused as unknown.
 */
export const MAX_INPUT_VALUES = 1_000;

const NOT_ALLOWED = 'is not an allowed field';
const REQUIRED = 'is required';

/**
 * Refuses, before class-transformer and class-validator see it, input they should not be given:
 * - keys the DTO does not declare. class-validator's whitelist costs an error object (and an
 *   entry in the answer) per unknown key, and looks keys up in a plain object, so that the names
 *   of Object.prototype (`toString`, `constructor`, …) pass as declared;
 * - nesting deeper than any DTO (it overflows their recursion), and more values in all than any
 *   request holds (class-transformer copies nested objects one key at a time);
 * - text that is not well-formed Unicode. A lone surrogate makes validator.js's `isEmail` throw
 *   (a 500), and PostgreSQL could only store it as U+FFFD, silently changing what was sent.
 */
class ScreeningValidationPipe extends ValidationPipe {
  // Not async (a refusal is a rejected promise all the same): every request with a DTO passes
  // here, and an async frame costs each of them a promise more.
  override transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    const refusal = refusalOf(value, metadata);
    if (refusal) return Promise.reject(refusal);
    const validated = super.transform(value, metadata);
    return hasTrimmedFields(metadata.metatype) ? validated.then(trimmed) : validated;
  }
}

/** Why `value` is refused before class-transformer and class-validator see it, if it is. */
function refusalOf(value: unknown, metadata: ArgumentMetadata): ValidationFailedError | undefined {
  // Every body the document declares is required: a request without one is not an empty object.
  if (metadata.type === 'body' && value === undefined) return ValidationFailedError.forField('body', 'is required');
  if (metadata.type !== 'custom') {
    const refusal = unknownKeysIn(value, metadata.metatype) ?? screen(value, MAX_NESTING_DEPTH);
    if (refusal) return refusal;
  }
  if (metadata.type === 'body' && (typeof value !== 'object' || value === null || Array.isArray(value)))
    return ValidationFailedError.forField('body', 'must be a JSON object');
  return undefined;
}

function trimmed(dto: unknown): unknown {
  trimFields(dto);
  return dto;
}

export function createValidationPipe(): ValidationPipe {
  return new ScreeningValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    forbidUnknownValues: true,
    transform: true,
    stopAtFirstError: true,
    // The value is kept for `flatten` to tell a missing field; it never reaches the answer.
    validationError: { target: false, value: true },
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
    const messages = Object.values(error.constraints ?? {});
    // A field that is validated at all while absent is a required one.
    const own = (error.value === undefined && messages.length > 0 ? [REQUIRED] : messages).map((message) => ({
      field,
      message: withoutFieldName(message, error.property),
    }));
    return [...own, ...flatten(error.children ?? [], field)];
  });
}

/** class-validator says "title must be …"; the field is already named beside the message. */
function withoutFieldName(message: string, property: string): string {
  if (message.startsWith('property ') && message.endsWith(' should not exist')) return NOT_ALLOWED;
  return message.startsWith(`${property} `) ? message.slice(property.length + 1) : message;
}

/** The properties each DTO class declares (any validation decorator), by class. */
const declaredByClass = new WeakMap<object, ReadonlySet<string>>();

function declaredProperties(metatype: ArgumentMetadata['metatype']): ReadonlySet<string> | undefined {
  if (typeof metatype !== 'function') return undefined;
  let declared = declaredByClass.get(metatype);
  if (!declared) {
    const metadatas = getMetadataStorage().getTargetValidationMetadatas(metatype, '', false, false);
    declared = new Set(metadatas.map((metadata) => metadata.propertyName));
    declaredByClass.set(metatype, declared);
  }
  return declared.size > 0 ? declared : undefined;
}

/**
 * Refuses an object with keys its DTO does not declare as its own properties, at a cost that
 * does not grow with their number beyond listing the keys: the keys are counted against the
 * declared properties present, and only the first MAX_FIELD_ERRORS unknown ones are named.
 */
export function unknownKeysIn(
  value: unknown,
  metatype: ArgumentMetadata['metatype'],
): ValidationFailedError | undefined {
  // An array's keys are its indices, none of them declared: refused like any unknown key.
  if (typeof value !== 'object' || value === null) return undefined;
  const declared = declaredProperties(metatype);
  if (!declared) return undefined;
  const keys = Object.keys(value);
  let known = 0;
  for (const property of declared) if (Object.hasOwn(value, property)) known += 1;
  if (keys.length === known) return undefined;
  const named: FieldError[] = [];
  for (const key of keys) {
    if (declared.has(key)) continue;
    named.push({ field: key, message: NOT_ALLOWED });
    if (named.length === MAX_FIELD_ERRORS) break;
  }
  return new ValidationFailedError(`${named[0]!.field} ${NOT_ALLOWED}`, named, keys.length - known);
}

/**
 * The first reason to refuse `value` outright, if any: objects or arrays nested deeper than
 * `depthLimit`, more than `valueLimit` values in all (object entries and array items), or a
 * string (value or key) that is not well-formed Unicode. Iterative, so any depth is safe, and
 * it stops at the bound, so that what it walks costs little whatever was sent.
 */
export function screen(
  value: unknown,
  depthLimit: number,
  valueLimit = MAX_INPUT_VALUES,
): ValidationFailedError | undefined {
  const stack: [unknown, number, string][] = [[value, 0, '']];
  let values = 0;
  while (stack.length > 0) {
    const [current, depth, path] = stack.pop()!;
    if (typeof current === 'string') {
      if (!current.isWellFormed()) {
        return ValidationFailedError.forField(path || 'value', 'must be well-formed Unicode text');
      }
      continue;
    }
    if (typeof current !== 'object' || current === null) continue;
    if (depth >= depthLimit)
      return new ValidationFailedError(`the input is nested more than ${depthLimit} levels deep`);
    for (const key of keysOf(current)) {
      values += 1;
      if (values > valueLimit) return new ValidationFailedError(`the input holds more than ${valueLimit} values`);
      const childPath = path ? `${path}.${key}` : String(key);
      if (typeof key === 'string' && !key.isWellFormed())
        return ValidationFailedError.forField(childPath, 'must be well-formed Unicode text');
      stack.push([(current as Record<string | number, unknown>)[key], depth + 1, childPath]);
    }
  }
  return undefined;
}

/** An object's own keys, or an array's indices (counted, not listed). */
function* keysOf(value: object): Generator<string | number> {
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index += 1) yield index;
  } else {
    yield* Object.keys(value);
  }
}
