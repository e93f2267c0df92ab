import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform } from 'class-transformer';
import { IsDefined, IsEmail, IsNotEmpty, IsString, MaxLength, MinLength, ValidateIf } from 'class-validator';
import { IsText } from '../../../common/http/text-validators.js';

const trim = ({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value);

/**
 * Absent fields stay as they are; neither can be null (both are required of a user). Changing
 * the email needs the current password, which nothing else uses.
 */
export class UpdateProfileDto {
  @ApiPropertyOptional({ minLength: 1, maxLength: 100, example: 'Ada King' })
  @ValidateIf((dto: UpdateProfileDto) => dto.name !== undefined)
  @Transform(trim)
  @IsString()
  @IsNotEmpty()
  @IsText(1, 100)
  name?: string;

  @ApiPropertyOptional({ format: 'email', maxLength: 254, example: 'ada.king@example.com' })
  @ValidateIf((dto: UpdateProfileDto) => dto.email !== undefined)
  @Transform(trim)
  @IsEmail()
  @IsText(1, 254)
  email?: string;

  @ApiPropertyOptional({
    format: 'password',
    maxLength: 128,
    example: 'correct horse battery staple',
    description: 'Required with `email` (a wrong one is 403 `INVALID_CURRENT_PASSWORD`); not used by a change of `name` alone',
  })
  @ValidateIf((dto: UpdateProfileDto) => dto.email !== undefined || dto.currentPassword !== undefined)
  @IsDefined({ message: 'currentPassword is required to change the email' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(128)
  currentPassword?: string;
}

export class ChangePasswordDto {
  @ApiProperty({ format: 'password', maxLength: 128, example: 'correct horse battery staple' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(128)
  currentPassword!: string;

  @ApiProperty({ format: 'password', minLength: 8, maxLength: 128, example: 'a longer passphrase than before' })
  @IsString()
  @MinLength(8)
  @MaxLength(128)
  newPassword!: string;
}
