/**
 * The request histogram as Prometheus reads it: cumulative buckets whose `le` bound is
 * inclusive, `+Inf` equal to the count, and one series per method, route template and status.
 */
import { Registry } from 'prom-client';
import {
  DURATION_BUCKETS,
  HttpMetrics,
  UNMATCHED_ROUTE,
} from '../../src/modules/metrics/http-metrics.js';

async function exposition(record: (http: HttpMetrics) => void): Promise<string[]> {
  const registry = new Registry();
  record(new HttpMetrics(registry));
  return (await registry.metrics()).split('\n');
}

describe('HttpMetrics', () => {
  it('renders cumulative buckets with inclusive bounds, the sum and the count', async () => {
    const lines = await exposition((http) => {
      http.record('GET', '/api/v1/tasks/:id', 200, 0.0005);
      http.record('GET', '/api/v1/tasks/:id', 200, 0.005); // exactly on a bound: counted in it
      http.record('GET', '/api/v1/tasks/:id', 200, 0.3);
      http.record('GET', '/api/v1/tasks/:id', 200, 60); // beyond the last bound: only in +Inf
    });
    const labels = 'method="GET",route="/api/v1/tasks/:id",status_code="200"';
    const bucket = (le: string) =>
      lines.find((l) => l.startsWith(`http_request_duration_seconds_bucket{${labels},le="${le}"}`));
    expect(bucket('0.001')).toMatch(/ 1$/);
    expect(bucket('0.0025')).toMatch(/ 1$/);
    expect(bucket('0.005')).toMatch(/ 2$/);
    expect(bucket('0.25')).toMatch(/ 2$/);
    expect(bucket('0.5')).toMatch(/ 3$/);
    expect(bucket('10')).toMatch(/ 3$/);
    expect(bucket('+Inf')).toMatch(/ 4$/);
    expect(lines).toContain(`http_request_duration_seconds_count{${labels}} 4`);
    expect(lines).toContain(`http_request_duration_seconds_sum{${labels}} 60.3055`);
    expect(lines).toContain(`http_requests_total{${labels}} 4`);
    expect(lines.filter((l) => l.startsWith('http_request_duration_seconds_bucket{'))).toHaveLength(
      DURATION_BUCKETS.length + 1,
    );
  });

  it('keeps one series per method, route template and status code', async () => {
    const lines = await exposition((http) => {
      http.record('GET', '/health/live', 200, 0.001);
      http.record('GET', '/health/live', 200, 0.001);
      http.record('HEAD', '/health/live', 200, 0.001);
      http.record('GET', '/health/live', 503, 0.001);
      http.record('GET', undefined, 404, 0.001);
    });
    expect(lines.filter((l) => l.startsWith('http_requests_total{'))).toEqual([
      'http_requests_total{method="GET",route="/health/live",status_code="200"} 2',
      'http_requests_total{method="HEAD",route="/health/live",status_code="200"} 1',
      'http_requests_total{method="GET",route="/health/live",status_code="503"} 1',
      `http_requests_total{method="GET",route="${UNMATCHED_ROUTE}",status_code="404"} 1`,
    ]);
    expect(lines).toContain('# TYPE http_requests_total counter');
    expect(lines).toContain('# TYPE http_request_duration_seconds histogram');
  });

  it('escapes label values it did not choose', async () => {
    const lines = await exposition((http) => http.record('GET', '/odd/"quoted"\\path', 200, 0.001));
    expect(lines).toContain(
      'http_requests_total{method="GET",route="/odd/\\"quoted\\"\\\\path",status_code="200"} 1',
    );
  });
});
