import { ValidateIf } from 'class-validator';
import { RequestBodySchema } from '../../../common/http/request-schema.js';
import { TextField, Trimmed } from '../../../common/http/text-validators.js';
import { EMAIL_DOC, EMAIL_RULE, NAME_RULE, NEW_PASSWORD_RULE, PASSWORD_RULE } from '../../auth/dto/auth.dto.js';

/**
 * Absent fields stay as they are; neither can be null (both are required of a user). Changing
 * the email needs the current password, which nothing else uses: the document says so with a
 * `oneOf` (no `email`, or `email` and `currentPassword`).
 */
@RequestBodySchema({
  oneOf: [
    { not: { properties: { email: { type: 'string' } }, required: ['email'] } },
    {
      properties: { email: { type: 'string' }, currentPassword: { type: 'string' } },
      required: ['email', 'currentPassword'],
    },
  ],
})
export class UpdateProfileDto {
  @TextField(NAME_RULE, {
    required: false,
    description: '1–100 characters as sent, not all whitespace; stored without leading and trailing whitespace',
    example: 'Ada King',
  })
  @ValidateIf((dto: UpdateProfileDto) => dto.name !== undefined)
  @Trimmed()
  name?: string;

  @TextField(EMAIL_RULE, { ...EMAIL_DOC, required: false, example: 'ada.king@example.com' })
  @ValidateIf((dto: UpdateProfileDto) => dto.email !== undefined)
  @Trimmed()
  email?: string;

  @TextField(PASSWORD_RULE, {
    required: false,
    format: 'password',
    example: 'correct horse battery staple',
    description: 'Required with `email` (a wrong one is 403 `INVALID_CURRENT_PASSWORD`); not used by a change of `name` alone',
  })
  @ValidateIf((dto: UpdateProfileDto) => dto.email !== undefined || dto.currentPassword !== undefined)
  currentPassword?: string;
}

export class ChangePasswordDto {
  @TextField(PASSWORD_RULE, { format: 'password', example: 'correct horse battery staple' })
  currentPassword!: string;

  @TextField(NEW_PASSWORD_RULE, {
    format: 'password',
    description: '8–128 characters (Unicode code points)',
    example: 'a longer passphrase than before',
  })
  newPassword!: string;
}
