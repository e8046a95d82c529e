/**
 * A Secret that every replica must share and that whichever replica starts first creates: read
 * it; if it is missing, make the content and `create` it. Replicas that start together all get
 * there; the API server accepts exactly one `create`, the others get 409 AlreadyExists, re-read
 * and adopt the winner's content. Nothing is ever overwritten.
 *
 * Only a 404 counts as missing. Any other failure (403, timeout) is thrown: creating new key
 * material because the existing Secret was merely unreadable would split the replicas.
 */
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';

import { CaNotReadyError } from '../errors.js';
import type { Logger } from '../log.js';
import { callKube, kubeStatusOf, MESHCA_LABELS, readOptional, type CallKubeOptions } from './kube-api.js';

export interface ReadOrCreateSecretOptions {
  readonly api: CoreV1Api;
  readonly namespace: string;
  readonly name: string;
  /** `app.kubernetes.io/component` of a Secret this creates. */
  readonly component: string;
  /** The content of a new Secret (text values). Absent: a missing Secret is `missing()`. */
  readonly create: (() => Promise<Readonly<Record<string, string>>>) | undefined;
  readonly missing: () => Error;
  readonly logger: Logger;
  readonly callOptions: CallKubeOptions;
}

export interface ReadOrCreateSecretResult {
  readonly secret: V1Secret;
  /** True when this call's `create` won; false when the Secret existed or another replica won. */
  readonly created: boolean;
}

// Create can lose to another replica and the winner's Secret can, in principle, be deleted before
// we re-read it; a few rounds cover that without looping forever against a misbehaving server.
const MAX_CREATE_ROUNDS = 3;

export async function readOrCreateSecret(options: ReadOrCreateSecretOptions): Promise<ReadOrCreateSecretResult> {
  const { api, namespace, name, logger, callOptions } = options;
  for (let round = 1; round <= MAX_CREATE_ROUNDS; round++) {
    const existing = await readOptional(`get secret ${namespace}/${name}`, (o) => api.readNamespacedSecret({ name, namespace }, o), callOptions);
    if (existing !== undefined) return { secret: existing, created: false };
    if (options.create === undefined) throw options.missing();
    const content = await options.create();
    const secret: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace, labels: { ...MESHCA_LABELS, 'app.kubernetes.io/component': options.component } },
      type: 'Opaque',
      data: Object.fromEntries(Object.entries(content).map(([key, text]) => [key, Buffer.from(text, 'utf8').toString('base64')])),
    };
    try {
      await callKube(`create secret ${namespace}/${name}`, (o) => api.createNamespacedSecret({ namespace, body: secret }, o), callOptions);
      return { secret, created: true };
    } catch (err) {
      if (kubeStatusOf(err) !== 409) throw err;
      // Another replica won the race: drop what we made (it was never used) and adopt theirs.
      logger.info({ namespace, secret: name }, 'another replica created the Secret first; using its content');
    }
  }
  throw new CaNotReadyError(`the Secret ${namespace}/${name} kept disappearing between create and read`, { rule: 'race' });
}

/** A Secret's values as text: `data` decoded, then any `stringData` a hand-written object carries. */
export function decodeSecretData(secret: V1Secret): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, value] of Object.entries(secret.data ?? {})) {
    if (typeof value === 'string') out.set(key, Buffer.from(value, 'base64').toString('utf8'));
  }
  // stringData is write-only on a real server, but a hand-written fake or an old object may carry it.
  for (const [key, value] of Object.entries(secret.stringData ?? {})) {
    if (typeof value === 'string' && !out.has(key)) out.set(key, value);
  }
  return out;
}
