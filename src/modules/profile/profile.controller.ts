import { Body, Controller, Get, HttpCode, Patch, Put, Res } from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiBearerAuth,
  ApiBody,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Ctx } from '../../common/context/ctx.decorator.js';
import type { RequestContext } from '../../common/context/request-context.js';
import { ApiProblems } from '../../common/http/problem-responses.js';
import {
  BUFFERED_DESCRIPTION,
  markBuffered,
  WRITE_STATUS_HEADER_DOC,
} from '../../common/http/write-status.js';
import { BEARER } from '../../swagger.js';
import type { PublicUser } from '../users/user.js';
import { UserDto } from '../users/user.dto.js';
import { BufferedRenameDto } from './dto/buffered-rename.dto.js';
import { ChangePasswordDto, UpdateProfileDto } from './dto/profile.dto.js';
import { ProfileService } from './profile.service.js';

@ApiTags('profile')
@ApiBearerAuth(BEARER)
@Controller('api/v1/profile')
export class ProfileController {
  constructor(private readonly profile: ProfileService) {}

  @Get()
  @ApiOperation({ operationId: 'getProfile', summary: 'Your profile' })
  @ApiOkResponse({ type: UserDto })
  @ApiProblems(401, 404, 503)
  get(@Ctx() ctx: RequestContext): Promise<PublicUser> {
    return this.profile.get(ctx);
  }

  @Patch()
  @ApiOperation({
    operationId: 'updateProfile',
    summary: 'Change your name and/or email',
    description:
      'Changing `email` needs `currentPassword` (missing: 400; wrong: 403 `INVALID_CURRENT_PASSWORD`, counted per user like the password change, 429 with `Retry-After` past the budget) and revokes every other session of yours. While PostgreSQL is unavailable a change of `name` alone is accepted into the write buffer: 202 with `X-Write-Status: buffered` and the id, the new name and the resulting `updatedAt`. An email change needs PostgreSQL (the address must be free): 503 with `Retry-After` until it is back and earlier buffered writes are applied.',
  })
  @ApiBody({ type: UpdateProfileDto })
  @ApiOkResponse({ type: UserDto })
  @ApiAcceptedResponse({
    type: BufferedRenameDto,
    headers: WRITE_STATUS_HEADER_DOC,
    description: `The id, the name as it will be and the resulting updatedAt. ${BUFFERED_DESCRIPTION}`,
  })
  @ApiProblems(400, 401, 403, 404, 409, 413, 415, 429, 503)
  async update(
    @Ctx() ctx: RequestContext,
    @Body() body: UpdateProfileDto,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<PublicUser | BufferedRenameDto> {
    const outcome = await this.profile.update(ctx, body);
    if (!outcome.buffered) return outcome.user;
    markBuffered(reply);
    return outcome.rename;
  }

  @Put('password')
  @HttpCode(204)
  @ApiOperation({
    operationId: 'changePassword',
    summary: 'Change your password; every other session is revoked',
    description:
      'Wrong current passwords are counted per user, as failed logins are per email: past the budget, 429 with `Retry-After` until the block ends.',
  })
  @ApiBody({ type: ChangePasswordDto })
  @ApiNoContentResponse({ description: 'Changed' })
  @ApiProblems(400, 401, 403, 413, 415, 429, 503)
  async changePassword(@Ctx() ctx: RequestContext, @Body() body: ChangePasswordDto): Promise<void> {
    await this.profile.changePassword(ctx, body.currentPassword, body.newPassword);
  }
}
