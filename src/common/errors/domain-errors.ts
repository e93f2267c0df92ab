/**
 * The domain's errors: plain classes with a stable `code`, free of HTTP. The one exception
 * filter (`problem-details.filter.ts`) maps each code to a status and a problem-details body.
 */
export type ErrorCode =
  | 'VALIDATION_FAILED'
  | 'UNAUTHENTICATED'
  | 'INVALID_CREDENTIALS'
  | 'INVALID_REFRESH_TOKEN'
  | 'INVALID_CURRENT_PASSWORD'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'EMAIL_TAKEN'
  | 'PRECONDITION_FAILED'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'RATE_LIMITED'
  | 'SERVICE_UNAVAILABLE'
  | 'TIMEOUT'
  | 'INTERNAL';

export interface FieldError {
  field: string;
  message: string;
}

export abstract class DomainError extends Error {
  abstract readonly code: ErrorCode;
  override get name(): string {
    return this.constructor.name;
  }
}

/**
 * The most field errors one answer lists: a request can break more rules than a client needs
 * listed (ten thousand unknown keys), and the rest are only counted.
 */
export const MAX_FIELD_ERRORS = 20;

export class ValidationFailedError extends DomainError {
  readonly code = 'VALIDATION_FAILED';
  /** At most MAX_FIELD_ERRORS of them. */
  readonly errors: FieldError[];
  /** How many errors `errors` leaves out. */
  readonly errorsOmitted: number;

  /** @param errorCount how many errors there are in all, when `errors` lists only some */
  constructor(message: string, errors: FieldError[] = [], errorCount = errors.length) {
    super(message);
    this.errors = errors.slice(0, MAX_FIELD_ERRORS);
    this.errorsOmitted = Math.max(0, errorCount - this.errors.length);
  }

  static forField(field: string, message: string): ValidationFailedError {
    return new ValidationFailedError(`${field} ${message}`, [{ field, message }]);
  }
}

export class UnauthenticatedError extends DomainError {
  readonly code = 'UNAUTHENTICATED';
  constructor(message = 'a valid access token is required') {
    super(message);
  }
}

/** A known path asked with a method it does not serve; `allowed` are those it does. */
export class MethodNotAllowedError extends DomainError {
  readonly code = 'METHOD_NOT_ALLOWED';
  constructor(
    method: string,
    readonly allowed: string[],
  ) {
    super(`${method} is not served on this path; it serves ${allowed.join(', ')}`);
  }
}

export class InvalidCredentialsError extends DomainError {
  readonly code = 'INVALID_CREDENTIALS';
  constructor() {
    super('email or password is incorrect');
  }
}

export class InvalidRefreshTokenError extends DomainError {
  readonly code = 'INVALID_REFRESH_TOKEN';
  constructor() {
    super('the refresh token is invalid, expired or revoked');
  }
}

export class InvalidCurrentPasswordError extends DomainError {
  readonly code = 'INVALID_CURRENT_PASSWORD';
  constructor() {
    super('the current password is incorrect');
  }
}

export class NotFoundError extends DomainError {
  readonly code = 'NOT_FOUND';
  constructor(what = 'resource') {
    super(`${what} not found`);
  }
}

export class EmailTakenError extends DomainError {
  readonly code = 'EMAIL_TAKEN';
  constructor() {
    super('this email is already in use');
  }
}

export class PreconditionFailedError extends DomainError {
  readonly code = 'PRECONDITION_FAILED';
  constructor(message = 'If-Match does not match the current version') {
    super(message);
  }
}

export class RateLimitedError extends DomainError {
  readonly code = 'RATE_LIMITED';
  constructor(readonly retryAfterSeconds: number) {
    super('too many attempts; try again later');
  }
}

/** A dependency the request needs is down, or the write buffer is full. */
export class ServiceUnavailableError extends DomainError {
  readonly code = 'SERVICE_UNAVAILABLE';
  constructor(
    message = 'a dependency of this request is unavailable; try again shortly',
    readonly retryAfterSeconds = 5,
  ) {
    super(message);
  }
}

export class RequestTimeoutError extends DomainError {
  readonly code = 'TIMEOUT';
  constructor() {
    super('the request ran past its deadline');
  }
}
