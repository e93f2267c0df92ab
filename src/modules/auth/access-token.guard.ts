/**
 * The global guard: every route needs a valid access token unless marked `@Public()`. On
 * success the request context learns the user and session.
 */
import { Injectable, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import type { FastifyRequest } from 'fastify';
import { UnauthenticatedError } from '../../common/errors/domain-errors.js';
import { IS_PUBLIC } from '../../common/http/public.decorator.js';
import type { AuthenticatedUser } from './jwt.strategy.js';

@Injectable()
export class AccessTokenGuard extends AuthGuard('jwt') {
  constructor(private readonly reflector: Reflector) {
    super();
  }

  override canActivate(context: ExecutionContext) {
    const isPublic = this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, [context.getHandler(), context.getClass()]);
    return isPublic ? true : super.canActivate(context);
  }

  override handleRequest<TUser = AuthenticatedUser>(
    error: unknown,
    user: AuthenticatedUser | false,
    _info: unknown,
    context: ExecutionContext,
  ): TUser {
    if (error || !user) throw new UnauthenticatedError();
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    request.ctx.userId = user.userId;
    request.ctx.sessionId = user.sessionId;
    return user as TUser;
  }
}
