import { Body, Controller, Get, HttpCode, Patch, Put } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Ctx } from '../../common/context/ctx.decorator.js';
import type { RequestContext } from '../../common/context/request-context.js';
import { ApiProblems } from '../../common/http/problem-responses.js';
import { BEARER } from '../../swagger.js';
import type { PublicUser } from '../users/user.js';
import { UserDto } from '../users/user.dto.js';
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
  @ApiOperation({ operationId: 'updateProfile', summary: 'Change your name and/or email' })
  @ApiBody({ type: UpdateProfileDto })
  @ApiOkResponse({ type: UserDto })
  @ApiProblems(400, 401, 404, 409, 413, 415, 503)
  update(@Ctx() ctx: RequestContext, @Body() body: UpdateProfileDto): Promise<PublicUser> {
    return this.profile.update(ctx, body);
  }

  @Put('password')
  @HttpCode(204)
  @ApiOperation({ operationId: 'changePassword', summary: 'Change your password; every other session is revoked' })
  @ApiBody({ type: ChangePasswordDto })
  @ApiNoContentResponse({ description: 'Changed' })
  @ApiProblems(400, 401, 403, 413, 415, 503)
  async changePassword(@Ctx() ctx: RequestContext, @Body() body: ChangePasswordDto): Promise<void> {
    await this.profile.changePassword(ctx, body.currentPassword, body.newPassword);
  }
}
