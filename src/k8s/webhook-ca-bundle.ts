/**
 * Keeps the injection webhook's `caBundle` equal to the mesh roots, as istiod patches its own
 * webhook configuration: the API server verifies the CA's serving certificate (issued by the
 * mesh CA itself) against this bundle, so a root made at first start or a rotated root is trusted
 * without anyone editing YAML.
 *
 * Every webhook in the one MutatingWebhookConfiguration meshca owns gets the bundle; other
 * configurations are never read. The replace carries the resourceVersion it read, so a
 * concurrent edit (kubectl, another replica) is a 409 that makes it re-read, never a lost write.
 */
import { AdmissionregistrationV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1MutatingWebhookConfiguration } from '@kubernetes/client-node';

import { silentLogger, type Logger } from '../log.js';
import { callKube, KubeApiError, kubeStatusOf, readOptional, type CallKubeOptions } from './kube-api.js';

export const DEFAULT_WEBHOOK_CONFIGURATION_NAME = 'meshca-sidecar-injector';

export type WebhookCaBundleOutcome = 'updated' | 'unchanged' | 'missing';

export interface WebhookCaBundlePublisherOptions {
  readonly kubeConfig: KubeConfig;
  readonly name?: string;
  readonly logger?: Logger;
  readonly requestTimeoutMs?: number;
}

export class WebhookCaBundlePublisher {
  readonly name: string;
  readonly #api: AdmissionregistrationV1Api;
  readonly #logger: Logger;
  readonly #timeoutMs: number | undefined;
  #missingLogged = false;

  constructor(options: WebhookCaBundlePublisherOptions) {
    this.name = options.name ?? DEFAULT_WEBHOOK_CONFIGURATION_NAME;
    this.#api = options.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
    this.#logger = (options.logger ?? silentLogger).child({ component: 'webhook-ca-bundle' });
    this.#timeoutMs = options.requestTimeoutMs;
  }

  /**
   * Makes every webhook's `clientConfig.caBundle` the given roots. `missing` when the
   * configuration does not exist (injection not installed): said once, not an error.
   */
  async publish(rootsPem: string, signal?: AbortSignal): Promise<WebhookCaBundleOutcome> {
    const caBundle = Buffer.from(rootsPem).toString('base64');
    const options: CallKubeOptions = { ...(signal ? { signal } : {}), ...(this.#timeoutMs === undefined ? {} : { timeoutMs: this.#timeoutMs }) };
    const name = this.name;
    for (let round = 0; round < 3; round++) {
      const current = await readOptional(`get MutatingWebhookConfiguration ${name}`, (o) => this.#api.readMutatingWebhookConfiguration({ name }, o), options);
      if (current === undefined) {
        if (!this.#missingLogged) this.#logger.info({ name }, 'no MutatingWebhookConfiguration to keep the caBundle of (sidecar injection not installed)');
        this.#missingLogged = true;
        return 'missing';
      }
      this.#missingLogged = false;
      const webhooks = current.webhooks ?? [];
      if (webhooks.every((w) => w.clientConfig.caBundle === caBundle)) return 'unchanged';
      const body: V1MutatingWebhookConfiguration = {
        ...current,
        // metadata keeps its resourceVersion: the replace is a compare-and-swap.
        webhooks: webhooks.map((w) => ({ ...w, clientConfig: { ...w.clientConfig, caBundle } })),
      };
      try {
        await callKube(`replace MutatingWebhookConfiguration ${name}`, (o) => this.#api.replaceMutatingWebhookConfiguration({ name, body }, o), options);
        this.#logger.info({ name, webhooks: webhooks.length }, 'set the injection webhook caBundle to the mesh roots');
        return 'updated';
      } catch (err) {
        if (kubeStatusOf(err) !== 409) throw err;
      }
    }
    throw new KubeApiError(`replace MutatingWebhookConfiguration ${name}: it kept changing under us`, { rule: 'conflict', status: 409 });
  }
}
