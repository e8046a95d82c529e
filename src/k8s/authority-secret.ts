/**
 * The CA's key material as Kubernetes Secrets, the way istiod keeps it:
 *
 * 1. a plug-in Secret (`cacerts`, Istio's name and keys) supplied by the operator wins and is
 *    used exactly as found; meshca never writes it;
 * 2. otherwise the self-signed Secret meshca created earlier;
 * 3. otherwise a new root, stored with `create`. Replicas that start together all get here; the
 *    API server accepts exactly one `create` and the others get 409 AlreadyExists, re-read, and
 *    adopt the winner's root. Nothing is ever overwritten, so no replica can silently replace a
 *    root that workloads already trust.
 *
 * Only a 404 moves on to the next step. Any other failure (403, timeout) stops start-up: falling
 * through to "create a new root" because the plug-in Secret was merely unreadable would split the
 * mesh into two trust domains' worth of roots.
 */
import { CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1Secret } from '@kubernetes/client-node';

import { CaInvalidError, CaNotReadyError, ConfigError } from '../errors.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { AuthorityPem } from '../pki/authority.js';
import { readOptional } from './kube-api.js';
import { decodeSecretData, readOrCreateSecret } from './shared-secret.js';

/** Istio's plug-in CA keys (the `cacerts` Secret and the files of `--data-dir`). */
export const AUTHORITY_SECRET_KEYS = {
  cert: 'ca-cert.pem',
  key: 'ca-key.pem',
  chain: 'cert-chain.pem',
  root: 'root-cert.pem',
} as const;

export const DEFAULT_PLUGIN_SECRET_NAME = 'cacerts';
export const DEFAULT_SELF_SIGNED_SECRET_NAME = 'meshca-ca-secret';

export type AuthoritySecretSource = 'plugin' | 'self-signed' | 'created';

export interface LoadOrCreateAuthoritySecretOptions {
  readonly kubeConfig: KubeConfig;
  /** The CA's own namespace: both Secrets live there. */
  readonly namespace: string;
  /** Operator-supplied CA, used as-is when present. Default `cacerts`. */
  readonly secretName?: string;
  /** Where meshca keeps the root it generated itself. Default `meshca-ca-secret`. */
  readonly selfSignedSecretName?: string;
  /**
   * Makes a new self-signed root when neither Secret exists. Absent: a missing CA is an error
   * (`--self-signed false`). Several replicas may call it at once; all but one result are dropped.
   */
  readonly create?: () => Promise<AuthorityPem>;
  readonly logger?: Logger;
  readonly requestTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface LoadOrCreateAuthoritySecretResult extends AuthorityPem {
  /** Which step produced the CA: the plug-in Secret, an existing self-signed one, or one this call created. */
  readonly source: AuthoritySecretSource;
  readonly secretName: string;
}

/** Reads the four keys of a CA Secret. Only cert and key are required; the CA cert is then its own root. */
export function authorityPemFromSecret(secret: V1Secret, where: string): AuthorityPem {
  const data = decodeSecretData(secret);
  const nonEmpty = (key: string): string | undefined => {
    const value = data.get(key);
    return value === undefined || value.trim() === '' ? undefined : value;
  };
  const certPem = nonEmpty(AUTHORITY_SECRET_KEYS.cert);
  const keyPem = nonEmpty(AUTHORITY_SECRET_KEYS.key);
  const missing = [certPem === undefined && AUTHORITY_SECRET_KEYS.cert, keyPem === undefined && AUTHORITY_SECRET_KEYS.key].filter(Boolean);
  if (certPem === undefined || keyPem === undefined) {
    throw new CaInvalidError(`Secret ${where} is incomplete: missing ${missing.join(', ')}`, { rule: 'missing' });
  }
  const chainPem = nonEmpty(AUTHORITY_SECRET_KEYS.chain);
  return {
    certPem,
    keyPem,
    ...(chainPem === undefined ? {} : { chainPem }),
    rootPem: nonEmpty(AUTHORITY_SECRET_KEYS.root) ?? certPem,
  };
}

function authoritySecretContent(pem: AuthorityPem): Record<string, string> {
  return {
    [AUTHORITY_SECRET_KEYS.cert]: pem.certPem,
    [AUTHORITY_SECRET_KEYS.key]: pem.keyPem,
    [AUTHORITY_SECRET_KEYS.chain]: pem.chainPem ?? pem.certPem,
    [AUTHORITY_SECRET_KEYS.root]: pem.rootPem,
  };
}

/**
 * Returns the CA in the cluster, creating a self-signed root on first start. See the module
 * comment for the order and the multi-replica guarantees. Throws `KubeApiError`
 * (ERR_CA_NOT_READY) when the API server cannot be used, `CaInvalidError` for an incomplete
 * Secret, `CaNotReadyError` (rule `missing`) when there is no CA and `create` is absent.
 * The returned PEM is not validated: pass it to `loadAuthority`.
 */
export async function loadOrCreateAuthoritySecret(options: LoadOrCreateAuthoritySecretOptions): Promise<LoadOrCreateAuthoritySecretResult> {
  const { kubeConfig, namespace } = options;
  if (typeof namespace !== 'string' || namespace === '') throw new TypeError('namespace must be a non-empty string');
  const pluginName = options.secretName ?? DEFAULT_PLUGIN_SECRET_NAME;
  const selfSignedName = options.selfSignedSecretName ?? DEFAULT_SELF_SIGNED_SECRET_NAME;
  if (pluginName === selfSignedName) throw new TypeError(`secretName and selfSignedSecretName must differ (both ${pluginName})`);
  const logger = (options.logger ?? silentLogger).child({ component: 'authority-secret' });
  const callOptions = {
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.requestTimeoutMs === undefined ? {} : { timeoutMs: options.requestTimeoutMs }),
  };

  let api: CoreV1Api;
  try {
    api = kubeConfig.makeApiClient(CoreV1Api);
  } catch (err) {
    throw new ConfigError([`kubeconfig cannot be used to read the CA Secret: ${err instanceof Error ? err.message : String(err)}`], { cause: err });
  }
  const read = (name: string): Promise<V1Secret | undefined> =>
    readOptional(`get secret ${namespace}/${name}`, (o) => api.readNamespacedSecret({ name, namespace }, o), callOptions);

  const plugin = await read(pluginName);
  if (plugin !== undefined) {
    const pem = authorityPemFromSecret(plugin, `${namespace}/${pluginName}`);
    logger.info({ namespace, secret: pluginName }, 'using the plug-in CA from its Secret');
    return { ...pem, source: 'plugin', secretName: pluginName };
  }

  const create = options.create;
  let created: AuthorityPem | undefined;
  const { secret, created: won } = await readOrCreateSecret({
    api,
    namespace,
    name: selfSignedName,
    component: 'ca',
    create:
      create &&
      (async () => {
        created = await create();
        return authoritySecretContent(created);
      }),
    missing: () =>
      new CaNotReadyError(
        `no CA in namespace ${namespace}: neither Secret ${pluginName} (plug-in) nor ${selfSignedName} (self-signed) exists, and creating a self-signed root is disabled`,
        { rule: 'missing' },
      ),
    logger,
    callOptions,
  });
  if (won && created) {
    logger.info({ namespace, secret: selfSignedName }, 'created a self-signed root CA and stored it in its Secret');
    return { ...created, source: 'created', secretName: selfSignedName };
  }
  const pem = authorityPemFromSecret(secret, `${namespace}/${selfSignedName}`);
  logger.info({ namespace, secret: selfSignedName }, 'using the self-signed CA from its Secret');
  return { ...pem, source: 'self-signed', secretName: selfSignedName };
}
