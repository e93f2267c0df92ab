import { ApiProperty } from '@nestjs/swagger';

/**
 * The answer to a name change accepted into the write buffer (202): the user's id and the name
 * as it will be, with the `updatedAt` the profile will have once the change is applied.
 */
export class BufferedRenameDto {
  @ApiProperty({ format: 'uuid', example: '01936f3e-8b1c-7def-8a12-3456789abcde' })
  id!: string;

  @ApiProperty({ example: 'Ada King', minLength: 1, maxLength: 100 })
  name!: string;

  @ApiProperty({
    format: 'date-time',
    description: "The profile's updatedAt once this change is applied",
    example: '2026-01-02T03:04:05.000Z',
  })
  updatedAt!: string;
}
