/**
 * The agent's live X.509-SVID source: obtains an SVID from the CA, keeps it fresh, and tells
 * consumers (files, the Workload API, TLS contexts) when it changes. Shaped like go-spiffe's
 * `workloadapi.X509Source`: `getX509Svid()` / `getX509BundleForTrustDomain()` answer from memory,
 * updates are pushed as events, and a static SVID source is a drop-in replacement.
 *
 * Each rotation: read the token (fresh every time) → derive the identity the token implies →
 * refresh the trust bundle → generate a new key → CSR → CA → check the answer (shape, key,
 * identity, chain to the trust bundle) → install → schedule the next one at `rotationTime`.
 * A failure keeps the current SVID while it is valid and retries with capped exponential
 * backoff; an expired SVID is never handed out.
 *
 * Trust: the CA's answer never extends trust. The chain must verify against the bundle from the
 * `BundleSource` port (an independent channel, the mounted root-cert.pem), and the root the CA
 * appends to its chain is only ever matched against that bundle, never added to it.
 *
 * Federation: with a `FederatedBundleProvider`, the rotator also answers for the bundles of
 * federated trust domains (so TLS verifies a foreign peer against *its* trust domain's bundle,
 * and the Workload API sends them as `federated_bundles`). They are kept apart from the own
 * bundle: they never anchor this agent's SVID, and the own trust domain is never looked up there.
 */
import { Listeners } from './listeners.js';
import type { KeyObject } from 'node:crypto';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import {
  BundleError,
  CaNotReadyError,
  IdentityMismatchError,
  SvidError,
  SvidUntrustedError,
  type IdentityErrorOptions,
} from '../errors.js';
import type { KeyKind } from '../pki/algorithms.js';
import { createCsr } from '../pki/csr.js';
import { generateKey } from '../pki/keys.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import type { X509Bundle, X509BundleSource } from '../spiffe/x509-bundle.js';
import { parseX509Svid, verifyX509Svid, type X509Svid, type X509SvidSource } from '../spiffe/x509-svid.js';
import type { BundleSource, CaClient, FederatedBundleProvider, KeyGenerator, RandomSource, TokenSource } from './ports.js';
import { backoffDelayMs, DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS, NO_SVID_BACKOFF_MAX_MS, rotationTime, type BackoffJitter } from './rotation.js';
import { expectedSpiffeIdForToken } from './token-claims.js';

export type SvidUnavailableRule = 'not-fetched' | 'expired' | 'closed';

/**
 * No usable SVID: none obtained yet, the last one expired without a replacement, or the source
 * is closed. A kind of `ERR_CA_NOT_READY`, so transports answer UNAVAILABLE / 503 ("retry
 * later"); `cause` carries the last rotation failure when there is one.
 */
export class SvidUnavailableError extends CaNotReadyError {
  constructor(message: string, options: IdentityErrorOptions & { readonly rule: SvidUnavailableRule }) {
    super(message, options);
  }
}

export const DEFAULT_BUNDLE_REFRESH_MS = 5 * 60_000;

/**
 * Floor between two successful rotations: a CA that keeps issuing nearly expired certificates
 * (say, because its own certificate is about to expire) must not turn the agent into a hot loop.
 */
export const MIN_ROTATION_DELAY_MS = 1000;

export interface SvidRotatorOptions {
  readonly trustDomain: TrustDomain;
  readonly caClient: CaClient;
  readonly tokenSource: TokenSource;
  readonly bundleSource: BundleSource;
  readonly clock?: Clock;
  /** Jitter source for rotation times and backoff. Default `Math.random`. */
  readonly random?: RandomSource;
  /** Key type of the SVIDs. Default `ec-p256`. */
  readonly keyKind?: KeyKind;
  readonly keyGenerator?: KeyGenerator;
  /** Requested SVID lifetime; undefined lets the CA choose (24 h by default). */
  readonly ttlSeconds?: number;
  /** See `rotationTime`. Default 0.1. */
  readonly jitterFraction?: number;
  readonly backoff?: { readonly baseMs?: number; readonly maxMs?: number; readonly jitter?: BackoffJitter };
  /** How often the bundle is re-read between rotations; 0 disables polling. Default 5 min. */
  readonly bundleRefreshMs?: number;
  /** Bundles of federated trust domains, served beside the own one (see the file comment). */
  readonly federatedBundles?: FederatedBundleProvider;
}

/**
 * Pushed after every new SVID (`reason: 'svid'`) and every bundle change, own or federated,
 * while one is held. `bundle` is always the own trust domain's.
 */
