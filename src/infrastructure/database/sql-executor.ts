/**
 * What code that applies a change runs its statements on, whatever carries them: the connection
 * of a replay transaction (a TypeORM `EntityManager` fits this shape) or, for a direct write that
 * needs no transaction, the pool (`DatabaseService.executor`).
 *
 * The two agree on what a statement resolves with as long as it produces rows: a SELECT, an
 * INSERT … RETURNING, or an UPDATE / DELETE wrapped in a CTE. (TypeORM answers a bare UPDATE or
 * DELETE with `[rows, count]` instead, so apply statements never use that form.)
 */
export interface SqlExecutor {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
}
