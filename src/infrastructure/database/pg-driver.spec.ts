import { describe, expect, it } from '@jest/globals';
import type { DataSource } from 'typeorm';
import { RequestContext } from '../../common/context/request-context.js';
import { toProblem } from '../../common/errors/to-problem.js';
import { Database, DatabaseUnavailableError } from './database.js';
import { PgDriver } from './pg-driver.js';
import type { PostgresAvailability } from './postgres-availability.js';

describe('a statement before TypeORM has created its pool', () => {
  it('is refused as PostgreSQL unavailable (503, a write is buffered), never a 500', async () => {
    // A restarted replica: the probe already answers, the data source is still initialising.
    const availability = { isUp: () => true, suspect: async () => true } as unknown as PostgresAvailability;
    const database = new Database({} as DataSource, availability, new PgDriver({ connectTimeoutMs: 1_000, maxCheckoutWaitMs: 1_000 }));
    const ctx = RequestContext.start('test', 1_000);
    try {
      const refused = await database.read(ctx, 'SELECT 1 WHERE $1::int = 1', [1]).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(DatabaseUnavailableError);
      expect(toProblem(refused).status).toBe(503);
    } finally {
      ctx.release();
    }
  });
});
