/**
 * The agent's Prometheus metrics: rotations, failures, the SVID's and the roots' remaining
 * lifetimes. They register on the registry they are given, so `meshca sidecar` serves them
 * beside the proxy's on one `/metrics`.
 */
import { Counter, Gauge, Registry } from './prometheus.js';
import type { FederatedBundles } from '../agent/federated-bundles.js';
import type { SvidRotator } from '../agent/svid-rotator.js';
import type { Clock } from '../clock.js';

export class AgentMetrics {
  readonly registry: Registry;
  readonly rotations: Counter;
  readonly failures: Counter;

  constructor(rotator: SvidRotator, clock: Clock, federation: FederatedBundles | undefined, registry: Registry = new Registry()) {
    this.registry = registry;
    this.rotations = new Counter({ name: 'meshca_agent_rotations_total', help: 'X.509-SVIDs obtained from the CA.', registers: [this.registry] });
    this.failures = new Counter({
      name: 'meshca_agent_rotation_failures_total',
      help: 'Failed attempts to obtain an X.509-SVID.',
      registers: [this.registry],
    });
    new Gauge({
      name: 'meshca_agent_svid_expiry_seconds',
      help: 'Seconds until the current X.509-SVID expires; absent while no valid SVID is held (see meshca_agent_svid_valid).',
      registers: [this.registry],
      collect() {
        this.reset();
        try {
          this.set((rotator.getX509Svid().notAfter.getTime() - clock.now().getTime()) / 1000);
        } catch {
          // No SVID: leave the series absent rather than report a made-up number.
        }
      },
    });
    new Gauge({
      name: 'meshca_agent_svid_expiration_timestamp_seconds',
      help: 'When the current X.509-SVID expires, in seconds since the Unix epoch; absent while no valid SVID is held.',
      registers: [this.registry],
      collect() {
        this.reset();
        if (!rotator.hasValidSvid()) return;
        try {
          this.set(rotator.getX509Svid().notAfter.getTime() / 1000);
        } catch {
          // No SVID: absent, as above.
        }
      },
    });
    new Gauge({
      name: 'meshca_agent_bundle_authority_expiry_seconds',
      help: 'Seconds until each trusted root expires, per trust domain (own and federated); negative once expired.',
      labelNames: ['trust_domain', 'fingerprint'],
      registers: [this.registry],
      collect() {
        this.reset();
        const now = clock.now().getTime();
        for (const bundle of rotator.getX509Bundles()) {
          for (const cert of bundle.authorities) {
            this.set({ trust_domain: bundle.trustDomain.name, fingerprint: cert.fingerprint256 }, (Date.parse(cert.validTo) - now) / 1000);
          }
        }
      },
    });
    if (federation !== undefined) {
      new Gauge({
        name: 'meshca_agent_federated_bundle_fetch_failures',
        help: 'Consecutive failed fetches of each federated trust bundle (0 after a success).',
        labelNames: ['trust_domain'],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const status of federation.status()) this.set({ trust_domain: status.trustDomain.name }, status.failures);
        },
      });
    }
    new Gauge({
      name: 'meshca_agent_svid_valid',
      help: '1 while a valid X.509-SVID is held, else 0.',
      registers: [this.registry],
      collect() {
        this.set(rotator.hasValidSvid() ? 1 : 0);
      },
    });
  }
}
