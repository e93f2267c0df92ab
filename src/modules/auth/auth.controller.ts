import { Body, Controller, Delete, Get, Header, HttpCode, Param, Post, Req } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiBody,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { Ctx } from '../../common/context/ctx.decorator.js';
import type { RequestContext } from '../../common/context/request-context.js';
import { ApiProblems } from '../../common/http/problem-responses.js';
import { Public } from '../../common/http/public.decorator.js';
import { BEARER } from '../../swagger.js';
import type { PublicUser } from '../users/user.js';
import { UserDto } from '../users/user.dto.js';
import { AuthService } from './auth.service.js';
import { LoginDto, RefreshDto, RegisterDto, SessionDto, SessionIdParams, TokenPairDto } from './dto/auth.dto.js';
import { SessionsService } from './sessions.service.js';
import type { ClientInfo, SessionView, TokenPair } from './token-pair.js';

/** Token answers are never to be kept by a cache along the way (RFC 6749 §5.1). */
const NO_STORE = {
  'Cache-Control': { description: 'Always `no-store`: the answer carries tokens.', schema: { type: 'string', enum: ['no-store'] } },
};

@ApiTags('auth')
@Controller('api/v1/auth')
export class AuthController {
  constructor(
    private readonly auth: AuthService,
    private readonly sessions: SessionsService,
  ) {}

  @Public()
  @Post('register')
  @ApiOperation({
    operationId: 'register',
    summary: 'Create an account',
    description:
      'Throttled per client IP (every registration counts, whatever its answer): past the limit, 429 with Retry-After. 503 with Retry-After when too many password hashes are already waiting. Either refusal is answered after a short pause (REGISTER_REFUSAL_PAUSE_MS, 250 ms by default). An address already in use answers 409 `EMAIL_TAKEN`.',
    security: [],
  })
  @ApiBody({ type: RegisterDto })
  @ApiCreatedResponse({ type: UserDto })
  @ApiProblems(400, 409, 413, 415, 429, 503)
  register(@Ctx() ctx: RequestContext, @Body() body: RegisterDto, @Req() request: FastifyRequest): Promise<PublicUser> {
    return this.auth.register(ctx, body, clientOf(request));
  }

  @Public()
  @Post('login')
  @HttpCode(200)
  @Header('Cache-Control', 'no-store')
  @ApiOperation({
    operationId: 'login',
    summary: 'Log in: start a session and get a token pair',
    description:
      'Throttled per email and per client IP: failures count for a window, a spent budget answers 429 with Retry-After, and repeated blocks grow longer. An address that has logged in to the account before has an email budget of its own.',
    security: [],
  })
  @ApiBody({ type: LoginDto })
  @ApiOkResponse({ type: TokenPairDto, headers: NO_STORE })
  @ApiProblems(400, 401, 413, 415, 429, 503)
  login(@Ctx() ctx: RequestContext, @Body() body: LoginDto, @Req() request: FastifyRequest): Promise<TokenPair> {
    return this.auth.login(ctx, body.email, body.password, clientOf(request));
  }

  @Public()
  @Post('refresh')
  @HttpCode(200)
  @Header('Cache-Control', 'no-store')
  @ApiOperation({
    operationId: 'refresh',
    summary: 'Rotate the refresh token',
    description: 'The presented refresh token dies. Presenting one that was already used revokes its whole session.',
    security: [],
  })
  @ApiBody({ type: RefreshDto })
  @ApiOkResponse({ type: TokenPairDto, headers: NO_STORE })
  @ApiProblems(400, 401, 413, 415, 503)
  refresh(@Body() body: RefreshDto): Promise<TokenPair> {
    return this.sessions.refresh(body.refreshToken);
  }

  @Post('logout')
  @HttpCode(204)
  @ApiBearerAuth(BEARER)
  @ApiOperation({ operationId: 'logout', summary: 'Revoke the current session' })
  @ApiNoContentResponse({ description: 'Session revoked; its tokens stop working' })
  @ApiProblems(401, 503)
  async logout(@Ctx() ctx: RequestContext): Promise<void> {
    await this.sessions.revoke(ctx.requireUserId(), [ctx.sessionId!]);
  }

  @Get('sessions')
  @ApiBearerAuth(BEARER)
  @ApiOperation({ operationId: 'listSessions', summary: "The caller's active sessions, newest first" })
  @ApiOkResponse({ type: [SessionDto] })
  @ApiProblems(401, 503)
  listSessions(@Ctx() ctx: RequestContext): Promise<SessionView[]> {
    return this.sessions.list(ctx.requireUserId(), ctx.sessionId);
  }

  @Delete('sessions/:id')
  @HttpCode(204)
  @ApiBearerAuth(BEARER)
  @ApiOperation({ operationId: 'revokeSession', summary: 'Revoke one of your sessions' })
  @ApiNoContentResponse({ description: 'Revoked' })
  @ApiProblems(400, 401, 404, 503)
  async revokeSession(@Ctx() ctx: RequestContext, @Param() params: SessionIdParams): Promise<void> {
    await this.sessions.revokeOwn(ctx.requireUserId(), params.id);
  }

  @Delete('sessions')
  @HttpCode(204)
  @ApiBearerAuth(BEARER)
  @ApiOperation({ operationId: 'revokeAllSessions', summary: 'Revoke all your sessions (log out everywhere)' })
  @ApiNoContentResponse({ description: 'All sessions revoked' })
  @ApiProblems(401, 503)
  async revokeAll(@Ctx() ctx: RequestContext): Promise<void> {
    await this.sessions.revokeAll(ctx.requireUserId());
  }
}

export function clientOf(request: FastifyRequest): ClientInfo {
  const agent = request.headers['user-agent'];
  return { ip: request.ip, userAgent: typeof agent === 'string' ? agent : '' };
}
