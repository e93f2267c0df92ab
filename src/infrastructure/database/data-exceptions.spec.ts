/**
 * A value PostgreSQL refuses (SQLSTATE class 22) is the client's fault: `Database` turns
 * it into a 400 with a detail that names no SQL, while replay still sees the SQLSTATE and sets
 * such a buffered write aside instead of retrying it.
 */
import { describe, expect, it } from '@jest/globals';
import { RequestContext } from '../../common/context/request-context.js';
import { ValidationFailedError } from '../../common/errors/domain-errors.js';
import { toProblem } from '../../common/errors/to-problem.js';
import type { DataSource } from 'typeorm';
import { classifyReplayFailure } from '../../modules/buffer/buffer.errors.js';
import { InvalidDataError, isDataException, sqlState } from './connection-errors.js';
import { Database } from './database.js';
import type { PostgresAvailability } from './postgres-availability.js';
import type { PgDriver } from './pg-driver.js';

function pgError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code, severity: 'ERROR' });
}

/** PostgreSQL up, and a statement that fails with `error`. */
function failingWith(error: Error): { database: Database; error: Error } {
  const availability = { isUp: () => true, suspect: async () => true } as unknown as PostgresAvailability;
  return { database: new Database({} as DataSource, availability, {} as PgDriver), error };
}

async function refusal({ database, error }: { database: Database; error: Error }): Promise<unknown> {
  const ctx = RequestContext.start('test', 1_000);
  try {
    return await database.run(ctx, () => Promise.reject(error)).then(
      () => undefined,
      (caught: unknown) => caught,
    );
  } finally {
    ctx.release();
  }
}

describe('data exceptions (SQLSTATE class 22)', () => {
  it.each([
    [
      '22001',
      'value too long for type character varying(100)',
      'a value is longer than its field allows',
    ],
    [
      '22021',
      'invalid byte sequence for encoding "UTF8": 0x00',
      'a value contains characters that cannot be stored',
    ],
    ['22P02', 'invalid input syntax for type uuid: "x"', 'a value is not valid for its field'],
  ])(
    '%s becomes a 400 VALIDATION_FAILED without the SQL message',
    async (code, message, detail) => {
      const error = await refusal(failingWith(pgError(code, message)));
      expect(error).toBeInstanceOf(ValidationFailedError);
      expect(toProblem(error)).toEqual({
        status: 400,
        code: 'VALIDATION_FAILED',
        detail,
        errors: [],
        internal: false,
      });
    },
  );

  it('keeps the SQLSTATE for replay, which sets the write aside for good', () => {
    const error = new InvalidDataError('22001');
    expect(sqlState(error)).toBe('22001');
    expect(classifyReplayFailure(error)).toBe('permanent');
  });

  it('leaves every other error as it was', async () => {
    const unique = pgError('23505', 'duplicate key value violates unique constraint');
    await expect(refusal(failingWith(unique))).resolves.toBe(unique);
    expect(isDataException(unique)).toBe(false);
    expect(isDataException(new Error('no code'))).toBe(false);
  });
});
