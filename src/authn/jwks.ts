/**
 * Offline verification of Kubernetes service-account tokens against the cluster's signing keys
 * (a JWKS from a file, a URL, OIDC discovery or memory). Cheaper than a TokenReview and works
 * without API-server access, at the price of not seeing revocations (deleted pods or service
 * accounts) before the token expires; projected tokens are short-lived, which bounds that.
 */
import { readFile } from 'node:fs/promises';

import { createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import type { FlattenedJWSInput, JSONWebKeySet, JWSHeaderParameters, JWTPayload, JWTVerifyGetKey } from 'jose';

import { AuthnError, AuthnUnavailableError, IdentityError } from '../errors.js';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { checkTokenShape, parseServiceAccountUsername } from './authenticator.js';
import type { AuthenticateOptions, Authenticator, CallerIdentity } from './authenticator.js';

/**
 * Asymmetric algorithms only. HS* would let anyone holding the (public) verification key forge
 * tokens, and `none` is no signature at all; both are refused before any key lookup.
 */
export const JWKS_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

export type JwksAlgorithm = (typeof JWKS_ALGORITHMS)[number];

export interface JwksSource {
  /** Path to a JWKS JSON file, e.g. a mounted copy of the API server's `/openid/v1/jwks`. */
  readonly file?: string;
  /** URL serving the JWKS. */
  readonly uri?: string;
  /** The key set itself. */
  readonly keys?: JSONWebKeySet;
}

export interface CreateJwksAuthenticatorOptions {
  /** Expected `iss`, e.g. `https://kubernetes.default.svc.cluster.local`. */
  readonly issuer: string;
  /** Accepted audiences; a token must carry at least one. */
  readonly audiences: readonly string[];
  /** Exactly one source, unless `discovery` finds it. */
  readonly jwks?: JwksSource;
  /** Fetch `<issuer>/.well-known/openid-configuration` and use its `jwks_uri`. */
  readonly discovery?: boolean;
  readonly clock?: Clock;
  /** Skew allowed on `exp` and `nbf`. */
  readonly clockToleranceSeconds?: number;
  /** Narrows the accepted algorithms; cannot widen them beyond `JWKS_ALGORITHMS`. */
  readonly algorithms?: readonly JwksAlgorithm[];
  readonly maxTokenBytes?: number;
  /** Timeout for each JWKS or discovery fetch. */
  readonly fetchTimeoutMs?: number;
}

const RELOAD_COOLDOWN_MS = 30_000;
const REMOTE_CACHE_MAX_AGE_MS = 10 * 60_000;

/** Marks an error raised while obtaining keys: the backend's fault, not the token's. */
class KeySourceFailure extends Error {
  constructor(message: string, cause: unknown) {
    super(message, { cause });
  }
}

type KeyResolver = (header: JWSHeaderParameters, input: FlattenedJWSInput) => ReturnType<JWTVerifyGetKey>;

function isKeySelectionError(err: unknown): boolean {
  return err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys;
}

/** Wraps a resolver so that "no such key" stays a verdict and anything else is a backend fault. */
function guardResolver(resolve: KeyResolver, describe: string): KeyResolver {
  return async (header, input) => {
    try {
      return await resolve(header, input);
    } catch (err) {
      if (isKeySelectionError(err) || err instanceof KeySourceFailure) throw err;
      throw new KeySourceFailure(`cannot obtain signing keys from ${describe}`, err);
    }
  };
}

function fileResolver(path: string, clock: Clock): KeyResolver {
  let current: { resolve: KeyResolver; loadedAtMs: number } | undefined;
  let loading: Promise<KeyResolver> | undefined;

  const load = (): Promise<KeyResolver> => {
    loading ??= (async () => {
      try {
        const json: unknown = JSON.parse(await readFile(path, 'utf8'));
        const resolve = createLocalJWKSet(json as JSONWebKeySet);
        current = { resolve, loadedAtMs: clock.now().getTime() };
        return resolve;
      } catch (err) {
        throw new KeySourceFailure(`cannot load JWKS file ${path}`, err);
      } finally {
        loading = undefined;
      }
    })();
    return loading;
  };

  return async (header, input) => {
    const resolve = current?.resolve ?? (await load());
    try {
      return await resolve(header, input);
    } catch (err) {
      // A mounted key file is rewritten when the cluster rotates keys: re-read it once per
      // cooldown on an unknown kid, so a flood of bogus kids cannot turn into a flood of reads.
      const stale = current === undefined || clock.now().getTime() - current.loadedAtMs >= RELOAD_COOLDOWN_MS;
      if (!isKeySelectionError(err) || !stale) throw err;
      return (await load())(header, input);
    }
  };
}

function remoteResolver(uri: string, fetchTimeoutMs: number): KeyResolver {
  return createRemoteJWKSet(new URL(uri), {
    timeoutDuration: fetchTimeoutMs,
    cooldownDuration: RELOAD_COOLDOWN_MS,
    cacheMaxAge: REMOTE_CACHE_MAX_AGE_MS,
  });
}

function discoveryResolver(issuer: string, fetchTimeoutMs: number): KeyResolver {
  let resolver: Promise<KeyResolver> | undefined;
  const discover = async (): Promise<KeyResolver> => {
    const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(fetchTimeoutMs), redirect: 'error' });
      if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
      const document: unknown = await response.json();
      const jwksUri = typeof document === 'object' && document !== null ? (document as { jwks_uri?: unknown }).jwks_uri : undefined;
      const documentIssuer = typeof document === 'object' && document !== null ? (document as { issuer?: unknown }).issuer : undefined;
      // OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it was fetched for.
      if (documentIssuer !== issuer) throw new Error(`discovery document names issuer ${JSON.stringify(documentIssuer)}`);
      if (typeof jwksUri !== 'string' || !URL.canParse(jwksUri)) throw new Error('discovery document has no valid jwks_uri');
      return remoteResolver(jwksUri, fetchTimeoutMs);
    } catch (err) {
      throw new KeySourceFailure(`OIDC discovery failed at ${url}`, err);
    }
  };
  return async (header, input) => {
    resolver ??= discover().catch((err: unknown) => {
      resolver = undefined; // retry on the next token instead of caching the failure
      throw err;
    });
    return (await resolver)(header, input);
  };
}

