/**
 * The buffer's own errors, and how replay sorts the failure of an operation: wait for the
 * database (transient), set it aside for good (permanent), or try again a few times (retryable).
 */
import { ServiceUnavailableError } from '../../common/errors/domain-errors.js';
import { isConnectionError, sqlState } from '../../infrastructure/database/connection-errors.js';

/** Thrown by a handler for an operation that can never apply (its row is gone, say). */
export class PermanentOperationError extends Error {
  override readonly name = 'PermanentOperationError';
}

/** The buffer cannot take this entry without going over BUFFER_MAX_ENTRIES or BUFFER_MAX_BYTES. */
export class BufferFullError extends Error {
  override readonly name = 'BufferFullError';
  constructor(readonly limit: 'entries' | 'bytes') {
    super(`the write buffer is full (${limit})`);
  }
}

/** The write's user already holds their whole share of this replica's buffer. */
export class UserShareExceededError extends Error {
  override readonly name = 'UserShareExceededError';
  constructor() {
    super("the user's share of the write buffer is used up");
  }
}

export type FailureClass = 'transient' | 'permanent' | 'retryable';

/**
 * - transient: PostgreSQL cannot be reached; nothing is wrong with the operation. Replay stops
 *   and the queue stays as it is.
 * - permanent: the operation itself is at fault and always will be: the handler says so, or
 *   PostgreSQL rejects its data (SQLSTATE class 23, integrity constraint violation; class 22,
 *   data exception such as a value too long). Replayed again it would fail again and block
 *   every operation behind it.
 * - retryable: anything else (deadlock, serialization failure, statement timeout, a bug):
 *   possibly passing, so it is tried again on later runs before being set aside.
 */
export function classifyReplayFailure(error: unknown): FailureClass {
  if (error instanceof ServiceUnavailableError || isConnectionError(error)) return 'transient';
  if (error instanceof PermanentOperationError) return 'permanent';
  const state = sqlState(error);
  if (state !== undefined && /^2[23][0-9A-Z]{3}$/.test(state)) return 'permanent';
  return 'retryable';
}

/** What is kept of an error beside a dead letter: enough to diagnose, nothing more. */
export interface ErrorSummary {
  name: string;
  message: string;
  code?: string;
}

export function summariseError(error: unknown): ErrorSummary {
  if (error instanceof Error) {
    const code = sqlState(error);
    return { name: error.name, message: error.message, ...(code === undefined ? {} : { code }) };
  }
  return { name: 'Error', message: String(error) };
}