export interface X509SvidUpdate {
  readonly reason: 'svid' | 'bundle';
  readonly svid: X509Svid;
  readonly bundle: X509Bundle;
  /** Serial number of the leaf, lowercase hex. */
  readonly serial: string;
  readonly nextRotationAt: Date | undefined;
}

export interface SvidRotatorError {
  /**
   * `rotation`: an attempt failed (the current SVID, if valid, is still served); `bundle`: the
   * bundle source failed (the last good bundle is kept); `expired`: the SVID expired with no
   * replacement, so `getX509Svid()` now throws.
   */
  readonly kind: 'rotation' | 'bundle' | 'expired';
  readonly error: Error;
  /** Consecutive failed rotation attempts. */
  readonly attempt: number;
  readonly nextAttemptAt: Date | undefined;
  readonly svidValid: boolean;
}

export interface SvidRotatorEvents {
  update: X509SvidUpdate;
  /**
   * A trust bundle changed (also before the first SVID, for bundle-only consumers): the own
   * trust domain's or, with federation, a federated one; check `bundle.trustDomain`.
   */
  bundle: X509Bundle;
  error: SvidRotatorError;
}

type Listener<T> = (payload: T) => void;

interface RunState {
  readonly controller: AbortController;
  readonly finish: () => void;
}

interface RotationResult {
  readonly svid: X509Svid;
  readonly bundle: X509Bundle;
}

const defaultKeyGenerator: KeyGenerator = async (kind) => (await generateKey(kind)).privateKey;

export class SvidRotator implements X509SvidSource, X509BundleSource {
  readonly trustDomain: TrustDomain;
  readonly #caClient: CaClient;
  readonly #tokenSource: TokenSource;
  readonly #bundleSource: BundleSource;
  readonly #clock: Clock;
  readonly #random: RandomSource;
  readonly #keyKind: KeyKind;
  readonly #keyGenerator: KeyGenerator;
  readonly #ttlSeconds: number | undefined;
  readonly #jitterFraction: number | undefined;
  readonly #backoff: NonNullable<SvidRotatorOptions['backoff']>;
  readonly #bundleRefreshMs: number;
  readonly #federation: FederatedBundleProvider | undefined;
  readonly #unsubscribeFederation: () => void;
  readonly #listeners = new Listeners<SvidRotatorEvents>(['update', 'bundle', 'error']);

  #svid: X509Svid | undefined;
  #bundle: X509Bundle | undefined;
  #bundleList: readonly X509Bundle[] = Object.freeze([]);
  #closed = false;
  #run: RunState | undefined;
  #stopping: Promise<void> | undefined;
  #inFlight: Promise<void> | undefined;
  #rotationTimer: TimerHandle | undefined;
  #expiryTimer: TimerHandle | undefined;
  #bundleTimer: TimerHandle | undefined;
  #nextRotationAt: Date | undefined;
  #attempt = 0;
  #lastError: Error | undefined;
  #waiters: { resolve: (svid: X509Svid) => void; reject: (err: unknown) => void }[] = [];

