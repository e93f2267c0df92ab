/**
 * Node's default process metrics (CPU, memory, heap, event-loop lag, GC, handles), collected
 * once per process. They describe the process, not an application instance, and prom-client
 * starts a GC observer and an event-loop monitor for every collection it is asked for: tests
 * that start several apps in one process must not start one per app. Each app merges this
 * registry with its own (`Registry.merge` shares the metric objects, it does not copy them).
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

let processRegistry: Registry | undefined;

export function processMetricsRegistry(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}
