import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { RequestContext } from './request-context.js';

/** Injects the request's `RequestContext` into a controller method. */
export const Ctx = createParamDecorator(
  (_data: unknown, host: ExecutionContext): RequestContext =>
    host.switchToHttp().getRequest<FastifyRequest>().ctx,
);
