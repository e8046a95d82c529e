/**
 * The rotation slots of a data directory (active, `next/`, `authority-state.json`) kept in the
 * self-signed CA Secret, so `meshca ca rotate` and automatic rotation work in Kubernetes mode:
 *
 *   ca-cert.pem  ca-key.pem  cert-chain.pem  root-cert.pem (the bundle)      the active authority
 *   next-ca-cert.pem  next-ca-key.pem  next-cert-chain.pem  next-root-cert.pem   the prepared one
 *   authority-state.json                                                        sequence, retiring roots
 *
 * A change is one `replace` carrying the resourceVersion it was decided on: the API server
 * applies all of it or, when anyone else wrote in between (another replica, another operator),
 * none of it (409), and the decision is made again on what is there now. That is what the
 * journal and the lock do for files; one object needs neither.
 *
 * The plug-in Secret (`cacerts`) is never written: its root key is the operator's.
 */
import { CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1Secret } from '@kubernetes/client-node';

import type { AuthorityChange, AuthorityStore, StoredAuthority } from '../ca/authority-rotation.js';
import { CaInvalidError, CaNotReadyError } from '../errors.js';
import { formatAuthorityState, parseAuthorityState } from '../files/authority-slots.js';
import { sleep, systemClock, type Clock } from '../clock.js';
import { silentLogger, type Logger } from '../log.js';
import type { AuthorityPem } from '../pki/authority.js';
import { AUTHORITY_SECRET_KEYS, authorityPemFromSecret, DEFAULT_SELF_SIGNED_SECRET_NAME } from './authority-secret.js';
import { callKube, KubeApiError, kubeStatusOf, readOptional, type CallKubeOptions } from './kube-api.js';
import { decodeSecretData } from './shared-secret.js';

export const NEXT_AUTHORITY_SECRET_KEYS = {
  cert: 'next-ca-cert.pem',
  key: 'next-ca-key.pem',
  chain: 'next-cert-chain.pem',
  root: 'next-root-cert.pem',
} as const;
export const AUTHORITY_STATE_SECRET_KEY = 'authority-state.json';

/** A few rounds absorb concurrent writers; more would only hide a writer that never stops. */
const MAX_UPDATE_ROUNDS = 5;

/** What the Secret holds, read as a data directory would be. */
export function storedAuthorityFromSecret(secret: V1Secret, where: string): StoredAuthority {
  const active = authorityPemFromSecret(secret, where);
  const data = decodeSecretData(secret);
  let next: AuthorityPem | undefined;
  let nextError: Error | undefined;
  const nextKeys = Object.values(NEXT_AUTHORITY_SECRET_KEYS).filter((k) => (data.get(k) ?? '').trim() !== '');
  if (nextKeys.length > 0) {
    const cert = data.get(NEXT_AUTHORITY_SECRET_KEYS.cert);
    const key = data.get(NEXT_AUTHORITY_SECRET_KEYS.key);
    if (!cert?.trim() || !key?.trim()) {
      nextError = new CaInvalidError(`Secret ${where}: the prepared authority is incomplete (has ${nextKeys.join(', ')})`, { rule: 'next' });
    } else {
      const chain = data.get(NEXT_AUTHORITY_SECRET_KEYS.chain);
      next = { certPem: cert, keyPem: key, ...(chain?.trim() ? { chainPem: chain } : {}), rootPem: data.get(NEXT_AUTHORITY_SECRET_KEYS.root)?.trim() ? data.get(NEXT_AUTHORITY_SECRET_KEYS.root)! : cert };
    }
  }
  const stateText = data.get(AUTHORITY_STATE_SECRET_KEY);
  return {
    active,
    next,
    nextError,
    state: stateText === undefined ? undefined : parseAuthorityState(stateText, `Secret ${where} ${AUTHORITY_STATE_SECRET_KEY}`),
    warnings: [],
  };
}

/** The Secret's text content after `change`, as the file store would leave the directory. */
export function applyAuthorityChange(content: ReadonlyMap<string, string>, change: AuthorityChange): Map<string, string> {
  const out = new Map(content);
  if (change.next) {
    out.set(NEXT_AUTHORITY_SECRET_KEYS.cert, change.next.certPem);
    out.set(NEXT_AUTHORITY_SECRET_KEYS.key, change.next.keyPem);
    out.set(NEXT_AUTHORITY_SECRET_KEYS.chain, change.next.chainPem ?? change.next.certPem);
    out.set(NEXT_AUTHORITY_SECRET_KEYS.root, change.next.rootPem);
  } else if (change.next === null) {
    for (const key of Object.values(NEXT_AUTHORITY_SECRET_KEYS)) out.delete(key);
  }
  if (change.active) {
    out.set(AUTHORITY_SECRET_KEYS.cert, change.active.certPem);
    out.set(AUTHORITY_SECRET_KEYS.key, change.active.keyPem);
    out.set(AUTHORITY_SECRET_KEYS.chain, change.active.chainPem ?? change.active.certPem);
  }
  if (change.bundlePem !== undefined) out.set(AUTHORITY_SECRET_KEYS.root, change.bundlePem);
  out.set(AUTHORITY_STATE_SECRET_KEY, formatAuthorityState(change.state));
  return out;
}

