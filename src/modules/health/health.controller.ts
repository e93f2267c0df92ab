/**
 * Liveness and readiness (Terminus indicators). Liveness checks that the process answers, and
 * nothing that load or a dependency can fail: a busy or cut-off process must not be restarted.
 * Its one indicator cannot be down, so its body is put together here, synchronously, rather
 * than by Terminus's `HealthCheckService.check` (whose promise chain was a tenth of this
 * route's cost: docs/performance.md); it stays 200 through shutdown, while the process can
 * still answer. Readiness follows the one rule of ReadinessService.
 */
import { Controller, Get, HttpCode, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { HealthCheck, type HealthCheckResult } from '@nestjs/terminus';
import type { FastifyReply } from 'fastify';
import { Public } from '../../common/http/public.decorator.js';
import { HealthCheckResultDto } from './health.dto.js';
import { HealthIndicators } from './health-indicators.js';
import { ReadinessService } from './readiness.service.js';

@ApiTags('health')
@Public()
@Controller('health')
export class HealthController {
  constructor(
    private readonly indicators: HealthIndicators,
    private readonly readiness: ReadinessService,
  ) {}

  @Get('live')
  @HealthCheck({ swaggerDocumentation: false })
  @ApiOperation({ operationId: 'liveness', summary: 'The process is alive and answering' })
  @ApiOkResponse({ description: 'Alive', type: HealthCheckResultDto })
  live(): HealthCheckResult {
    const process = this.indicators.process();
    return { status: 'ok', info: process, error: {}, details: process };
  }

  @Get('ready')
  @HttpCode(200)
  @ApiOperation({
    operationId: 'readiness',
    summary: 'Whether this instance should receive traffic',
    description:
      'One entry per dependency (postgres, redis, buffer, buffer-disk, revocations), each up or down. 503 only while starting (until the revoked sessions are loaded once), while shutting down, or when the instance can take neither a direct write (PostgreSQL unreachable) nor a buffered one (no room in the buffer or on its volume). PostgreSQL alone being down keeps 200: writes are buffered.',
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
