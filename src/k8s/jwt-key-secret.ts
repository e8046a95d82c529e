/**
 * The CA's JWT-SVID signing key as a Secret, so that every replica signs with the same key and
 * every replica's SPIFFE bundle lists it: a JWT-SVID minted by one replica then verifies against
 * the bundle served by any other. The first replica to start creates it; see `shared-secret.ts`.
 * It is a Secret of its own, not a key in the CA Secret, because an operator's plug-in CA Secret
 * (`cacerts`) is never written.
 */
import { CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig } from '@kubernetes/client-node';
import type { JWK } from 'jose';

import { CaInvalidError, CaNotReadyError, ConfigError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { decodeSecretData, readOrCreateSecret } from './shared-secret.js';

export const DEFAULT_JWT_KEY_SECRET_NAME = 'meshca-jwt-signing-key';
/** The key inside the Secret: the same name as the file in `--data-dir`. */
export const JWT_KEY_SECRET_KEY = 'jwt-signing-key.json';

export interface LoadOrCreateJwtKeySecretOptions {
  readonly kubeConfig: KubeConfig;
  /** The CA's own namespace. */
  readonly namespace: string;
  readonly secretName?: string;
  /** Makes a new private JWK when the Secret does not exist yet. */
  readonly generate: () => Promise<JWK>;
  readonly logger?: Logger;
  readonly requestTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface LoadOrCreateJwtKeySecretResult {
  readonly jwk: JWK;
  readonly created: boolean;
  readonly secretName: string;
}

/** Returns the shared JWT-SVID signing key, creating its Secret on first start. */
export async function loadOrCreateJwtKeySecret(options: LoadOrCreateJwtKeySecretOptions): Promise<LoadOrCreateJwtKeySecretResult> {
  const { kubeConfig, namespace } = options;
  if (typeof namespace !== 'string' || namespace === '') throw new TypeError('namespace must be a non-empty string');
  const name = options.secretName ?? DEFAULT_JWT_KEY_SECRET_NAME;
  const logger = (options.logger ?? silentLogger).child({ component: 'jwt-key-secret' });
  let api: CoreV1Api;
  try {
    api = kubeConfig.makeApiClient(CoreV1Api);
  } catch (err) {
    throw new ConfigError([`kubeconfig cannot be used to read the JWT signing key Secret: ${err instanceof Error ? err.message : String(err)}`], { cause: err });
  }
  const { secret, created } = await readOrCreateSecret({
    api,
    namespace,
    name,
    component: 'ca',
    create: async () => ({ [JWT_KEY_SECRET_KEY]: `${JSON.stringify(await options.generate())}\n` }),
    missing: () => new CaNotReadyError(`Secret ${namespace}/${name} does not exist`, { rule: 'missing' }),
    logger,
    callOptions: {
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.requestTimeoutMs === undefined ? {} : { timeoutMs: options.requestTimeoutMs }),
    },
  });
  const text = decodeSecretData(secret).get(JWT_KEY_SECRET_KEY);
  let jwk: unknown;
  try {
    jwk = JSON.parse(text ?? '');
  } catch {
    jwk = undefined;
  }
  if (typeof jwk !== 'object' || jwk === null || typeof (jwk as JWK).kty !== 'string' || typeof (jwk as JWK).d !== 'string') {
    throw new CaInvalidError(`Secret ${namespace}/${name} has no private JWK under ${JWT_KEY_SECRET_KEY}`, { rule: 'missing' });
  }
  logger.info({ namespace, secret: name }, created ? 'created the JWT-SVID signing key and stored it in its Secret' : 'using the JWT-SVID signing key from its Secret');
  return { jwk: jwk as JWK, created, secretName: name };
}
