import { Counter, Gauge, Histogram, Registry } from './prometheus.js';
import { collectProcessMetrics } from './process-metrics.js';

/**
 * The CA's Prometheus metrics. One registry per server instance so tests (and several CAs in
 * one process) never share counters.
 */
export class CaMetrics {
  readonly registry = new Registry();
  readonly issued: Counter<'transport'>;
  readonly denied: Counter<'transport' | 'reason'>;
  readonly latency: Histogram<'transport' | 'result'>;
  readonly caExpiry: Gauge<'serial'>;
  readonly bundleExpiry: Gauge<'fingerprint'>;

  constructor(
    options: {
      defaultMetrics?: boolean;
      caNotAfter?: () => Date;
      caSerial?: () => string;
      /** Every root in the trust bundle (active, prepared, retiring), for per-authority expiry. */
      bundleRoots?: () => readonly { readonly fingerprint256: string; readonly validTo: string }[];
      now?: () => Date;
    } = {},
  ) {
    if (options.defaultMetrics) collectProcessMetrics(this.registry);
    this.issued = new Counter({
      name: 'meshca_certificates_issued_total',
      help: 'Workload certificates issued.',
      labelNames: ['transport'],
      registers: [this.registry],
    });
    this.denied = new Counter({
      name: 'meshca_certificate_requests_denied_total',
      help: 'Certificate requests refused, by error code.',
      labelNames: ['transport', 'reason'],
      registers: [this.registry],
    });
    this.latency = new Histogram({
      name: 'meshca_certificate_request_duration_seconds',
      help: 'Time to answer a certificate request.',
      labelNames: ['transport', 'result'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    });
    const { caNotAfter, caSerial, bundleRoots } = options;
    const now = options.now ?? (() => new Date());
    this.caExpiry = new Gauge({
      name: 'meshca_ca_certificate_expiry_seconds',
      help: 'Seconds until the CA signing certificate expires.',
      labelNames: ['serial'],
      registers: [this.registry],
      collect() {
        if (!caNotAfter) return;
        this.reset();
        this.set({ serial: caSerial?.() ?? '' }, (caNotAfter().getTime() - now().getTime()) / 1000);
      },
    });
    this.bundleExpiry = new Gauge({
      name: 'meshca_trust_bundle_authority_expiry_seconds',
      help: 'Seconds until each root in the trust bundle expires.',
      labelNames: ['fingerprint'],
      registers: [this.registry],
      collect() {
        if (!bundleRoots) return;
        this.reset();
        for (const root of bundleRoots()) {
          this.set({ fingerprint: root.fingerprint256 }, (new Date(root.validTo).getTime() - now().getTime()) / 1000);
        }
      },
    });
    // Absolute times beside the seconds-left gauges, as cert-manager and istiod export them:
    // an alert on `… - time() < 30d` survives a scrape gap, and dashboards show a date.
    new Gauge<'serial'>({
      name: 'meshca_ca_certificate_expiration_timestamp_seconds',
      help: 'When the CA signing certificate expires, in seconds since the Unix epoch.',
      labelNames: ['serial'],
      registers: [this.registry],
      collect() {
        if (!caNotAfter) return;
        this.reset();
        this.set({ serial: caSerial?.() ?? '' }, caNotAfter().getTime() / 1000);
      },
    });
    new Gauge<'fingerprint'>({
      name: 'meshca_trust_bundle_authority_expiration_timestamp_seconds',
      help: 'When each root in the trust bundle expires, in seconds since the Unix epoch.',
      labelNames: ['fingerprint'],
      registers: [this.registry],
      collect() {
        if (!bundleRoots) return;
        this.reset();
        for (const root of bundleRoots()) this.set({ fingerprint: root.fingerprint256 }, new Date(root.validTo).getTime() / 1000);
      },
    });
  }

  /** Records one answered request; `reason` is the error code for refusals. */
  observe(transport: 'grpc' | 'http', startedAtMs: number, reason?: string): void {
    const seconds = (performance.now() - startedAtMs) / 1000;
    if (reason === undefined) {
      this.issued.inc({ transport });
      this.latency.observe({ transport, result: 'issued' }, seconds);
    } else {
      this.denied.inc({ transport, reason });
      this.latency.observe({ transport, result: 'denied' }, seconds);
    }
  }
}
