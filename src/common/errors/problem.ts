/**
 * RFC 9457 problem details: the body of every non-2xx response.
 */
import { STATUS_CODES } from 'node:http';
import type { ErrorCode, FieldError } from './domain-errors.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail: string;
  instance: string;
  requestId: string;
  errors?: FieldError[];
  /** Field errors beyond those `errors` lists; present only when some were left out. */
  errorsOmitted?: number;
}

export const STATUS_BY_CODE: Record<ErrorCode, number> = {
  VALIDATION_FAILED: 400,
  UNAUTHENTICATED: 401,
  INVALID_CREDENTIALS: 401,
  INVALID_REFRESH_TOKEN: 401,
  INVALID_CURRENT_PASSWORD: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  EMAIL_TAKEN: 409,
  PRECONDITION_FAILED: 412,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  SERVICE_UNAVAILABLE: 503,
  TIMEOUT: 504,
  INTERNAL: 500,
};

export function problem(fields: {
  code: ErrorCode;
  detail: string;
  instance: string;
  requestId: string;
  status?: number;
  errors?: FieldError[];
  errorsOmitted?: number;
}): ProblemDetails {
  const status = fields.status ?? STATUS_BY_CODE[fields.code];
  const body: ProblemDetails = {
    type: `https://httpstatuses.io/${status}`,
    title: STATUS_CODES[status] ?? 'Error',
    status,
    code: fields.code,
    detail: fields.detail,
    instance: fields.instance,
    requestId: fields.requestId,
  };
  if (fields.errors) body.errors = fields.errors;
  if (fields.errorsOmitted) body.errorsOmitted = fields.errorsOmitted;
  return body;
}
