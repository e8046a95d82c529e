/**
 * The authentication port of the CA: turn a Kubernetes service-account token into the caller's
 * identity. Adapters (`jwks.ts`, `token-review.ts`) implement it; this module holds the parts
 * that need no I/O: the port, username parsing, a cheap pre-crypto shape check and a cache.
 *
 * No message built here ever contains a token: they go to logs.
 */
import { createHash } from 'node:crypto';

import { AuthnError } from '../errors.js';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';

/** The audience Istio's CA expects on projected service-account tokens, and meshca's default. */
export const ISTIO_CA_AUDIENCE = 'istio-ca';

/** Who the caller is, as established by a verified token. */
export interface CallerIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** Present when the token is bound to a pod (projected tokens are). */
  readonly podName?: string;
  readonly podUid?: string;
  /** When the token stops being valid, when known; bounds how long a result may be cached. */
  readonly expiresAt?: Date;
}

export interface AuthenticateOptions {
  /** Aborts the backend call; the promise then rejects with `signal.reason`. */
  readonly signal?: AbortSignal;
}

export interface Authenticator {
  /**
   * Verifies `token` and returns the identity it proves.
   * Rejects with `AuthnError` (ERR_AUTHN_FAILED) when the token is bad, expired, forged or for
   * another audience: a verdict, not worth retrying with the same token. Rejects with
   * `AuthnUnavailableError` (ERR_AUTHN_UNAVAILABLE) when the backend could not give a verdict:
   * retryable. Rejects with the signal's reason when the caller aborts.
   */
  authenticate(token: string, options?: AuthenticateOptions): Promise<CallerIdentity>;
}

export interface ServiceAccountName {
  readonly namespace: string;
  readonly serviceAccount: string;
}

const SERVICE_ACCOUNT_PREFIX = 'system:serviceaccount:';

// RFC 1123 label as Kubernetes validates it (IsDNS1123Label): namespaces.
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_LABEL_MAX = 63;
// RFC 1123 subdomain (IsDNS1123Subdomain): service account names.
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_SUBDOMAIN_MAX = 253;

export function isDns1123Label(value: string): boolean {
  return value.length <= DNS1123_LABEL_MAX && DNS1123_LABEL.test(value);
}

export function isDns1123Subdomain(value: string): boolean {
  return value.length <= DNS1123_SUBDOMAIN_MAX && DNS1123_SUBDOMAIN.test(value);
}

/** Quotes an untrusted value for a log message without letting it flood the log. */
function quote(value: string, max = 80): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
}

/**
 * Parses the Kubernetes username of a service account, `system:serviceaccount:<ns>:<sa>`.
 * The namespace must be a DNS-1123 label and the name a DNS-1123 subdomain, exactly as the API
 * server validates them, so the parts are safe to put in a SPIFFE ID path.
 */
export function parseServiceAccountUsername(username: string): ServiceAccountName {
  if (!username.startsWith(SERVICE_ACCOUNT_PREFIX)) {
    throw new AuthnError(`user ${quote(username)} is not a service account`, { rule: 'not-service-account' });
  }
  const rest = username.slice(SERVICE_ACCOUNT_PREFIX.length);
  const parts = rest.split(':');
  if (parts.length !== 2) {
    throw new AuthnError(`service account username ${quote(username)} must have the form system:serviceaccount:<namespace>:<name>`, {
      rule: 'username-malformed',
    });
  }
  const [namespace = '', serviceAccount = ''] = parts;
  if (!isDns1123Label(namespace)) {
    throw new AuthnError(`service account namespace ${quote(namespace)} is not a DNS-1123 label`, { rule: 'namespace-invalid' });
  }
  if (!isDns1123Subdomain(serviceAccount)) {
    throw new AuthnError(`service account name ${quote(serviceAccount)} is not a DNS-1123 subdomain`, {
      rule: 'service-account-invalid',
    });
  }
  return { namespace, serviceAccount };
}

export function formatServiceAccountUsername(name: ServiceAccountName): string {
  return `${SERVICE_ACCOUNT_PREFIX}${name.namespace}:${name.serviceAccount}`;
}

export interface CheckTokenShapeOptions {
  /** Largest accepted token in UTF-8 bytes. Real projected tokens are 1–2 KiB. */
  readonly maxBytes?: number;
}

export const DEFAULT_MAX_TOKEN_BYTES = 8192;

// JWS compact serialization: three base64url segments. The signature may be empty so that an
// `alg: none` token reaches the explicit algorithm check and is refused with rule `alg`.
const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Rejects tokens that cannot be a JWS before any crypto or network call, so a garbage or huge
 * token costs almost nothing. Throws `AuthnError` with rule `token-empty`, `token-too-large` or
 * `token-malformed`.
 */
