import { collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * prom-client's process and Node.js metrics (`process_*`, `nodejs_*`), less the three gauges it
 * names `_total` (active handles, requests, resources): `promtool check metrics` refuses a gauge
 * with a counter's suffix, and a scrape that does not lint is not one operators can rely on.
 */
const MISNAMED_GAUGES = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_GAUGES) registry.removeSingleMetric(name);
}
