/**
 * The global validation pipe refuses what class-transformer and class-validator cannot take
 * before they see it: keys the DTO does not declare (named up to MAX_FIELD_ERRORS, the rest
 * counted), input nested deeper than any DTO (a few thousand levels overflow their recursion:
 * a 500) or holding more values than any request (class-transformer copies them one by one),
 * and text that is not well-formed Unicode (a lone surrogate makes `isEmail` throw: a 500).
 */
import { describe, expect, it } from '@jest/globals';
import { IsEmail, IsOptional, IsString } from 'class-validator';
import { MAX_FIELD_ERRORS, ValidationFailedError } from '../errors/domain-errors.js';
import { createValidationPipe, MAX_INPUT_VALUES, MAX_NESTING_DEPTH, screen, unknownKeysIn } from './validation.js';

class NameDto {
  @IsString()
  name!: string;
}

class EmailDto {
  @IsEmail()
  email!: string;
}

class RenameDto extends NameDto {
  @IsOptional()
  @IsString()
  note?: string;
}

class Undecorated {
  name?: string;
}

function nested(depth: number): unknown {
  let value: unknown = 1;
  for (let i = 0; i < depth; i += 1) value = i % 2 ? [value] : { a: value };
  return value;
}

async function refusal(value: unknown, metatype: new () => object): Promise<ValidationFailedError> {
  const error = await createValidationPipe()
    .transform(value, { type: 'body', metatype })
    .then(
      () => undefined,
      (caught: unknown) => caught,
    );
  expect(error).toBeInstanceOf(ValidationFailedError);
  return error as ValidationFailedError;
}

describe('createValidationPipe', () => {
  it('refuses a body nested deeper than the limit, however deep, with VALIDATION_FAILED', async () => {
    for (const depth of [MAX_NESTING_DEPTH + 1, 100_000]) {
      const error = await refusal({ name: nested(depth) }, NameDto);
      expect(error.message).toBe(`the input is nested more than ${MAX_NESTING_DEPTH} levels deep`);
    }
  });

  it('refuses a lone surrogate, in a value or a key, naming the field', async () => {
    for (const email of ['\ud800', 'a\udfff@example.com']) {
      const error = await refusal({ email }, EmailDto);
      expect(error.errors).toEqual([
        { field: 'email', message: 'must be well-formed Unicode text' },
      ]);
    }
    const error = await refusal({ name: { ['k\ud800']: 'x' } }, NameDto);
    expect(error.errors).toEqual([
      { field: 'name.k\ud800', message: 'must be well-formed Unicode text' },
    ]);
  });

  it('validates other input as before', async () => {
    const pipe = createValidationPipe();
    await expect(
      pipe.transform({ name: '\u{1F600} ok' }, { type: 'body', metatype: NameDto }),
    ).resolves.toEqual({
      name: '\u{1F600} ok',
    });
    await refusal({ name: nested(3) }, NameDto);
  });

  it('refuses more values than any request holds, nested under a field or in an array', async () => {
    const many = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, 1]));
    const message = `the input holds more than ${MAX_INPUT_VALUES} values`;
    expect((await refusal({ email: many }, EmailDto)).message).toBe(message);
    expect((await refusal({ email: [Array.from({ length: 50_000 }, () => 1)] }, EmailDto)).message).toBe(message);
    expect(screen({ a: Array.from({ length: MAX_INPUT_VALUES - 1 }, () => 1) }, MAX_NESTING_DEPTH)).toBeUndefined();
  });

  it('screens without recursion', () => {
    expect(screen(nested(MAX_NESTING_DEPTH), MAX_NESTING_DEPTH)).toBeUndefined();
    expect(screen(nested(MAX_NESTING_DEPTH + 1), MAX_NESTING_DEPTH)).toBeInstanceOf(
      ValidationFailedError,
    );
    expect(screen('text', 0)).toBeUndefined();
  });

  describe('unknownKeysIn', () => {
    const notAllowed = (field: string) => ({ field, message: 'is not an allowed field' });

    it('lets an object of declared properties through, inherited ones included', () => {
      expect(unknownKeysIn({ name: 'a', note: 'b' }, RenameDto)).toBeUndefined();
      expect(unknownKeysIn({ name: 'a' }, RenameDto)).toBeUndefined();
      expect(unknownKeysIn({}, RenameDto)).toBeUndefined();
    });

    it.each(['constructor', 'hasOwnProperty', 'toString', 'valueOf', '__defineGetter__'])(
      'refuses %s, which every object answers to through its prototype',
      (key) => {
        const error = unknownKeysIn({ name: 'a', [key]: 'x' }, NameDto);
        expect(error?.errors).toEqual([notAllowed(key)]);
        expect(error?.message).toBe(`${key} is not an allowed field`);
      },
    );

    it('refuses __proto__ as an own key of a query object (no prototype)', () => {
      const query = Object.create(null) as Record<string, unknown>;
      query['__proto__'] = 'x';
      query.name = 'a';
      expect(Object.keys(query)).toContain('__proto__');
      expect(unknownKeysIn(query, NameDto)?.errors).toEqual([notAllowed('__proto__')]);
    });

    it('names the first MAX_FIELD_ERRORS unknown keys and counts the rest', () => {
      const body: Record<string, unknown> = { name: 'a' };
      for (let i = 0; i < 10_000; i += 1) body[`k${i}`] = i;
      const error = unknownKeysIn(body, RenameDto)!;
      expect(error.errors).toHaveLength(MAX_FIELD_ERRORS);
      expect(error.errors[0]).toEqual(notAllowed('k0'));
      expect(error.errorsOmitted).toBe(10_000 - MAX_FIELD_ERRORS);
    });

    it('refuses an array for a DTO: its indices are keys the DTO does not declare', () => {
      const error = unknownKeysIn(Array.from({ length: 30_000 }, () => ({})), NameDto)!;
      expect(error.errors[0]).toEqual(notAllowed('0'));
      expect(error.errors).toHaveLength(MAX_FIELD_ERRORS);
      expect(error.errorsOmitted).toBe(30_000 - MAX_FIELD_ERRORS);
      expect(unknownKeysIn([], NameDto)).toBeUndefined();
    });

    it('leaves alone what is not an object, and classes without validation metadata', () => {
      expect(unknownKeysIn('text', NameDto)).toBeUndefined();
      expect(unknownKeysIn(null, NameDto)).toBeUndefined();
      expect(unknownKeysIn({ other: 1 }, Undecorated)).toBeUndefined();
      expect(unknownKeysIn({ other: 1 }, String)).toBeUndefined();
      expect(unknownKeysIn({ other: 1 }, undefined)).toBeUndefined();
    });

    it('is what the pipe refuses first, before any field is validated', async () => {
      const error = await refusal({ email: 'not-an-email', extra: 1 }, EmailDto);
      expect(error.errors).toEqual([notAllowed('extra')]);
    });
  });
});
