import { ApiProperty } from '@nestjs/swagger';
import { CanonicalUuid } from '../../../common/http/canonical-id.js';
import { TextField, Trimmed, type TextRule } from '../../../common/http/text-validators.js';

export const EMAIL_RULE: TextRule = { minLength: 1, maxLength: 254, pattern: 'email' };
export const NAME_RULE: TextRule = { minLength: 1, maxLength: 100, pattern: 'notBlank' };
export const NEW_PASSWORD_RULE: TextRule = { minLength: 8, maxLength: 128, pattern: 'any' };
export const PASSWORD_RULE: TextRule = { minLength: 1, maxLength: 128, pattern: 'any' };

export const EMAIL_DOC = {
  description:
    'An email address, internationalised ones included; up to 254 characters as sent. Leading and trailing whitespace is removed and the address lower-cased before it is stored or compared.',
};

export class RegisterDto {
  @TextField(EMAIL_RULE, { ...EMAIL_DOC, example: 'ada@example.com' })
  @Trimmed()
  email!: string;

  @TextField(NEW_PASSWORD_RULE, {
    format: 'password',
    description: '8–128 characters (Unicode code points)',
    example: 'correct horse battery staple',
  })
  password!: string;

  @TextField(NAME_RULE, {
    description: '1–100 characters as sent, not all whitespace; stored without leading and trailing whitespace',
    example: 'Ada Lovelace',
  })
  @Trimmed()
  name!: string;
}

export class LoginDto {
  @TextField(EMAIL_RULE, { ...EMAIL_DOC, example: 'ada@example.com' })
  @Trimmed()
  email!: string;

  @TextField(PASSWORD_RULE, { format: 'password', example: 'correct horse battery staple' })
  password!: string;
}

export class RefreshDto {
  @TextField(
    { minLength: 1, maxLength: 200, pattern: 'any' },
    { description: 'The refresh token of the last token pair', example: '01936f3e-8b1c-7def-8a12-3456789abcde.q3Jx…' },
  )
  refreshToken!: string;
}

export class TokenPairDto {
  @ApiProperty({
    description: 'JWT access token; send as `Authorization: Bearer …`',
    example: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwMTkzNmYzZSJ9.c2lnbmF0dXJl',
  })
  accessToken!: string;

  @ApiProperty({
    description: 'Opaque refresh token; single use (rotated on every refresh)',
    example: '01936f3e-8b1c-7def-8a12-3456789abcde.q3Jx…',
  })
  refreshToken!: string;

  @ApiProperty({ enum: ['Bearer'], example: 'Bearer' })
  tokenType!: 'Bearer';

  @ApiProperty({ description: 'Access token lifetime in seconds', example: 900 })
  expiresIn!: number;
}

export class SessionDto {
  @ApiProperty({ format: 'uuid', example: '01936f3e-8b1c-7def-8a12-3456789abcde' })
  id!: string;

  @ApiProperty({ example: 'Mozilla/5.0 …' })
  userAgent!: string;

  @ApiProperty({ example: '203.0.113.7' })
  ip!: string;

  @ApiProperty({ format: 'date-time', example: '2026-01-02T03:04:05.000Z' })
  createdAt!: string;

  @ApiProperty({ format: 'date-time', example: '2026-01-03T08:00:00.000Z' })
  lastUsedAt!: string;

  @ApiProperty({ format: 'date-time', description: 'When the session ends unless refreshed', example: '2026-01-10T08:00:00.000Z' })
  expiresAt!: string;

  @ApiProperty({ description: 'True for the session of the token making this request', example: true })
  current!: boolean;
}

/** The `{id}` of `DELETE /sessions/{id}`: a malformed id is a 400, someone else's a 404. */
export class SessionIdParams {
  @CanonicalUuid()
  id!: string;
}
