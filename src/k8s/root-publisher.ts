/**
 * Publishes the mesh trust bundle as a ConfigMap in every namespace, as istiod does with
 * `istio-ca-root-cert`: workloads mount it (key `root-cert.pem`) to verify the CA and each other
 * without any credential of their own.
 *
 * Only the leader runs this (see `LeaseLeaderElector`): N replicas writing the same objects
 * would only produce conflicts. A run lists the namespaces, and for each one that is not
 * excluded or terminating, creates the ConfigMap or replaces it when its `root-cert.pem`
 * differs. Equal content is left alone, so a resync of an up-to-date cluster writes nothing.
 * Runs repeat every `resyncIntervalMs` (that picks up new namespaces and repairs deleted or
 * edited ConfigMaps), immediately after `update()`, and sooner with backoff after failures.
 * Other keys and labels on an existing ConfigMap are kept.
 */
import { X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';

import { CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1ConfigMap } from '@kubernetes/client-node';

import { sleep, systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { ConfigError } from '../errors.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import { callKube, KubeApiError, kubeStatusOf, MESHCA_LABELS, readOptional, toKubeApiError } from './kube-api.js';

export const DEFAULT_ROOT_CONFIGMAP_NAME = 'meshca-root-cert';
export const ROOT_CERT_KEY = 'root-cert.pem';
/** System namespaces run no mesh workloads; the API server rejects writes to some of them anyway. */
export const DEFAULT_EXCLUDED_NAMESPACES: readonly string[] = Object.freeze(['kube-system', 'kube-public', 'kube-node-lease']);
export const DEFAULT_RESYNC_INTERVAL_MS = 60_000;

export interface RootCertPublisherOptions {
  readonly kubeConfig: KubeConfig;
  /** The trust bundle to publish (one or more PEM certificates). `update()` replaces it. */
  readonly rootsPem: string;
  /** Default `meshca-root-cert` (Istio: `istio-ca-root-cert`). */
  readonly configMapName?: string;
  /** Default: kube-system, kube-public, kube-node-lease. */
  readonly excludeNamespaces?: readonly string[];
  /** Default 60 s. */
  readonly resyncIntervalMs?: number;
  /** First retry delay after a failed run, doubling up to the resync interval. Default 1 s. */
  readonly retryBaseMs?: number;
  /** Namespaces handled at once. Default 4: enough for thousands of namespaces, gentle on the API server. */
  readonly concurrency?: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
  readonly requestTimeoutMs?: number;
}

export interface PublishFailure {
  readonly namespace: string;
  readonly error: KubeApiError;
}

export interface PublishResult {
  /** Namespaces considered (listed, minus excluded and terminating ones). */
  readonly namespaces: readonly string[];
  readonly created: readonly string[];
  readonly updated: readonly string[];
  readonly unchanged: readonly string[];
  readonly failed: readonly PublishFailure[];
}

export interface RootCertPublisherEvents {
  /** A run reached every namespace it listed (some may have failed: see `failed`). */
  synced: [PublishResult];
  /** A run could not even list the namespaces. */
  'sync-failed': [KubeApiError];
}

type EnsureOutcome = 'created' | 'updated' | 'unchanged';

function checkRootsPem(rootsPem: unknown): string {
  if (typeof rootsPem !== 'string' || !rootsPem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new TypeError('rootsPem must hold at least one PEM certificate');
  }
  return rootsPem;
}

export class RootCertPublisher extends EventEmitter<RootCertPublisherEvents> {
  readonly configMapName: string;
  readonly #api: CoreV1Api;
  readonly #excluded: ReadonlySet<string>;
  readonly #resyncIntervalMs: number;
  readonly #retryBaseMs: number;
  readonly #concurrency: number;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #requestTimeoutMs: number | undefined;

  #rootsPem: string;
  #dirty = false;
  #wake: (() => void) | undefined;
  #running = false;

  constructor(options: RootCertPublisherOptions) {
    super();
    const problems: string[] = [];
    const resync = options.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS;
    const retryBase = options.retryBaseMs ?? 1000;
    const concurrency = options.concurrency ?? 4;
    const name = options.configMapName ?? DEFAULT_ROOT_CONFIGMAP_NAME;
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name) || name.length > 253) problems.push(`root ConfigMap name ${JSON.stringify(name)} is not a valid object name`);
    if (!(resync > 0)) problems.push(`resyncIntervalMs must be positive, got ${resync}`);
    if (!(retryBase > 0)) problems.push(`retryBaseMs must be positive, got ${retryBase}`);
    if (!Number.isInteger(concurrency) || concurrency < 1) problems.push(`concurrency must be a positive integer, got ${concurrency}`);
    if (problems.length > 0) throw new ConfigError(problems);
    this.#rootsPem = checkRootsPem(options.rootsPem);
    this.configMapName = name;
    this.#excluded = new Set(options.excludeNamespaces ?? DEFAULT_EXCLUDED_NAMESPACES);
    this.#resyncIntervalMs = resync;
    this.#retryBaseMs = retryBase;
    this.#concurrency = concurrency;
    this.#clock = options.clock ?? systemClock;
    this.#logger = (options.logger ?? silentLogger).child({ component: 'root-publisher', configMap: name });
    this.#requestTimeoutMs = options.requestTimeoutMs;
    try {
      this.#api = options.kubeConfig.makeApiClient(CoreV1Api);
    } catch (err) {
      throw new ConfigError([`kubeconfig cannot be used to publish the root certificate: ${err instanceof Error ? err.message : String(err)}`], { cause: err });
    }
  }

  get rootsPem(): string {
    return this.#rootsPem;
  }

  /** Replaces the published bundle; a running publisher starts a run at once. Equal content is a no-op. */
  update(rootsPem: string): void {
    const next = checkRootsPem(rootsPem);
    if (next === this.#rootsPem) return;
    this.#rootsPem = next;
    this.#dirty = true;
    this.#wake?.();
  }

  /**
   * One pass over all namespaces. Throws `KubeApiError` when the namespaces cannot be listed;
   * per-namespace failures are collected in `failed` so one broken namespace does not block
   * the rest.
   */
  async syncOnce(signal?: AbortSignal): Promise<PublishResult> {
    const pem = this.#rootsPem;
    const callOptions = this.#callOptions(signal);
    const list = await callKube('list namespaces', (o) => this.#api.listNamespace({}, o), callOptions);
    const namespaces = list.items
      .filter((ns) => ns.status?.phase !== 'Terminating' && ns.metadata?.deletionTimestamp === undefined)
      .map((ns) => ns.metadata?.name)
      .filter((ns): ns is string => typeof ns === 'string' && ns !== '' && !this.#excluded.has(ns))
      .sort();
    const outcome = { created: [] as string[], updated: [] as string[], unchanged: [] as string[], failed: [] as PublishFailure[] };
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < namespaces.length) {
        const namespace = namespaces[next++]!;
        if (signal?.aborted) throw signal.reason;
        try {
          outcome[await this.#ensure(namespace, pem, signal)].push(namespace);
        } catch (err) {
          if (signal?.aborted) throw err;
          outcome.failed.push({ namespace, error: toKubeApiError(err, `publish ConfigMap ${namespace}/${this.configMapName}`) });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, namespaces.length) }, worker));
    const result: PublishResult = {
      namespaces,
      created: outcome.created.sort(),
      updated: outcome.updated.sort(),
      unchanged: outcome.unchanged.sort(),
      failed: outcome.failed.sort((a, b) => a.namespace.localeCompare(b.namespace)),
    };
    this.#logResult(result);
    return result;
  }

  /**
   * Publishes until `signal` aborts: a run now, then on every `update()`, every resync interval,
   * and after failures with backoff. Failures are logged and retried, never thrown.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#running) throw new TypeError('RootCertPublisher.run is already running');
    this.#running = true;
    let consecutiveFailures = 0;
    try {
      while (!signal.aborted) {
        this.#dirty = false;
        let failed: boolean;
        try {
          const result = await this.syncOnce(signal);
          failed = result.failed.length > 0;
          this.emit('synced', result);
        } catch (err) {
          if (signal.aborted) break;
          const error = toKubeApiError(err, 'publish root certificate');
          this.#logger.warn({ err: error }, 'cannot list namespaces to publish the root certificate; retrying');
          failed = true;
          this.emit('sync-failed', error);
        }
        consecutiveFailures = failed ? consecutiveFailures + 1 : 0;
        if (this.#dirty) continue;
        const delayMs = failed ? Math.min(this.#resyncIntervalMs, this.#retryBaseMs * 2 ** Math.min(consecutiveFailures - 1, 30)) : this.#resyncIntervalMs;
        await this.#waitForWake(delayMs, signal);
      }
    } finally {
      this.#running = false;
    }
  }

  #callOptions(signal: AbortSignal | undefined): { signal?: AbortSignal; timeoutMs?: number } {
    return {
      ...(signal === undefined ? {} : { signal }),
      ...(this.#requestTimeoutMs === undefined ? {} : { timeoutMs: this.#requestTimeoutMs }),
    };
  }

  async #waitForWake(delayMs: number, signal: AbortSignal): Promise<void> {
    const wake = new AbortController();
    const onAbort = (): void => wake.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    this.#wake = () => wake.abort();
    try {
      await sleep(this.#clock, delayMs, wake.signal);
    } catch {
      // Woken early by update() or stopped: the loop condition tells which.
    } finally {
      this.#wake = undefined;
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Makes one namespace's ConfigMap hold `pem`; a 409 (a concurrent writer) is answered by re-reading. */
  async #ensure(namespace: string, pem: string, signal: AbortSignal | undefined): Promise<EnsureOutcome> {
    const name = this.configMapName;
    const callOptions = this.#callOptions(signal);
    for (let round = 0; round < 3; round++) {
      const current = await readOptional(
        `get ConfigMap ${namespace}/${name}`,
        (o) => this.#api.readNamespacedConfigMap({ name, namespace }, o),
        callOptions,
      );
      try {
        if (current === undefined) {
          const body: V1ConfigMap = {
            apiVersion: 'v1',
            kind: 'ConfigMap',
            metadata: { name, namespace, labels: { ...MESHCA_LABELS, 'app.kubernetes.io/component': 'root-cert' } },
            data: { [ROOT_CERT_KEY]: pem },
          };
          await callKube(`create ConfigMap ${namespace}/${name}`, (o) => this.#api.createNamespacedConfigMap({ namespace, body }, o), callOptions);
          return 'created';
        }
        if (current.data?.[ROOT_CERT_KEY] === pem) return 'unchanged';
        const body: V1ConfigMap = {
          ...current,
          // metadata keeps its resourceVersion: the replace is a compare-and-swap.
          metadata: { ...current.metadata, labels: { ...current.metadata?.labels, ...MESHCA_LABELS, 'app.kubernetes.io/component': 'root-cert' } },
          data: { ...current.data, [ROOT_CERT_KEY]: pem },
        };
        await callKube(`replace ConfigMap ${namespace}/${name}`, (o) => this.#api.replaceNamespacedConfigMap({ name, namespace, body }, o), callOptions);
        return 'updated';
      } catch (err) {
        if (kubeStatusOf(err) !== 409) throw err;
      }
    }
    throw new KubeApiError(`publish ConfigMap ${namespace}/${name}: it kept changing under us`, { rule: 'conflict', status: 409 });
  }

  #logResult(result: PublishResult): void {
    for (const namespace of result.created) this.#logger.info({ namespace }, 'published the root certificate');
    for (const namespace of result.updated) this.#logger.info({ namespace }, 'updated the published root certificate');
    for (const failure of result.failed) {
      this.#logger.warn({ namespace: failure.namespace, err: failure.error }, 'could not publish the root certificate; will retry');
    }
    this.#logger.debug(
      { namespaces: result.namespaces.length, created: result.created.length, updated: result.updated.length, failed: result.failed.length },
      'root certificate publication pass finished',
    );
  }
}

