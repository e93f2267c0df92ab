/**
 * Liveness and readiness (Terminus). Liveness checks nothing but that the process answers.
 * Readiness reports PostgreSQL, Redis and the buffer; it answers 503 while starting, while
 * shutting down, or when the instance can take neither direct nor buffered writes. PostgreSQL
 * alone being down keeps it 200: writes are then buffered.
 */
import { Controller, Get, HttpCode, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import type { FastifyReply } from 'fastify';
import { ApiProblems } from '../../common/http/problem-responses.js';
import { Public } from '../../common/http/public.decorator.js';
import { HealthCheckResultDto } from './health.dto.js';
import { ReadinessService } from './readiness.service.js';

@ApiTags('health')
@Public()
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly readiness: ReadinessService,
  ) {}

  @Get('live')
  @HealthCheck({ swaggerDocumentation: false })
  @ApiOperation({ operationId: 'liveness', summary: 'The process is alive and answering' })
  @ApiOkResponse({ description: 'Alive', type: HealthCheckResultDto })
  // Terminus refuses every check once the application has begun to close.
  @ApiProblems(503)
  live(): Promise<HealthCheckResult> {
    return this.health.check([]);
  }

  @Get('ready')
  @HttpCode(200)
  @ApiOperation({
    operationId: 'readiness',
    summary: 'Whether this instance should receive traffic',
    description:
      'One entry per dependency (postgres, redis, buffer), each up or down. PostgreSQL alone being down keeps 200: writes are buffered.',
  })
  @ApiOkResponse({ description: 'Ready', type: HealthCheckResultDto })
  @ApiServiceUnavailableResponse({
    description: 'Starting, shutting down, or unable to take writes',
    type: HealthCheckResultDto,
    headers: { 'Retry-After': { description: 'Seconds to wait before asking again', schema: { type: 'integer', example: 5 } } },
  })
  async ready(@Res({ passthrough: true }) reply: FastifyReply): Promise<HealthCheckResult> {
    const { ready, result } = await this.readiness.evaluate();
    if (!ready) void reply.status(503).header('retry-after', '5');
    return result;
  }
}
