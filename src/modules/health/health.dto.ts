/**
 * The Terminus health-check body as the OpenAPI document describes it: one entry per
 * dependency, each `up` or `down` with whatever its indicator adds (the buffer's depth, say).
 */
import { ApiProperty, type SchemaObject } from '@nestjs/swagger';

const INDICATOR: SchemaObject = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string', enum: ['up', 'down'] } },
  additionalProperties: true,
};
const INDICATORS = { type: 'object' as const, additionalProperties: INDICATOR };

export class HealthCheckResultDto {
  @ApiProperty({ enum: ['ok', 'error', 'shutting_down'], example: 'ok' })
  status!: 'ok' | 'error' | 'shutting_down';

  @ApiProperty({
    ...INDICATORS,
    description: 'The dependencies that are up',
    example: { redis: { status: 'up' } },
  })
  info!: Record<string, { status: 'up' | 'down' }>;

  @ApiProperty({ ...INDICATORS, description: 'The dependencies that are down', example: {} })
  error!: Record<string, { status: 'up' | 'down' }>;

  @ApiProperty({
    ...INDICATORS,
    description:
      'Every indicator checked. Readiness: `postgres`, `redis`, `buffer` (its depth, parked and set-aside counts), `buffer-disk`, `revocations`. Liveness: `process`.',
    example: {
      postgres: { status: 'up', state: 'up' },
      redis: { status: 'up' },
      buffer: {
        status: 'up',
        state: 'accepting',
        depth: 0,
        parked: 0,
        setAside: 0,
        oldestAgeMs: null,
        bytes: 0,
        deadLetters: 0,
      },
      'buffer-disk': { status: 'up' },
      revocations: { status: 'up' },
    },
  })
  details!: Record<string, { status: 'up' | 'down' }>;
}
