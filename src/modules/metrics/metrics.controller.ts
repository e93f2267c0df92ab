/**
 * `GET /metrics`: Prometheus text format, public like the health routes (scrapers carry no
 * token; keep the port off the public ingress or filter the path there).
 */
import { Controller, Get, Header } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import { Public } from '../../common/http/public.decorator.js';
import { METRICS_CONTENT_TYPE, MetricsService } from './metrics.service.js';

@ApiTags('metrics')
@Public()
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  @Get()
  @Header('Content-Type', METRICS_CONTENT_TYPE)
  @Header('Cache-Control', 'no-store')
  @ApiOperation({
    operationId: 'metrics',
    summary: 'Prometheus metrics of this instance',
    description:
      'Request counts and latency by method, route template and status code; offline buffer depth, oldest age and buffered / replayed / dead-lettered totals; PostgreSQL pool usage; Redis and PostgreSQL state; Node process metrics.',
  })
  @ApiProduces('text/plain')
  @ApiOkResponse({
    description: 'Prometheus text exposition format 0.0.4',
    schema: { type: 'string' },
  })
  scrape(): Promise<string> {
    return this.metrics.render();
  }
}
