/**
 * Ids in paths: any UUID, in either letter case, lower-cased before any use. Ids are stored and
 * answered in lower case, and every lookup, ownership check and queued-write key compares them
 * as text, so an id in another case must never reach them as it was sent.
 */
import { applyDecorators } from '@nestjs/common';
import { ApiProperty } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { Matches } from 'class-validator';

/** A UUID of any version and letter case: the document's pattern and the server's rule. */
export const UUID_PATTERN = '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$';

export function toCanonicalId(value: unknown): unknown {
  return typeof value === 'string' ? value.toLowerCase() : value;
}

/** A path parameter holding a UUID: a malformed one is a 400, any letter case is accepted. */
export function CanonicalUuid(): PropertyDecorator {
  return applyDecorators(
    ApiProperty({
      type: 'string',
      format: 'uuid',
      pattern: UUID_PATTERN,
      example: '01936f3e-8b1c-7def-8a12-3456789abcde',
      description: 'A UUID, in any letter case; answers carry it in lower case',
    }),
    // Checked as sent (the pattern takes either case), lower-cased once valid.
    Matches(new RegExp(UUID_PATTERN, 'u'), { message: 'id must be a UUID' }),
    Transform(({ value }: { value: unknown }) => toCanonicalId(value)),
  );
}