export interface FindNamespacesWithoutRootOptions {
  readonly kubeConfig: KubeConfig;
  /** SHA-256 fingerprint (Node's `fingerprint256` form) of the root every namespace must hold. */
  readonly fingerprint: string;
  readonly configMapName?: string;
  readonly excludeNamespaces?: readonly string[];
  readonly signal?: AbortSignal;
  readonly requestTimeoutMs?: number;
}

/**
 * The namespaces whose root ConfigMap does not (yet) hold a root: what must be empty before an
 * authority under that root may sign, or pods there would reject its SVIDs. Reads the cluster
 * as it is, not what a publisher believes it wrote.
 */
export async function findNamespacesWithoutRoot(options: FindNamespacesWithoutRootOptions): Promise<string[]> {
  const api = options.kubeConfig.makeApiClient(CoreV1Api);
  const name = options.configMapName ?? DEFAULT_ROOT_CONFIGMAP_NAME;
  const excluded = new Set(options.excludeNamespaces ?? DEFAULT_EXCLUDED_NAMESPACES);
  const callOptions = { ...(options.signal ? { signal: options.signal } : {}), ...(options.requestTimeoutMs === undefined ? {} : { timeoutMs: options.requestTimeoutMs }) };
  const list = await callKube('list namespaces', (o) => api.listNamespace({}, o), callOptions);
  const namespaces = list.items
    .filter((ns) => ns.status?.phase !== 'Terminating' && ns.metadata?.deletionTimestamp === undefined)
    .map((ns) => ns.metadata?.name)
    .filter((ns): ns is string => typeof ns === 'string' && ns !== '' && !excluded.has(ns))
    .sort();
  const missing: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < namespaces.length) {
      const namespace = namespaces[next++]!;
      const cm = await readOptional(`get ConfigMap ${namespace}/${name}`, (o) => api.readNamespacedConfigMap({ name, namespace }, o), callOptions);
      if (!fingerprintsOf(cm?.data?.[ROOT_CERT_KEY] ?? '').has(options.fingerprint)) missing.push(namespace);
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, namespaces.length) }, worker));
  return missing.sort();
}

function fingerprintsOf(pem: string): Set<string> {
  const out = new Set<string>();
  for (const block of pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
    try {
      out.add(new X509Certificate(block).fingerprint256);
    } catch {
      // An unparseable block holds no root anyone can use.
    }
  }
  return out;
}