export interface SecretAuthorityStoreOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  /** Default `meshca-ca-secret`. */
  readonly name?: string;
  readonly logger?: Logger;
  readonly requestTimeoutMs?: number;
}

export interface SecretAuthorityStore extends AuthorityStore {
  readonly where: string;
  /** The Secret's resourceVersion with what it holds: followers compare the version. */
  readVersioned(signal?: AbortSignal): Promise<{ readonly resourceVersion: string; readonly stored: StoredAuthority }>;
}

export function createSecretAuthorityStore(options: SecretAuthorityStoreOptions): SecretAuthorityStore {
  const { namespace } = options;
  const name = options.name ?? DEFAULT_SELF_SIGNED_SECRET_NAME;
  const where = `${namespace}/${name}`;
  const api = options.kubeConfig.makeApiClient(CoreV1Api);
  const logger = (options.logger ?? silentLogger).child({ component: 'authority-secret-store' });
  const callOptions = (signal?: AbortSignal): CallKubeOptions => ({
    ...(signal ? { signal } : {}),
    ...(options.requestTimeoutMs === undefined ? {} : { timeoutMs: options.requestTimeoutMs }),
  });
  const get = async (signal?: AbortSignal): Promise<V1Secret> => {
    const secret = await readOptional(`get secret ${where}`, (o) => api.readNamespacedSecret({ name, namespace }, o), callOptions(signal));
    if (secret === undefined) throw new CaNotReadyError(`Secret ${where} holds no CA: it was deleted, or the CA never started`, { rule: 'missing' });
    return secret;
  };
  return {
    where,
    async read() {
      return storedAuthorityFromSecret(await get(), where);
    },
    async readVersioned(signal) {
      const secret = await get(signal);
      return { resourceVersion: secret.metadata?.resourceVersion ?? '', stored: storedAuthorityFromSecret(secret, where) };
    },
    async update(decide) {
      for (let round = 1; round <= MAX_UPDATE_ROUNDS; round++) {
        const secret = await get();
        const { change, result } = await decide(storedAuthorityFromSecret(secret, where));
        if (!change) return result;
        const content = applyAuthorityChange(decodeSecretData(secret), change);
        const body: V1Secret = {
          ...secret,
          // metadata keeps the resourceVersion it was read with: the replace is a compare-and-swap.
          data: Object.fromEntries([...content].map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')])),
        };
        delete (body as { stringData?: unknown }).stringData;
        try {
          await callKube(`replace secret ${where}`, (o) => api.replaceNamespacedSecret({ name, namespace, body }, o), callOptions());
          return result;
        } catch (err) {
          if (kubeStatusOf(err) !== 409) throw err;
          logger.info({ namespace, secret: name, round }, 'the CA Secret changed while deciding; deciding again on what it holds now');
        }
      }
      throw new KubeApiError(`replace secret ${where}: it kept changing under us`, { rule: 'conflict', status: 409 });
    },
  };
}

export interface AuthoritySecretFollowerOptions {
  readonly store: SecretAuthorityStore;
  /** Called with what the Secret holds whenever its resourceVersion moves. */
  readonly onChange: (stored: StoredAuthority) => Promise<void>;
  /** The version already applied (start-up read it). */
  readonly initialVersion?: string;
  /** Default 5 s: a rotation reaches every replica well within the propagation delay. */
  readonly intervalMs?: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

/**
 * Every replica follows the CA Secret: a rotation made by the leader, another replica or an
 * operator's `meshca ca rotate --kubernetes` reaches its data directory (and so its signer and
 * the watcher) without a restart. A poll rather than a watch: one small GET per interval,
 * nothing to resume after the API server drops a stream.
 */
export class AuthoritySecretFollower {
  readonly #options: AuthoritySecretFollowerOptions;
  readonly #logger: Logger;
  #version: string | undefined;
  #wake: (() => void) | undefined;

  constructor(options: AuthoritySecretFollowerOptions) {
    this.#options = options;
    this.#version = options.initialVersion;
    this.#logger = (options.logger ?? silentLogger).child({ component: 'authority-secret-follower' });
  }

  /** Looks at the Secret now (this replica just wrote it). */
  poke(): void {
    this.#wake?.();
  }

  async run(signal: AbortSignal): Promise<void> {
    const clock = this.#options.clock ?? systemClock;
    let lastProblem: string | undefined;
    while (!signal.aborted) {
      try {
        const { resourceVersion, stored } = await this.#options.store.readVersioned(signal);
        if (resourceVersion !== this.#version) {
          await this.#options.onChange(stored);
          this.#version = resourceVersion;
        }
        if (lastProblem !== undefined) this.#logger.info({ secret: this.#options.store.where }, 'following the CA Secret again');
        lastProblem = undefined;
      } catch (err) {
        if (signal.aborted) break;
        const problem = (err as Error).message;
        // Said once per distinct problem: a long API outage is one line, not one per poll.
        if (problem !== lastProblem) this.#logger.warn({ err, secret: this.#options.store.where }, 'cannot follow the CA Secret; keeping the current authority and retrying');
        lastProblem = problem;
      }
      const wake = new AbortController();
      const onAbort = (): void => wake.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.#wake = () => wake.abort();
      await sleep(clock, this.#options.intervalMs ?? 5000, wake.signal).catch(() => undefined);
      signal.removeEventListener('abort', onAbort);
      this.#wake = undefined;
    }
  }
}
