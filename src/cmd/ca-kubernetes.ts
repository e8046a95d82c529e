/**
 * `meshca ca serve --kubernetes`: the CA's state lives in the cluster instead of `--data-dir`.
 *
 * - `loadAuthorityFromKubernetes` replaces the data-dir authority: plug-in `cacerts` Secret, else
 *   the self-signed Secret, else a new root stored race-free (see k8s/authority-secret.ts).
 * - `startKubernetesIntegration` runs leader election and, on the leader only, publishes the
 *   trust bundle as a ConfigMap in every namespace. Every replica serves certificates; only
 *   publication needs a single writer.
 *
 * Wiring only: the behaviour is in src/k8s/.
 */
import { readFileSync } from 'node:fs';

import { KubeConfig } from '@kubernetes/client-node';

import type { Clock } from '../clock.js';
import { ConfigError } from '../errors.js';
import { loadOrCreateAuthoritySecret } from '../k8s/authority-secret.js';
import { LeaseLeaderElector } from '../k8s/leader-election.js';
import type { LeaseLeaderElectorOptions } from '../k8s/leader-election.js';
import { RootCertPublisher } from '../k8s/root-publisher.js';
import { WebhookCaBundlePublisher } from '../k8s/webhook-ca-bundle.js';
import type { Logger } from '../log.js';
import { createSelfSignedRoot, loadAuthority } from '../pki/authority.js';
import type { Authority } from '../pki/authority.js';

const IN_CLUSTER_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** In-cluster config (or `$KUBECONFIG` / ~/.kube/config) unless a kubeconfig path is given. */
export function createKubeConfig(kubeconfigPath?: string): KubeConfig {
  const kubeConfig = new KubeConfig();
  try {
    if (kubeconfigPath === undefined) kubeConfig.loadFromDefault();
    else kubeConfig.loadFromFile(kubeconfigPath);
  } catch (err) {
    throw new ConfigError([`cannot load kubeconfig${kubeconfigPath === undefined ? '' : ` ${kubeconfigPath}`}: ${(err as Error).message}`], { cause: err });
  }
  return kubeConfig;
}

export interface PodIdentity {
  readonly namespace: string;
  /** The leader-election identity. */
  readonly podName: string;
}

/**
 * The pod's namespace and name from the downward API (`POD_NAMESPACE`, `POD_NAME`, see
 * k8s/base/deployment.yaml), the namespace falling back to the service-account mount.
 */
export function resolvePodIdentity(env: Readonly<Record<string, string | undefined>> = process.env, readNamespaceFile: () => string | undefined = defaultNamespaceFile): PodIdentity {
  const namespace = env['POD_NAMESPACE']?.trim() || readNamespaceFile()?.trim() || '';
  const podName = env['POD_NAME']?.trim() || env['HOSTNAME']?.trim() || '';
  const problems: string[] = [];
  if (namespace === '') problems.push('--kubernetes needs the CA namespace: set POD_NAMESPACE (downward API metadata.namespace)');
  if (podName === '') problems.push('--kubernetes needs a unique replica name: set POD_NAME (downward API metadata.name)');
  if (problems.length > 0) throw new ConfigError(problems);
  return { namespace, podName };
}

function defaultNamespaceFile(): string | undefined {
  try {
    return readFileSync(IN_CLUSTER_NAMESPACE_FILE, 'utf8');
  } catch {
    return undefined;
  }
}

export interface LoadAuthorityFromKubernetesOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  readonly trustDomain: string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Create a self-signed root when the cluster has no CA yet (`--self-signed`). Default true. */
  readonly selfSigned?: boolean;
  readonly secretName?: string;
  readonly selfSignedSecretName?: string;
}

/** Reads (or creates) the CA Secret and validates it like a data-dir CA. */
export async function loadAuthorityFromKubernetes(options: LoadAuthorityFromKubernetesOptions): Promise<Authority> {
  const { clock, trustDomain } = options;
  const pem = await loadOrCreateAuthoritySecret({
    kubeConfig: options.kubeConfig,
    namespace: options.namespace,
    logger: options.logger,
    ...(options.secretName === undefined ? {} : { secretName: options.secretName }),
    ...(options.selfSignedSecretName === undefined ? {} : { selfSignedSecretName: options.selfSignedSecretName }),
    ...(options.selfSigned === false
      ? {}
      : {
          create: async () => {
            const root = await createSelfSignedRoot({ trustDomain, now: clock.now() });
            return { ...root, rootPem: root.certPem };
          },
        }),
  });
  return loadAuthority(pem, clock.now());
}