  constructor(options: SvidRotatorOptions) {
    if (typeof options?.trustDomain?.idString !== 'function') throw new TypeError('trustDomain must be a TrustDomain');
    if (typeof options.caClient?.createCertificate !== 'function') throw new TypeError('caClient must be a CaClient');
    if (typeof options.tokenSource?.readToken !== 'function') throw new TypeError('tokenSource must be a TokenSource');
    if (typeof options.bundleSource?.fetchBundle !== 'function') throw new TypeError('bundleSource must be a BundleSource');
    const ttl = options.ttlSeconds;
    if (ttl !== undefined && (!Number.isInteger(ttl) || ttl <= 0)) throw new TypeError(`ttlSeconds must be a positive integer, got ${ttl}`);
    const refresh = options.bundleRefreshMs ?? DEFAULT_BUNDLE_REFRESH_MS;
    if (!Number.isFinite(refresh) || refresh < 0) throw new TypeError(`bundleRefreshMs must be >= 0, got ${refresh}`);
    this.trustDomain = options.trustDomain;
    this.#caClient = options.caClient;
    this.#tokenSource = options.tokenSource;
    this.#bundleSource = options.bundleSource;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#keyKind = options.keyKind ?? 'ec-p256';
    this.#keyGenerator = options.keyGenerator ?? defaultKeyGenerator;
    this.#ttlSeconds = ttl;
    this.#jitterFraction = options.jitterFraction;
    this.#backoff = options.backoff ?? {};
    this.#bundleRefreshMs = refresh;
    const federation = options.federatedBundles;
    if (federation !== undefined && (typeof federation.getX509Bundles !== 'function' || typeof federation.onBundlesChange !== 'function')) {
      throw new TypeError('federatedBundles must be a FederatedBundleProvider');
    }
    this.#federation = federation;
    this.#unsubscribeFederation = federation?.onBundlesChange((bundle) => this.#onFederatedBundle(bundle)) ?? (() => undefined);
    this.#rebuildBundleList();
    // Fail at construction, not at the first rotation, on bad jitter or backoff settings.
    // (With a constant random: the injected source's sequence belongs to real decisions.)
    rotationTime({ notBefore: new Date(0), notAfter: new Date(1000) }, { ...this.#rotationOptions(), random: () => 0.5 });
    backoffDelayMs(1, { ...this.#backoffOptions(), random: () => 0.5 });
  }

  /**
   * The current X.509-SVID (leaf plus intermediates, with its private key). Throws
   * `SvidUnavailableError` (ERR_CA_NOT_READY, rule `not-fetched`, `expired` or `closed`) when
   * there is no valid one; the last rotation failure is its `cause`.
   */
  getX509Svid(): X509Svid {
    if (this.#closed) throw new SvidUnavailableError('the X.509-SVID source is closed', { rule: 'closed' });
    const svid = this.#svid;
    const cause = this.#lastError === undefined ? {} : { cause: this.#lastError };
    const lastFailure = this.#lastError === undefined ? '' : `; last failure: ${this.#lastError.message}`;
    if (svid === undefined) {
      throw new SvidUnavailableError(`no X.509-SVID has been obtained from the CA yet${lastFailure}`, { rule: 'not-fetched', ...cause });
    }
    if (this.#clock.now().getTime() > svid.notAfter.getTime()) {
      throw new SvidUnavailableError(`the X.509-SVID for ${svid.id} expired at ${svid.notAfter.toISOString()} and could not be renewed${lastFailure}`, {
        rule: 'expired',
        ...cause,
      });
    }
    return svid;
  }

  /**
   * The trust bundle of the agent's own trust domain, or of a federated one; undefined for any
   * other, or when closed.
   */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    if (this.#closed) return undefined;
    if (this.trustDomain.equals(trustDomain)) return this.#bundle;
    const federated = this.#federation?.getX509BundleForTrustDomain(trustDomain);
    // A provider that answers for another trust domain than asked is not believed.
    return federated !== undefined && federated.trustDomain.equals(trustDomain) ? federated : undefined;
  }

  /** True while an unexpired SVID is held and the source is open. */
  hasValidSvid(): boolean {
    return !this.#closed && this.#svid !== undefined && this.#clock.now().getTime() <= this.#svid.notAfter.getTime();
  }

  /** When the next rotation (or retry) is due; undefined while one runs or when stopped. */
  get nextRotationAt(): Date | undefined {
    return this.#nextRotationAt;
  }

  /** The most recent rotation failure, cleared by the next success. */
  get lastError(): Error | undefined {
    return this.#lastError;
  }

  /**
   * Every bundle this source trusts: the own trust domain's first, then the federated ones.
   * The same array object until a bundle changes, so consumers can compare cheaply.
   */
  getX509Bundles(): readonly X509Bundle[] {
    return this.#closed ? [] : this.#bundleList;
  }

  /**
   * Subscribes to an event (EventEmitter-style, so the rotator fits wherever an `X509Source`
   * with an `update` event is expected). Listeners must not throw; if one does, the others
   * still run and rotation carries on.
   */
  on<E extends keyof SvidRotatorEvents>(event: E, listener: Listener<SvidRotatorEvents[E]>): this {
    this.#listeners.on(event, listener);
    return this;
  }

  off<E extends keyof SvidRotatorEvents>(event: E, listener: Listener<SvidRotatorEvents[E]>): this {
    this.#listeners.off(event, listener);
    return this;
  }

  /**
   * Resolves with a valid SVID, at once if one is held, else after the next successful
   * rotation (go-spiffe's `NewX509Source` waits the same way). Rejects when `signal` aborts or
   * the source closes.
   */
  waitForSvid(signal?: AbortSignal): Promise<X509Svid> {
    if (this.hasValidSvid()) return Promise.resolve(this.#svid!);
    if (this.#closed) return Promise.reject(new SvidUnavailableError('the X.509-SVID source is closed', { rule: 'closed' }));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(signal?.reason);
      };
      const waiter = {
        resolve: (svid: X509Svid) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(svid);
        },
        reject: (err: unknown) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      this.#waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Fetches the first SVID at once, then rotates until `signal` aborts or `close()` is called.
   * Resolves when stopped; never rejects for rotation failures (those are `error` events).
   */
  run(signal?: AbortSignal): Promise<void> {
    if (this.#closed) return Promise.reject(new TypeError('the SvidRotator is closed'));
    if (this.#run !== undefined) return Promise.reject(new TypeError('SvidRotator.run() is already running'));
    if (signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const onAbort = (): void => void this.#stop();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#run = {
        controller: new AbortController(),
        finish: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      if (this.#svid !== undefined) this.#armExpiry(this.#svid); // after a stop and a new run()
      this.#rotateNow();
      if (this.#bundleRefreshMs > 0) this.#armBundlePoll(this.#run);
    });
  }

  /** Stops rotating and closes the source: `getX509Svid()` throws from now on. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribeFederation();
    await this.#stop();
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(new SvidUnavailableError('the X.509-SVID source is closed', { rule: 'closed' }));
  }

  #stop(): Promise<void> {
    const run = this.#run;
    if (run === undefined) return this.#stopping ?? Promise.resolve();
    this.#run = undefined;
    // A close() racing an abort must still wait for the same in-flight attempt.
    this.#stopping = this.#finishRun(run).finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  async #finishRun(run: RunState): Promise<void> {
    run.controller.abort();
    for (const timer of [this.#rotationTimer, this.#bundleTimer, this.#expiryTimer]) {
      if (timer !== undefined) this.#clock.clearTimeout(timer);
    }
    this.#rotationTimer = this.#bundleTimer = this.#expiryTimer = undefined;
    this.#nextRotationAt = undefined;
    await this.#inFlight?.catch(() => undefined);
    run.finish();
  }

  #rotationOptions(): { jitterFraction?: number; random: RandomSource } {
    return { ...(this.#jitterFraction === undefined ? {} : { jitterFraction: this.#jitterFraction }), random: this.#random };
  }

  #backoffOptions(): { baseMs?: number; maxMs?: number; jitter?: BackoffJitter; random: RandomSource } {
    return { ...this.#backoff, random: this.#random };
  }

  #armRotation(delayMs: number): void {
    if (this.#rotationTimer !== undefined) this.#clock.clearTimeout(this.#rotationTimer);
    const delay = Math.max(0, delayMs);
    this.#nextRotationAt = new Date(this.#clock.now().getTime() + delay);
    this.#rotationTimer = this.#clock.setTimeout(() => {
      this.#rotationTimer = undefined;
      this.#startAttempt();
    }, delay);
  }

  /** Starts an attempt in this turn rather than through a zero-delay timer. */
  #rotateNow(): void {
    if (this.#rotationTimer !== undefined) this.#clock.clearTimeout(this.#rotationTimer);
    this.#rotationTimer = undefined;
    this.#startAttempt();
  }

  #startAttempt(): void {
    const run = this.#run;
    if (run === undefined || this.#inFlight !== undefined) return;
    this.#nextRotationAt = undefined;
    // The handlers clear #inFlight before they arm the next timer or notify anyone, so a
    // listener that reacts at once (or a test advancing a manual clock) can start the next one.
    this.#inFlight = this.#rotateOnce(run.controller.signal).then(
      (result) => {
        this.#inFlight = undefined;
        this.#onRotated(run, result);
      },
      (err: unknown) => {
        this.#inFlight = undefined;
        this.#onRotationFailed(run, err);
      },
    );
  }

  async #rotateOnce(signal: AbortSignal): Promise<RotationResult> {
    const token = await this.#tokenSource.readToken();
    signal.throwIfAborted();
    // Unverified on purpose: the CA is the authority on identity; the agent only needs to know
    // which identity to insist on.
    const expected = expectedSpiffeIdForToken(token, this.trustDomain);
    let bundle = await this.#refreshBundle(signal, true);
    const privateKey: KeyObject = await this.#keyGenerator(this.#keyKind);
    const csr = createCsr(privateKey, { uris: [expected.toString()] });
    const { certChainPem } = await this.#caClient.createCertificate({
      csrPem: csr.pem,
      token,
      signal,
      ...(this.#ttlSeconds === undefined ? {} : { ttlSeconds: this.#ttlSeconds }),
    });
    signal.throwIfAborted();
    if (!Array.isArray(certChainPem) || certChainPem.length === 0) {
      throw new SvidError('the CA returned an empty certificate chain', { rule: 'no-certificates' });
    }
    // Shape rules, and the leaf must carry the public half of the key generated above.
    const parsed = parseX509Svid(certChainPem.join('\n'), privateKey);
    if (!parsed.id.equals(expected)) {
      throw new IdentityMismatchError(`the CA issued an SVID for ${parsed.id}, but this agent's token is for ${expected}; refusing it`, {
        rule: 'issued-identity',
      });
    }
    let verified;
    try {
      verified = verifyX509Svid(parsed.certificates, bundle, { now: this.#clock.now() });
    } catch (err) {
      if (!(err instanceof SvidUntrustedError) || err.rule !== 'no-path') throw err;
      // The CA may have moved to a new root that the trust channel published after our read:
      // look once more. A root the CA merely appends to its chain is never trusted by itself.
      const fresh = await this.#refreshBundle(signal, false);
      if (fresh === bundle) throw err;
      bundle = fresh;
      verified = verifyX509Svid(parsed.certificates, bundle, { now: this.#clock.now() });
    }
    // Keep the SVID to leaf + intermediates on the verified path: the anchor travels in the
    // bundle, and stray certificates the CA may have appended are dropped.
    const svid: X509Svid = Object.freeze({
      id: parsed.id,
      certificates: Object.freeze(verified.verifiedChain.slice(0, -1)),
      privateKey,
      notBefore: parsed.notBefore,
      notAfter: parsed.notAfter,
    });
    return { svid, bundle };
  }

  #onRotated(run: RunState, result: RotationResult): void {
    if (this.#run !== run) return;
    const bundle = this.#bundle ?? result.bundle;
    if (bundle !== result.bundle) {
      // A bundle poll replaced the anchors while the CA call was in flight.
      try {
        verifyX509Svid(result.svid.certificates, bundle, { now: this.#clock.now() });
      } catch (err) {
        this.#onRotationFailed(run, err);
        return;
      }
    }
    const { svid } = result;
    this.#svid = svid;
    this.#attempt = 0;
    this.#lastError = undefined;
    this.#armExpiry(svid);
    const now = this.#clock.now().getTime();
    const next = rotationTime(svid, this.#rotationOptions()).getTime();
    this.#armRotation(Math.max(MIN_ROTATION_DELAY_MS, next - now));
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.resolve(svid);
    this.#emit('update', { reason: 'svid', svid, bundle, serial: serialOf(svid), nextRotationAt: this.#nextRotationAt });
  }

  #onRotationFailed(run: RunState, err: unknown): void {
    if (this.#run !== run) return;
    const error = err instanceof Error ? err : new Error(String(err));
    this.#attempt += 1;
    this.#lastError = error;
    // Arm the retry before telling anyone, so a listener already sees when it is due.
    const backoff = this.#backoffOptions();
    const capped = this.hasValidSvid() ? backoff : { ...backoff, maxMs: Math.max(backoff.baseMs ?? DEFAULT_BACKOFF_BASE_MS, Math.min(backoff.maxMs ?? DEFAULT_BACKOFF_MAX_MS, NO_SVID_BACKOFF_MAX_MS)) };
    this.#armRotation(backoffDelayMs(this.#attempt, capped));
    this.#emit('error', {
      kind: 'rotation',
      error,
      attempt: this.#attempt,
      nextAttemptAt: this.#nextRotationAt,
      svidValid: this.hasValidSvid(),
    });
  }

  #armExpiry(svid: X509Svid): void {
    if (this.#expiryTimer !== undefined) this.#clock.clearTimeout(this.#expiryTimer);
    // `now > notAfter` is expired (validity includes notAfter itself), hence + 1.
    const delay = svid.notAfter.getTime() - this.#clock.now().getTime() + 1;
    this.#expiryTimer = this.#clock.setTimeout(() => {
      this.#expiryTimer = undefined;
      if (this.#svid !== svid || this.#run === undefined) return;
      let error: Error;
      try {
        this.getX509Svid();
        return;
      } catch (err) {
        error = err as Error;
      }
      this.#emit('error', { kind: 'expired', error, attempt: this.#attempt, nextAttemptAt: this.#nextRotationAt, svidValid: false });
    }, delay);
  }

  /**
   * Reads the bundle source and installs what it returns. With `tolerateFailure`, a failing
   * source is reported and the last good bundle is used; without one there is nothing to
   * verify against, so the failure stands.
   */
  async #refreshBundle(signal: AbortSignal, tolerateFailure: boolean): Promise<X509Bundle> {
    try {
      const fetched = await this.#bundleSource.fetchBundle({ signal });
      signal.throwIfAborted();
      this.#installBundle(this.#checkBundle(fetched));
    } catch (err) {
      if (signal.aborted || !tolerateFailure || this.#bundle === undefined) throw err;
      this.#emitBundleError(err);
    }
    return this.#bundle!;
  }

  #checkBundle(bundle: X509Bundle): X509Bundle {
    if (typeof bundle?.hasAuthority !== 'function') throw new TypeError('BundleSource.fetchBundle() must resolve to an X509Bundle');
    if (!bundle.trustDomain.equals(this.trustDomain)) {
      throw new BundleError(`the bundle source returned the bundle of ${bundle.trustDomain.name}, expected ${this.trustDomain.name}`, {
        rule: 'trust-domain',
      });
    }
    // An empty bundle would make every SVID untrusted; a truncated file is the likelier cause.
    if (bundle.authorities.length === 0) {
      throw new BundleError(`the bundle source returned no authorities for ${this.trustDomain.name}`, { rule: 'empty' });
    }
    return bundle;
  }

  /** A failed bundle fetch, while the SVID and the last good bundle stay in use. */
  #emitBundleError(err: unknown): void {
    this.#emit('error', {
      kind: 'bundle',
      error: err instanceof Error ? err : new Error(String(err)),
      attempt: this.#attempt,
      nextAttemptAt: undefined,
      svidValid: this.hasValidSvid(),
    });
  }

  #installBundle(bundle: X509Bundle): void {
    const current = this.#bundle;
    if (current !== undefined && sameAuthorities(current, bundle)) return;
    this.#bundle = bundle;
    this.#rebuildBundleList();
    this.#emit('bundle', bundle);
    const svid = this.#svid;
    if (svid === undefined || !this.hasValidSvid()) return;
    this.#emit('update', { reason: 'bundle', svid, bundle, serial: serialOf(svid), nextRotationAt: this.#nextRotationAt });
    if (this.#inFlight !== undefined || this.#run === undefined) return;
    try {
      verifyX509Svid(svid.certificates, bundle, { now: this.#clock.now() });
    } catch {
      // The anchors of the current SVID were withdrawn: peers holding the new bundle refuse
      // it already, so renew now instead of at the scheduled time.
      this.#rotateNow();
    }
  }

  #rebuildBundleList(): void {
    const federated = (this.#federation?.getX509Bundles() ?? []).filter((b) => !b.trustDomain.equals(this.trustDomain));
    this.#bundleList = Object.freeze(this.#bundle === undefined ? federated : [this.#bundle, ...federated]);
  }

  #onFederatedBundle(bundle: X509Bundle): void {
    if (this.#closed || bundle.trustDomain.equals(this.trustDomain)) return;
    this.#rebuildBundleList();
    this.#emit('bundle', bundle);
    const svid = this.#svid;
    const own = this.#bundle;
    if (svid === undefined || own === undefined || !this.hasValidSvid()) return;
    this.#emit('update', { reason: 'bundle', svid, bundle: own, serial: serialOf(svid), nextRotationAt: this.#nextRotationAt });
  }

  #armBundlePoll(run: RunState): void {
    this.#bundleTimer = this.#clock.setTimeout(() => {
      this.#bundleTimer = undefined;
      void this.#pollBundle(run);
    }, this.#bundleRefreshMs);
  }

  async #pollBundle(run: RunState): Promise<void> {
    try {
      const fetched = await this.#bundleSource.fetchBundle({ signal: run.controller.signal });
      if (this.#run !== run) return;
      this.#installBundle(this.#checkBundle(fetched));
    } catch (err) {
      if (this.#run !== run) return;
      this.#emitBundleError(err);
    }
    if (this.#run === run) this.#armBundlePoll(run);
  }

  #emit<E extends keyof SvidRotatorEvents>(event: E, payload: SvidRotatorEvents[E]): void {
    this.#listeners.emit(event, payload);
  }
}

function sameAuthorities(a: X509Bundle, b: X509Bundle): boolean {
  return a.authorities.length === b.authorities.length && a.authorities.every((cert) => b.hasAuthority(cert));
}

function serialOf(svid: X509Svid): string {
  return svid.certificates[0]!.serialNumber.toLowerCase();
}