function buildResolver(options: CreateJwksAuthenticatorOptions, clock: Clock, fetchTimeoutMs: number): KeyResolver {
  const source = options.jwks ?? {};
  const given = [source.file, source.uri, source.keys].filter((s) => s !== undefined).length;
  if (given + (options.discovery === true ? 1 : 0) !== 1) {
    throw new TypeError('createJwksAuthenticator needs exactly one of jwks.file, jwks.uri, jwks.keys or discovery');
  }
  if (source.keys !== undefined) {
    try {
      return guardResolver(createLocalJWKSet(source.keys), 'the configured key set');
    } catch (err) {
      throw new TypeError('jwks.keys is not a valid JSON Web Key Set', { cause: err });
    }
  }
  if (source.file !== undefined) return guardResolver(fileResolver(source.file, clock), `file ${source.file}`);
  if (source.uri !== undefined) {
    if (!URL.canParse(source.uri)) throw new TypeError(`jwks.uri ${JSON.stringify(source.uri)} is not a URL`);
    return guardResolver(remoteResolver(source.uri, fetchTimeoutMs), source.uri);
  }
  return guardResolver(discoveryResolver(options.issuer, fetchTimeoutMs), `discovery for ${options.issuer}`);
}

/** Maps a jose failure to the rule that failed. Messages from jose never contain the token. */
function translateJoseError(err: unknown): IdentityError {
  if (err instanceof IdentityError) return err;
  if (err instanceof KeySourceFailure) return new AuthnUnavailableError(err.message, { cause: err.cause });
  if (isKeySelectionError(err)) return new AuthnError('no trusted key matches the token\'s "kid"', { rule: 'kid', cause: err });
  if (err instanceof errors.JWTExpired) return new AuthnError('token has expired', { rule: 'expired', cause: err });
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return new AuthnError(`token has no "${err.claim}" claim`, { rule: 'claims-missing', cause: err });
    switch (err.claim) {
      case 'nbf':
        return new AuthnError('token is not valid yet', { rule: 'not-yet-valid', cause: err });
      case 'iss':
        return new AuthnError('token was issued by an untrusted issuer', { rule: 'issuer', cause: err });
      case 'aud':
        return new AuthnError('token is not meant for this audience', { rule: 'audience', cause: err });
      default:
        return new AuthnError(`token claim "${err.claim}" is invalid`, { rule: 'claims-invalid', cause: err });
    }
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return new AuthnError('token signature does not verify', { rule: 'signature', cause: err });
  if (err instanceof errors.JOSEAlgNotAllowed) return new AuthnError('token algorithm is not allowed', { rule: 'alg', cause: err });
  if (err instanceof errors.JOSENotSupported) return new AuthnError('token uses an unsupported feature', { rule: 'token-unsupported', cause: err });
  // JWSInvalid, JWTInvalid, and anything else raised while parsing attacker-controlled bytes: a
  // token that makes a parser throw is a bad token, never a server fault.
  return new AuthnError('token is malformed', { rule: 'token-malformed', cause: err });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks the `kubernetes.io` claims and their agreement with `sub`. */
export function identityFromClaims(payload: JWTPayload): CallerIdentity {
  const k8s = payload['kubernetes.io'];
  if (!isRecord(k8s)) throw new AuthnError('token has no "kubernetes.io" claims', { rule: 'claims-missing' });
  const { namespace, serviceaccount, pod } = k8s;
  if (typeof namespace !== 'string' || !isRecord(serviceaccount) || typeof serviceaccount['name'] !== 'string') {
    throw new AuthnError('token "kubernetes.io" claims lack namespace or serviceaccount.name', { rule: 'claims-missing' });
  }
  let podName: string | undefined;
  let podUid: string | undefined;
  if (pod !== undefined) {
    if (!isRecord(pod) || typeof pod['name'] !== 'string' || typeof pod['uid'] !== 'string') {
      throw new AuthnError('token "kubernetes.io".pod claim is malformed', { rule: 'claims-invalid' });
    }
    podName = pod['name'];
    podUid = pod['uid'];
  }
  if (typeof payload.sub !== 'string') throw new AuthnError('token has no "sub" claim', { rule: 'claims-missing' });
  const subject = parseServiceAccountUsername(payload.sub);
  if (subject.namespace !== namespace || subject.serviceAccount !== serviceaccount['name']) {
    throw new AuthnError('token "sub" does not match its "kubernetes.io" claims', { rule: 'subject-mismatch' });
  }
  return {
    namespace: subject.namespace,
    serviceAccount: subject.serviceAccount,
    ...(podName === undefined ? {} : { podName }),
    ...(podUid === undefined ? {} : { podUid }),
    ...(typeof payload.exp === 'number' ? { expiresAt: new Date(payload.exp * 1000) } : {}),
  };
}

function raceAbort<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

export function createJwksAuthenticator(options: CreateJwksAuthenticatorOptions): Authenticator {
  const { issuer, audiences } = options;
  if (typeof issuer !== 'string' || issuer.length === 0) throw new TypeError('issuer is required');
  if (audiences.length === 0 || audiences.some((a) => typeof a !== 'string' || a.length === 0)) {
    // Without an audience check any token of the cluster, e.g. one meant for the API server, would do.
    throw new TypeError('audiences must list at least one non-empty audience');
  }
  const clock = options.clock ?? systemClock;
  const clockTolerance = options.clockToleranceSeconds ?? 5;
  if (!Number.isFinite(clockTolerance) || clockTolerance < 0) throw new TypeError('clockToleranceSeconds must be >= 0');
  const fetchTimeoutMs = options.fetchTimeoutMs ?? 5000;
  const algorithms: readonly string[] = options.algorithms ?? JWKS_ALGORITHMS;
  for (const alg of algorithms) {
    if (!(JWKS_ALGORITHMS as readonly string[]).includes(alg)) throw new TypeError(`algorithm ${alg} is not allowed`);
  }
  const resolver = buildResolver(options, clock, fetchTimeoutMs);
  const maxBytes = options.maxTokenBytes;
  const audienceList = [...audiences];

  const verify = async (token: string): Promise<CallerIdentity> => {
    checkTokenShape(token, maxBytes === undefined ? {} : { maxBytes });
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch (err) {
      throw new AuthnError('token header is malformed', { rule: 'token-malformed', cause: err });
    }
    // Refused explicitly, before any key lookup, so the rule names the actual problem.
    if (typeof alg !== 'string' || alg === 'none' || /^HS/i.test(alg) || !algorithms.includes(alg)) {
      throw new AuthnError(`token algorithm ${JSON.stringify(typeof alg === 'string' ? alg.slice(0, 20) : alg)} is not allowed`, {
        rule: 'alg',
      });
    }
    try {
      const { payload } = await jwtVerify(token, resolver, {
        issuer,
        audience: audienceList,
        algorithms: [...algorithms],
        currentDate: clock.now(),
        clockTolerance,
        requiredClaims: ['exp', 'sub'],
      });
      return identityFromClaims(payload);
    } catch (err) {
      throw translateJoseError(err);
    }
  };

  return {
    authenticate(token: string, authOptions?: AuthenticateOptions): Promise<CallerIdentity> {
      return raceAbort(verify(token), authOptions?.signal);
    },
  };
}
