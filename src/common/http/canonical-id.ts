/**
 * Ids in paths: any UUID, in either letter case, lower-cased before any use. Ids are stored and
 * answered in lower case, and every lookup, ownership check and queued-write key compares them
 * as text, so an id in another case must never reach them as it was sent.
 */
import { applyDecorators } from '@nestjs/common';
import { ApiProperty } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsUUID } from 'class-validator';

export function toCanonicalId(value: unknown): unknown {
  return typeof value === 'string' ? value.toLowerCase() : value;
}

/** A path parameter holding a UUID: a malformed one is a 400, any letter case is accepted. */
export function CanonicalUuid(): PropertyDecorator {
  return applyDecorators(
    ApiProperty({ format: 'uuid', example: '01936f3e-8b1c-7def-8a12-3456789abcde', description: 'Any letter case; answers carry it in lower case' }),
    Transform(({ value }: { value: unknown }) => toCanonicalId(value)),
    IsUUID('loose', { message: 'id must be a UUID' }),
  );
}