export function checkTokenShape(token: string, options: CheckTokenShapeOptions = {}): void {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_TOKEN_BYTES;
  if (typeof token !== 'string' || token.length === 0) {
    throw new AuthnError('token is empty', { rule: 'token-empty' });
  }
  // Every character is at least one byte, so the length check avoids encoding a huge string.
  if (token.length > maxBytes || Buffer.byteLength(token, 'utf8') > maxBytes) {
    throw new AuthnError(`token is larger than ${maxBytes} bytes`, { rule: 'token-too-large' });
  }
  if (!JWS_COMPACT.test(token)) {
    throw new AuthnError('token is not a JWS in compact serialization', { rule: 'token-malformed' });
  }
}

/**
 * Reads `exp` from a token's payload WITHOUT verifying it. Only for a token that a trusted party
 * (the API server via TokenReview) has just verified, to bound how long its result is cached.
 * Returns undefined when the claim is absent or unreadable.
 */
export function readUnverifiedExpiry(token: string): Date | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    if (typeof claims !== 'object' || claims === null) return undefined;
    const exp = (claims as { exp?: unknown }).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? new Date(exp * 1000) : undefined;
  } catch {
    return undefined;
  }
}

export interface CachingAuthenticatorOptions {
  /** Most cached identities; the least recently used is evicted beyond it. */
  readonly maxEntries?: number;
  /** Longest a positive result is reused, even if the token lives longer. */
  readonly maxAgeMs?: number;
  readonly clock?: Clock;
}

interface CacheEntry {
  readonly identity: CallerIdentity;
  readonly validUntilMs: number;
}

/**
 * Caches positive results of another authenticator so a busy workload renewing certificates does
 * not cost a TokenReview per request. Keys are SHA-256 digests of the token: a heap dump or a
 * debugger never shows a usable credential. Failures are never cached, so a transient backend
 * problem or a token that becomes valid (nbf) is retried right away.
 *
 * A cached result can outlive a revocation (deleted pod or service account) by up to `maxAgeMs`;
 * keep it short.
 */
export class CachingAuthenticator implements Authenticator {
  readonly #inner: Authenticator;
  readonly #maxEntries: number;
  readonly #maxAgeMs: number;
  readonly #clock: Clock;
  // A Map iterates in insertion order; re-inserting on hit makes the first key the LRU one.
  readonly #entries = new Map<string, CacheEntry>();

  constructor(inner: Authenticator, options: CachingAuthenticatorOptions = {}) {
    const maxEntries = options.maxEntries ?? 1024;
    const maxAgeMs = options.maxAgeMs ?? 60_000;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new TypeError(`maxEntries must be a positive integer, got ${maxEntries}`);
    if (!Number.isFinite(maxAgeMs) || maxAgeMs <= 0) throw new TypeError(`maxAgeMs must be positive, got ${maxAgeMs}`);
    this.#inner = inner;
    this.#maxEntries = maxEntries;
    this.#maxAgeMs = maxAgeMs;
    this.#clock = options.clock ?? systemClock;
  }

  /** Number of cached identities, for metrics and tests. */
  get size(): number {
    return this.#entries.size;
  }

  clear(): void {
    this.#entries.clear();
  }

  async authenticate(token: string, options?: AuthenticateOptions): Promise<CallerIdentity> {
    const key = createHash('sha256').update(token, 'utf8').digest('base64url');
    const hit = this.#entries.get(key);
    if (hit !== undefined) {
      this.#entries.delete(key);
      if (this.#clock.now().getTime() < hit.validUntilMs) {
        this.#entries.set(key, hit);
        return hit.identity;
      }
    }

    const identity = await this.#inner.authenticate(token, options);

    // Time is read after the call: a slow backend must not stretch the entry's life.
    const nowMs = this.#clock.now().getTime();
    const expiresMs = identity.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
    const validUntilMs = Math.min(expiresMs, nowMs + this.#maxAgeMs);
    if (validUntilMs > nowMs) {
      this.#entries.delete(key);
      this.#entries.set(key, { identity: Object.freeze({ ...identity }), validUntilMs });
      this.#evict(nowMs);
    }
    return identity;
  }

  #evict(nowMs: number): void {
    // From the least recently used end only, so a miss costs O(1) even when a whole cluster's
    // first tokens churn through a full cache. Expired entries sit mostly at that end (every
    // hit moves an entry to the other); one that does not is dropped when it is next looked up.
    for (const [key, entry] of this.#entries) {
      if (this.#entries.size <= this.#maxEntries && entry.validUntilMs > nowMs) break;
      this.#entries.delete(key);
    }
  }
}
