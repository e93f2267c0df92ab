import { ApiProperty } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsEmail, IsNotEmpty, IsString, MaxLength, MinLength } from 'class-validator';
import { CanonicalUuid } from '../../../common/http/canonical-id.js';
import { IsText } from '../../../common/http/text-validators.js';

const trim = ({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value);

export class RegisterDto {
  @ApiProperty({ format: 'email', maxLength: 254, example: 'ada@example.com', description: 'Stored trimmed and lower-cased' })
  @Transform(trim)
  @IsEmail()
  @IsText(1, 254)
  email!: string;

  @ApiProperty({ minLength: 8, maxLength: 128, example: 'correct horse battery staple', format: 'password' })
  @IsString()
  @MinLength(8)
  @MaxLength(128)
  password!: string;

  @ApiProperty({ minLength: 1, maxLength: 100, example: 'Ada Lovelace' })
  @Transform(trim)
  @IsString()
  @IsNotEmpty()
  @IsText(1, 100)
  name!: string;
}

export class LoginDto {
  @ApiProperty({ format: 'email', example: 'ada@example.com' })
  @Transform(trim)
  @IsEmail()
  @MaxLength(254)
  email!: string;

  @ApiProperty({ format: 'password', example: 'correct horse battery staple', maxLength: 128 })
  @IsString()
  @IsNotEmpty()
  @MaxLength(128)
  password!: string;
}

export class RefreshDto {
  @ApiProperty({ description: 'The refresh token of the last token pair', example: '01936f3e-8b1c-7def-8a12-3456789abcde.q3Jx…' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(200)
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
