/**
 * Swagger declarations of problem-details responses, so that every documented operation lists
 * the errors it can return with their `application/problem+json` schema.
 */
import { applyDecorators } from '@nestjs/common';
import { ApiExtraModels, ApiProperty, ApiPropertyOptional, ApiResponse, getSchemaPath } from '@nestjs/swagger';
import { STATUS_CODES } from 'node:http';
import { MAX_FIELD_ERRORS } from '../errors/domain-errors.js';
import { PROBLEM_CONTENT_TYPE } from '../errors/problem.js';

export class FieldErrorDto {
  @ApiProperty({ example: 'title' })
  field!: string;

  @ApiProperty({ example: 'must be shorter than or equal to 200 characters' })
  message!: string;
}

export class ProblemDto {
  @ApiProperty({ example: 'https://httpstatuses.io/400' })
  type!: string;

  @ApiProperty({ example: 'Bad Request' })
  title!: string;

  @ApiProperty({ example: 400 })
  status!: number;

  @ApiProperty({
    example: 'VALIDATION_FAILED',
    enum: [
      'VALIDATION_FAILED', 'UNAUTHENTICATED', 'INVALID_CREDENTIALS', 'INVALID_REFRESH_TOKEN',
      'INVALID_CURRENT_PASSWORD', 'NOT_FOUND', 'METHOD_NOT_ALLOWED', 'EMAIL_TAKEN', 'PRECONDITION_FAILED',
      'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'RATE_LIMITED', 'SERVICE_UNAVAILABLE',
      'TIMEOUT', 'INTERNAL',
    ],
  })
  code!: string;

  @ApiProperty({ example: 'title must be shorter than or equal to 200 characters' })
  detail!: string;

  @ApiProperty({ example: '/api/v1/tasks' })
  instance!: string;

  @ApiProperty({ example: '01936f3e-8b1c-7def-8a12-3456789abcde' })
  requestId!: string;

  @ApiPropertyOptional({
    type: [FieldErrorDto],
    maxItems: MAX_FIELD_ERRORS,
    description: `Present for validation failures only; at most ${MAX_FIELD_ERRORS} entries`,
  })
  errors?: FieldErrorDto[];

  @ApiPropertyOptional({
    type: 'integer',
    minimum: 1,
    example: 9980,
    description: 'How many more validation failures there are than `errors` lists; present only when it leaves some out',
  })
  errorsOmitted?: number;
}

/** Declares the given error statuses (plus 500, 504) as problem-details responses. */
export function ApiProblems(...statuses: number[]): MethodDecorator & ClassDecorator {
  const all = [...new Set([...statuses, 500, 504])].sort();
  return applyDecorators(
    ApiExtraModels(ProblemDto),
    ...all.map((status) =>
      ApiResponse({
        status,
        description: STATUS_CODES[status],
        content: { [PROBLEM_CONTENT_TYPE]: { schema: { $ref: getSchemaPath(ProblemDto) } } },
        ...(status === 429 || status === 503
          ? { headers: { 'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer' } } } }
          : {}),
      }),
    ),
  );
}
