/**
 * Which database errors may mean "PostgreSQL cannot be reached" (a suspicion that the probe
 * confirms or not before the circuit breaker opens: see PostgresAvailability), as opposed to
 * errors of the statement itself (constraint violations, bad input, a statement timeout) and to
 * a pool whose connections are all busy, which never do.
 */
import { ValidationFailedError } from '../../common/errors/domain-errors.js';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** SQLSTATEs of a server that is going away or cannot take the connection. */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '3D000']);

const CONNECTION_MESSAGES = [
  'connection terminated',
  'timeout expired',
  'query read timeout',
  'connection timeout',
  'driver not connected',
  'not queryable',
  'cannot use a pool after calling end',
  'the database is not connected',
];

export function isConnectionError(error: unknown): boolean {
  const candidates = [error, (error as { driverError?: unknown } | null)?.driverError];
  return candidates.some((candidate) => {
    if (typeof candidate !== 'object' || candidate === null) return false;
    const { code, message } = candidate as { code?: unknown; message?: unknown };
    if (typeof code === 'string') {
      if (NETWORK_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || code.startsWith('08')) {
        return true;
      }
    }
    const text = typeof message === 'string' ? message.toLowerCase() : '';
    return CONNECTION_MESSAGES.some((fragment) => text.includes(fragment));
  });
}

/** The SQLSTATE of a failed statement, when there is one. */
export function sqlState(error: unknown): string | undefined {
  const driver = (error as { driverError?: { code?: unknown } } | null)?.driverError ?? error;
  const code = (driver as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export const UNIQUE_VIOLATION = '23505';
export const FOREIGN_KEY_VIOLATION = '23503';

const DATA_EXCEPTION_DETAILS: Record<string, string> = {
  '22001': 'a value is longer than its field allows',
  '22021': 'a value contains characters that cannot be stored',
  '22P05': 'a value contains characters that cannot be stored',
};

/**
 * PostgreSQL refused a value of the statement (SQLSTATE class 22, data exception: too long, not
 * valid text, out of range…). Statements take their values as parameters, so such a value came
 * from the client: a 400, not a 500. Validation should have caught it first; this is the net.
 * The SQLSTATE stays readable through `sqlState`, so replay still sets such a write aside.
 */
export class InvalidDataError extends ValidationFailedError {
  readonly driverError: { code: string };

  constructor(code: string) {
    super(DATA_EXCEPTION_DETAILS[code] ?? 'a value is not valid for its field');
    this.driverError = { code };
  }
}

export function isDataException(error: unknown): boolean {
  return sqlState(error)?.startsWith('22') ?? false;
}
