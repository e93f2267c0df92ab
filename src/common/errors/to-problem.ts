/**
 * Turns any thrown value into the problem a client may see. The only place that decides which
 * status and code an error becomes; both the Nest exception filter and Fastify's own error
 * handler (for what fails before routing: body parsing, content type, size) go through it.
 */
import { HttpException } from '@nestjs/common';
import { DomainError, MethodNotAllowedError, ValidationFailedError, type ErrorCode, type FieldError } from './domain-errors.js';
import { STATUS_BY_CODE } from './problem.js';

export interface ProblemOutline {
  status: number;
  code: ErrorCode;
  detail: string;
  errors?: FieldError[];
  errorsOmitted?: number;
  headers?: Record<string, string>;
  /** True when the error is a fault of the service: logged in full, detail kept generic. */
  internal: boolean;
}

const CODE_BY_STATUS: Record<number, ErrorCode> = {
  400: 'VALIDATION_FAILED',
  401: 'UNAUTHENTICATED',
  403: 'UNAUTHENTICATED',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  408: 'TIMEOUT',
  412: 'PRECONDITION_FAILED',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
  503: 'SERVICE_UNAVAILABLE',
  504: 'TIMEOUT',
};

/** What Fastify says of a request it refused before any handler ran. */
const FASTIFY_DETAILS: Record<string, string> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'the request body must be application/json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'the request body is larger than the limit',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'the request body is empty but its content type is JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'the request body is not valid JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'Content-Length does not match the body',
  FST_ERR_BAD_URL: 'the URL is not validly percent-encoded',
  FST_ERR_MAX_PARAM_LENGTH: 'a path parameter is longer than allowed',
};

const INTERNAL_DETAIL = 'an unexpected error occurred; it has been logged with the request id';

export function toProblem(error: unknown): ProblemOutline {
  if (error instanceof DomainError) return fromDomainError(error);
  if (error instanceof HttpException) return fromHttpException(error);
  const fastify = asFastifyError(error);
  if (fastify) return fromStatus(fastify.statusCode, fastifyDetail(fastify));
  return { status: 500, code: 'INTERNAL', detail: INTERNAL_DETAIL, internal: true };
}

function fromDomainError(error: DomainError): ProblemOutline {
  const outline: ProblemOutline = {
    status: STATUS_BY_CODE[error.code],
    code: error.code,
    detail: error.message,
    internal: false,
  };
  if (error instanceof ValidationFailedError) {
    outline.errors = error.errors;
    if (error.errorsOmitted > 0) outline.errorsOmitted = error.errorsOmitted;
  }
  if (error instanceof MethodNotAllowedError) outline.headers = { allow: error.allowed.join(', ') };
  if ('retryAfterSeconds' in error && typeof error.retryAfterSeconds === 'number') {
    outline.headers = { 'retry-after': String(Math.max(1, Math.ceil(error.retryAfterSeconds))) };
  }
  return outline;
}

function fromHttpException(error: HttpException): ProblemOutline {
  const response = error.getResponse();
  const message =
    typeof response === 'string'
      ? response
      : (response as { message?: unknown }).message ?? error.message;
  const detail = Array.isArray(message) ? message.join('; ') : String(message);
  return fromStatus(error.getStatus(), detail);
}

function fromStatus(status: number, detail: string): ProblemOutline {
  if (status >= 500 && status !== 503 && status !== 504) {
    return { status: 500, code: 'INTERNAL', detail: INTERNAL_DETAIL, internal: true };
  }
  const code = CODE_BY_STATUS[status] ?? (status < 500 ? 'VALIDATION_FAILED' : 'INTERNAL');
  const outline: ProblemOutline = { status, code, detail, internal: false };
  if (status === 503 || status === 429) outline.headers = { 'retry-after': '5' };
  return outline;
}

interface FastifyLikeError {
  statusCode: number;
  code?: string;
  message: string;
}

function asFastifyError(error: unknown): FastifyLikeError | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { statusCode } = error as { statusCode?: unknown };
  if (typeof statusCode !== 'number' || statusCode < 400 || statusCode > 599) return undefined;
  return error as FastifyLikeError;
}

function fastifyDetail(error: FastifyLikeError): string {
  if (error.code && FASTIFY_DETAILS[error.code]) return FASTIFY_DETAILS[error.code]!;
  // A JSON.parse failure inside Fastify's parser carries statusCode 400 and no code.
  if (error.statusCode === 400 && error instanceof SyntaxError) {
    return FASTIFY_DETAILS.FST_ERR_CTP_INVALID_JSON_BODY!;
  }
  return error.statusCode < 500 ? error.message : INTERNAL_DETAIL;
}
