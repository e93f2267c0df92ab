/**
 * Nest's Fastify adapter, except that a handler's result that comes after its request was
 * already answered (504 at the request's deadline) is dropped, where Fastify would log
 * FST_ERR_REP_ALREADY_SENT at warn level for every such request.
 */
import type { ServerResponse } from 'node:http';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import type { FastifyReply } from 'fastify';

export class AnswerOnceFastifyAdapter extends FastifyAdapter {
  override reply(response: FastifyReply | ServerResponse, body: unknown, statusCode?: number): FastifyReply {
    if ((response as FastifyReply).sent === true) return response as FastifyReply;
    return super.reply(response, body, statusCode);
  }
}
