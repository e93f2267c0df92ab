/**
 * Request count and latency (`http_requests_total`, `http_request_duration_seconds`), labelled
 * by method, route template and status code. The route is the template
 * (`/api/v1/tasks/:id`), never the raw URL, which would give every id a series of its own;
 * what matched no route is `UNMATCHED_ROUTE`.
 *
 * Why not prom-client's own Counter and Histogram on the request path: each `inc`/`observe`
 * validates the labels, builds a hash string and boxes the bucket bound into a property key,
 * about 1.4 µs and several allocations per request together. Here a request finds its series
 * through three cached map lookups and adds to a `Float64Array`: no allocation once the series
 * exists. prom-client still renders both families, at scrape time, from these numbers.
 */
import type { Metric, Registry } from 'prom-client';

export const UNMATCHED_ROUTE = 'unmatched';

/** Upper bounds in seconds: from 1 ms (a cached read) to 10 s (the default request deadline). */
export const DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;

type LabelName = 'method' | 'route' | 'status_code';
type Labels = Record<LabelName, string>;

/** `[count, sum, bucket 0 … bucket n-1, overflow]`; buckets are per bound, not cumulative. */
const COUNT = 0;
const SUM = 1;
const FIRST_BUCKET = 2;

interface Series {
  labels: Labels;
  values: Float64Array;
}

interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

export class HttpMetrics {
  private readonly series: Series[] = [];
  /** route → method → status code → series. Bounded: routes, methods and codes are finite. */
  private readonly index = new Map<string, Map<string, Map<number, Series>>>();

  constructor(registry: Registry) {
    registry.registerMetric(
      collector(
        'http_requests_total',
        'counter',
        'HTTP requests answered, by method, route template and status code.',
        () => this.series.map(({ labels, values }) => ({ labels, value: values[COUNT]! })),
      ),
    );
    registry.registerMetric(
      collector(
        'http_request_duration_seconds',
        'histogram',
        'Time from receiving a request to the end of its response, by method, route template and status code.',
        () => this.histogramSamples(),
      ),
    );
  }

  record(method: string, route: string | undefined, statusCode: number, seconds: number): void {
    const values = this.seriesFor(method, route ?? UNMATCHED_ROUTE, statusCode).values;
    values[COUNT]! += 1;
    values[SUM]! += seconds;
    let bucket = 0;
    while (bucket < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[bucket]!) bucket += 1;
    values[FIRST_BUCKET + bucket]! += 1;
  }

  private seriesFor(method: string, route: string, statusCode: number): Series {
    let byMethod = this.index.get(route);
    if (!byMethod) {
      byMethod = new Map();
      this.index.set(route, byMethod);
    }
    let byStatus = byMethod.get(method);
    if (!byStatus) {
      byStatus = new Map();
      byMethod.set(method, byStatus);
    }
    let series = byStatus.get(statusCode);
    if (!series) {
      series = {
        labels: { method, route, status_code: String(statusCode) },
        values: new Float64Array(FIRST_BUCKET + DURATION_BUCKETS.length + 1),
      };
      byStatus.set(statusCode, series);
      this.series.push(series);
    }
    return series;
  }

  private histogramSamples(): Sample[] {
    const samples: Sample[] = [];
    for (const { labels, values } of this.series) {
      let cumulative = 0;
      DURATION_BUCKETS.forEach((bound, i) => {
        cumulative += values[FIRST_BUCKET + i]!;
        samples.push({
          metricName: 'http_request_duration_seconds_bucket',
          labels: { ...labels, le: bound },
          value: cumulative,
        });
      });
      samples.push(
        {
          metricName: 'http_request_duration_seconds_bucket',
          labels: { ...labels, le: '+Inf' },
          value: values[COUNT]!,
        },
        { metricName: 'http_request_duration_seconds_sum', labels, value: values[SUM]! },
        { metricName: 'http_request_duration_seconds_count', labels, value: values[COUNT]! },
      );
    }
    return samples;
  }
}

/**
 * A metric family whose samples are computed at scrape time. prom-client's registry reads any
 * registered metric through `get()` (name, help, type, samples); it has no public "constant
 * histogram" class, hence the cast. The e2e test asserts the rendered families.
 */
function collector(
  name: string,
  type: 'counter' | 'histogram',
  help: string,
  samples: () => Sample[],
): Metric {
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum',
    get: () => Promise.resolve({ name, help, type, aggregator: 'sum', values: samples() }),
    reset: () => undefined,
  };
  return metric as unknown as Metric;
}
