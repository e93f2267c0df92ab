/**
 * The one global exception filter: every error that leaves a handler becomes an RFC 9457
 * problem-details response. Faults of the service (5xx `INTERNAL`) are logged with the request
 * id; their bodies never carry a message, stack or SQL.
 */
import { Catch, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { sendProblem } from './send-problem.js';

@Catch()
export class ProblemDetailsFilter implements ExceptionFilter {
  private readonly logger = new Logger('ProblemDetailsFilter');

  catch(error: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    sendProblem(error, http.getRequest<FastifyRequest>(), http.getResponse<FastifyReply>(), (err) =>
      this.logger.error({ err, requestId: http.getRequest<FastifyRequest>().id }, 'unhandled error'),
    );
  }
}
