/**
 * The global validation pipe refuses what class-transformer and class-validator cannot take
 * before they see it: input nested deeper than any DTO (a few thousand levels overflow their
 * recursion: a 500) and text that is not well-formed Unicode (a lone surrogate makes `isEmail`
 * throw: a 500).
 */
import { describe, expect, it } from '@jest/globals';
import { IsEmail, IsString } from 'class-validator';
import { ValidationFailedError } from '../errors/domain-errors.js';
import { createValidationPipe, MAX_NESTING_DEPTH, screen } from './validation.js';

class NameDto {
  @IsString()
  name!: string;
}

class EmailDto {
  @IsEmail()
  email!: string;
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

  it('screens without recursion', () => {
    expect(screen(nested(MAX_NESTING_DEPTH), MAX_NESTING_DEPTH)).toBeUndefined();
    expect(screen(nested(MAX_NESTING_DEPTH + 1), MAX_NESTING_DEPTH)).toBeInstanceOf(
      ValidationFailedError,
    );
    expect(screen('text', 0)).toBeUndefined();
  });
});