export interface StartKubernetesIntegrationOptions {
  readonly kubeConfig: KubeConfig;
  /** The CA's namespace, where the Lease lives. */
  readonly namespace: string;
  /** The current trust bundle; read when leadership starts and on `refreshRoots()`. */
  readonly rootsPem: () => string;
  readonly logger: Logger;
  readonly clock: Clock;
  /** This replica's unique name (the pod name). */
  readonly identity: string;
  readonly leaseName?: string;
  readonly configMapName?: string;
  /** With the sidecar injector: keep the caBundle of MutatingWebhookConfiguration `meshca-sidecar-injector` (or this name) equal to the roots. */
  readonly injectionWebhook?: boolean | string;
  readonly excludeNamespaces?: readonly string[];
  readonly resyncIntervalMs?: number;
  readonly election?: Pick<LeaseLeaderElectorOptions, 'leaseDurationSeconds' | 'renewDeadlineMs' | 'retryPeriodMs' | 'random'>;
}

export interface KubernetesIntegration {
  readonly elector: LeaseLeaderElector;
  readonly publisher: RootCertPublisher;
  /** Re-reads `rootsPem()` and republishes at once if it changed (call after a root rotation). */
  refreshRoots(): void;
  /** Steps down (releasing the lease) and stops publishing. */
  close(): Promise<void>;
}

export async function startKubernetesIntegration(options: StartKubernetesIntegrationOptions): Promise<KubernetesIntegration> {
  const logger = options.logger.child({ component: 'kubernetes' });
  const { clock } = options;
  const elector = new LeaseLeaderElector({
    kubeConfig: options.kubeConfig,
    namespace: options.namespace,
    identity: options.identity,
    clock,
    logger,
    ...(options.leaseName === undefined ? {} : { leaseName: options.leaseName }),
    ...options.election,
  });
  const publisher = new RootCertPublisher({
    kubeConfig: options.kubeConfig,
    rootsPem: options.rootsPem(),
    clock,
    logger,
    ...(options.configMapName === undefined ? {} : { configMapName: options.configMapName }),
    ...(options.excludeNamespaces === undefined ? {} : { excludeNamespaces: options.excludeNamespaces }),
    ...(options.resyncIntervalMs === undefined ? {} : { resyncIntervalMs: options.resyncIntervalMs }),
  });

  // The webhook's caBundle follows every publication pass (leader only, at start, after a root
  // change and at each resync, which also repairs a hand edit). Passes are chained: one writer.
  if (options.injectionWebhook !== undefined && options.injectionWebhook !== false) {
    const name = typeof options.injectionWebhook === 'string' ? options.injectionWebhook : undefined;
    const webhook = new WebhookCaBundlePublisher({ kubeConfig: options.kubeConfig, logger, ...(name === undefined ? {} : { name }) });
    let chain = Promise.resolve();
    let lastProblem: string | undefined;
    publisher.on('synced', () => {
      chain = chain
        .then(() => webhook.publish(publisher.rootsPem))
        .then(
          () => {
            lastProblem = undefined;
          },
          (err: unknown) => {
            const problem = (err as Error).message;
            if (problem !== lastProblem) logger.warn({ err, name: webhook.name }, 'cannot set the injection webhook caBundle; retrying at the next resync');
            lastProblem = problem;
          },
        );
    });
  }

  const refreshRoots = (): void => {
    try {
      publisher.update(options.rootsPem());
    } catch (err) {
      logger.error({ err }, 'the trust bundle cannot be published');
    }
  };

  // Publication follows leadership. Runs are chained so a quick lose-and-regain never has two
  // publishers writing at once.
  let publishing: { readonly controller: AbortController; readonly done: Promise<void> } | undefined;
  elector.on('started-leading', () => {
    refreshRoots();
    const controller = new AbortController();
    const previous = publishing?.done ?? Promise.resolve();
    const done = previous
      .then(() => (controller.signal.aborted ? undefined : publisher.run(controller.signal)))
      .catch((err: unknown) => logger.error({ err }, 'root certificate publisher stopped unexpectedly'));
    publishing = { controller, done };
  });
  elector.on('stopped-leading', () => publishing?.controller.abort());

  const stop = new AbortController();
  const electing = elector.run(stop.signal).catch((err: unknown) => logger.error({ err }, 'leader election stopped unexpectedly'));
  logger.info({ namespace: options.namespace, identity: options.identity }, 'kubernetes integration started');

  let closing: Promise<void> | undefined;
  return {
    elector,
    publisher,
    refreshRoots,
    close() {
      closing ??= (async () => {
        stop.abort();
        await electing;
        publishing?.controller.abort();
        await publishing?.done;
      })();
      return closing;
    },
  };
}
