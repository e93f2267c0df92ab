import { ApiProperty } from '@nestjs/swagger';
import { IsUUID } from 'class-validator';

/** The `{id}` of a task route: a malformed id is a 400, a well-formed unknown one a 404. */
export class TaskIdParams {
  @ApiProperty({ format: 'uuid', example: '01936f3e-8b1c-7def-8a12-3456789abcde' })
  @IsUUID('loose', { message: 'id must be a UUID' })
  id!: string;
}
