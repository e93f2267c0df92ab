import { ApiProperty } from '@nestjs/swagger';
import { TEXT_PATTERNS } from '../../common/http/text-validators.js';

export class UserDto {
  @ApiProperty({ format: 'uuid', example: '01936f3e-8b1c-7def-8a12-3456789abcde' })
  id!: string;

  @ApiProperty({
    pattern: TEXT_PATTERNS.email,
    description: 'Trimmed and lower-cased; internationalised addresses are kept as they are (not `format: email`, which is ASCII only)',
    example: 'ada@example.com',
  })
  email!: string;

  @ApiProperty({ example: 'Ada Lovelace', minLength: 1, maxLength: 100 })
  name!: string;

  @ApiProperty({ format: 'date-time', example: '2026-01-02T03:04:05.000Z' })
  createdAt!: string;

  @ApiProperty({ format: 'date-time', example: '2026-01-02T03:04:05.000Z' })
  updatedAt!: string;
}
