import { Counter, Gauge, Histogram, Registry } from '../transport/prometheus.js';
import { ConnectionMetrics } from '../transport/connection-limits.js';
import { collectProcessMetrics } from '../transport/process-metrics.js';
import type { AccessRecord } from '../proxy/access-log.js';

/**
 * The proxy's Prometheus metrics, on a registry of their own (tests never share counters) or on the
 * one `meshca sidecar` shares with its agent, so one `/metrics` shows every part.
 * Named after Istio's standard metrics where one exists (requests by response code, a duration
 * histogram), with meshca's prefix and the enforcement verdict as a label.
 */
export class ProxyMetrics {
  readonly registry: Registry;
  readonly #requests: Counter<'direction' | 'verdict' | 'response_code'>;
  readonly #duration: Histogram<'direction'>;
  readonly #upstreamErrors: Counter<'direction' | 'code'>;
  readonly policyReloads: Counter<'result'>;
  /** Connections the listeners refused at their cap. */
  readonly connections: ConnectionMetrics;

  constructor(options: { defaultMetrics?: boolean; openConnections?: () => number; registry?: Registry } = {}) {
    this.registry = options.registry ?? new Registry();
    if (options.defaultMetrics) collectProcessMetrics(this.registry);
    this.#requests = new Counter({
      name: 'meshca_proxy_requests_total',
      help: 'Requests answered by the proxy, by direction, enforcement verdict and response code.',
      labelNames: ['direction', 'verdict', 'response_code'],
      registers: [this.registry],
    });
    this.#duration = new Histogram({
      name: 'meshca_proxy_request_duration_seconds',
      help: 'Time from request headers to the end of the response.',
      labelNames: ['direction'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [this.registry],
    });
    this.#upstreamErrors = new Counter({
      name: 'meshca_proxy_upstream_errors_total',
      help: 'Requests the upstream could not answer, by error code.',
      labelNames: ['direction', 'code'],
      registers: [this.registry],
    });
    this.policyReloads = new Counter({
      name: 'meshca_proxy_policy_reloads_total',
      help: 'Policy file changes, by result; a failure keeps the last good policy.',
      labelNames: ['result'],
      registers: [this.registry],
    });
    this.connections = new ConnectionMetrics(this.registry);
    const open = options.openConnections;
    new Gauge({
      name: 'meshca_proxy_open_connections',
      help: 'Client mTLS connections open on the inbound proxy.',
      registers: [this.registry],
      collect() {
        this.set(open?.() ?? 0);
      },
    });
  }

  /** Records one answered request; pass as the proxy's `onRequest`. */
  readonly record = (r: AccessRecord): void => {
    this.#requests.inc({ direction: r.direction, verdict: r.verdict, response_code: r.status });
    this.#duration.observe({ direction: r.direction }, r.durationMs / 1000);
    if (r.code === 'ERR_UPSTREAM_UNAVAILABLE' || r.code === 'ERR_UPSTREAM_IDENTITY') this.#upstreamErrors.inc({ direction: r.direction, code: r.code });
  };
}
