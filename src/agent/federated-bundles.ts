/**
 * Bundles of federated trust domains (SPIFFE Federation): for each configured foreign trust
 * domain, the authorities its own CA publishes, fetched from a `FederatedBundleSource` (a file,
 * or the peer's SPIFFE bundle endpoint) and re-fetched at the document's `spiffe_refresh_hint`.
 *
 * Rules:
 * - One bundle per trust domain, replaced wholesale on every successful fetch; bundles of
 *   different trust domains are never merged, and the agent's own trust domain cannot be
 *   configured here (its anchors come from the independent `BundleSource` channel only).
 * - A fetch that fails, returns another trust domain, no authorities, or an older
 *   `spiffe_sequence` than the bundle in force changes nothing: the last good bundle stays in
 *   use, and the fetch is retried with capped exponential backoff.
 * - The refresh interval is the document's hint, clamped to [`minRefreshMs`, `maxRefreshMs`]:
 *   a hint of 0 cannot turn the agent into a hot loop, and a week-long hint cannot keep a
 *   distrusted root around for a week.
 * - A bundle counts as changed when its authorities or its sequence differ; consumers get a
 *   `change` event and the same bundle objects until then.
 */
import { Listeners } from './listeners.js';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { BundleError } from '../errors.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import type { X509Bundle, X509BundleSource } from '../spiffe/x509-bundle.js';
import type { FederatedBundleProvider, FederatedBundleSource, FetchedFederatedBundle, RandomSource } from './ports.js';
import { backoffDelayMs } from './rotation.js';

export const DEFAULT_FEDERATED_REFRESH_MS = 5 * 60_000;
export const MIN_FEDERATED_REFRESH_MS = 1000;
export const MAX_FEDERATED_REFRESH_MS = 60 * 60_000;

export interface FederatedBundlesOptions {
  /** The agent's own trust domain: refused as a federated one. */
  readonly trustDomain: TrustDomain;
  /** One per foreign trust domain. */
  readonly sources: readonly FederatedBundleSource[];
  readonly clock?: Clock;
  /** Jitter for retries. Default `Math.random`. */
  readonly random?: RandomSource;
  /** Interval when the document has no refresh hint (PEM files). Default 5 min. */
  readonly defaultRefreshMs?: number;
  /** Floor of the interval. Default 1 s. */
  readonly minRefreshMs?: number;
  /** Ceiling of the interval. Default 1 h. */
  readonly maxRefreshMs?: number;
  /** Retry after a failed fetch: from `baseMs` (default 1 s), doubling up to the refresh interval. */
  readonly retryBaseMs?: number;
}

export interface FederatedBundleStatus {
  readonly trustDomain: TrustDomain;
  readonly location: string;
  /** Undefined until the first successful fetch. */
  readonly bundle: X509Bundle | undefined;
  readonly fetchedAt: Date | undefined;
  readonly nextFetchAt: Date | undefined;
  /** Consecutive failed fetches; 0 after a success. */
  readonly failures: number;
  readonly lastError: Error | undefined;
}

export interface FederatedBundleError {
  readonly trustDomain: TrustDomain;
  readonly location: string;
  readonly error: Error;
  readonly attempt: number;
  readonly nextFetchAt: Date | undefined;
  /** True when a previously fetched bundle stays in use. */
  readonly bundleKept: boolean;
}

export interface FederatedBundlesEvents {
  /** A trust domain's bundle is new or changed. */
  change: X509Bundle;
  error: FederatedBundleError;
}

type Listener<T> = (payload: T) => void;

interface Entry {
  readonly source: FederatedBundleSource;
  bundle: X509Bundle | undefined;
  fetchedAt: Date | undefined;
  nextFetchAt: Date | undefined;
  failures: number;
  lastError: Error | undefined;
  timer: TimerHandle | undefined;
  inFlight: Promise<void> | undefined;
}

export class FederatedBundles implements X509BundleSource, FederatedBundleProvider {
  readonly trustDomain: TrustDomain;
  readonly #entries = new Map<string, Entry>();
  readonly #clock: Clock;
  readonly #random: RandomSource;
  readonly #defaultRefreshMs: number;
  readonly #minRefreshMs: number;
  readonly #maxRefreshMs: number;
  readonly #retryBaseMs: number;
  readonly #listeners = new Listeners<FederatedBundlesEvents>(['change', 'error']);
  #list: readonly X509Bundle[] = Object.freeze([]);
  #run: { readonly controller: AbortController; readonly finish: () => void } | undefined;
  #stopping: Promise<void> | undefined;
  #closed = false;

  /** Throws `TypeError` for the own trust domain, a trust domain given twice, or bad intervals. */
  constructor(options: FederatedBundlesOptions) {
    if (typeof options?.trustDomain?.idString !== 'function') throw new TypeError('trustDomain must be a TrustDomain');
    if (!Array.isArray(options.sources)) throw new TypeError('sources must be an array of FederatedBundleSource');
    this.trustDomain = options.trustDomain;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#minRefreshMs = options.minRefreshMs ?? MIN_FEDERATED_REFRESH_MS;
    this.#maxRefreshMs = options.maxRefreshMs ?? MAX_FEDERATED_REFRESH_MS;
    this.#defaultRefreshMs = options.defaultRefreshMs ?? DEFAULT_FEDERATED_REFRESH_MS;
    this.#retryBaseMs = options.retryBaseMs ?? 1000;
    if (!(this.#minRefreshMs > 0) || !(this.#maxRefreshMs >= this.#minRefreshMs) || !Number.isFinite(this.#maxRefreshMs)) {
      throw new TypeError(`refresh bounds must satisfy 0 < minRefreshMs <= maxRefreshMs, got ${this.#minRefreshMs}..${this.#maxRefreshMs}`);
    }
    if (!(this.#defaultRefreshMs > 0) || !(this.#retryBaseMs > 0)) throw new TypeError('defaultRefreshMs and retryBaseMs must be positive');
    for (const source of options.sources) {
      if (typeof source?.fetchBundle !== 'function' || typeof source.trustDomain?.idString !== 'function') {
        throw new TypeError('every source must be a FederatedBundleSource');
      }
      const name = source.trustDomain.name;
      if (source.trustDomain.equals(this.trustDomain)) {
        throw new TypeError(`${name} is this agent's own trust domain; its bundle cannot come from federation`);
      }
      if (this.#entries.has(name)) throw new TypeError(`trust domain ${name} is federated twice; give one bundle source per trust domain`);
      this.#entries.set(name, {
        source,
        bundle: undefined,
        fetchedAt: undefined,
        nextFetchAt: undefined,
        failures: 0,
        lastError: undefined,
        timer: undefined,
        inFlight: undefined,
      });
    }
  }

  /** The federated trust domains, in configuration order. */
  get trustDomains(): readonly TrustDomain[] {
    return [...this.#entries.values()].map((e) => e.source.trustDomain);
  }

  /** The bundle of a federated trust domain; undefined for any other (the own one included). */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    if (this.#closed) return undefined;
    return this.#entries.get(trustDomain.name)?.bundle;
  }

  /** Every fetched federated bundle, in configuration order; the same array until one changes. */
  getX509Bundles(): readonly X509Bundle[] {
    return this.#closed ? [] : this.#list;
  }

  status(): readonly FederatedBundleStatus[] {
    return [...this.#entries.values()].map((e) =>
      Object.freeze({
        trustDomain: e.source.trustDomain,
        location: e.source.location,
        bundle: e.bundle,
        fetchedAt: e.fetchedAt,
        nextFetchAt: e.nextFetchAt,
        failures: e.failures,
        lastError: e.lastError,
      }),
    );
  }

  onBundlesChange(listener: (bundle: X509Bundle) => void): () => void {
    this.on('change', listener);
    return () => void this.off('change', listener);
  }

  /** Listeners must not throw; if one does, the others still run. */
  on<E extends keyof FederatedBundlesEvents>(event: E, listener: Listener<FederatedBundlesEvents[E]>): this {
    this.#listeners.on(event, listener);
    return this;
  }

  off<E extends keyof FederatedBundlesEvents>(event: E, listener: Listener<FederatedBundlesEvents[E]>): this {
    this.#listeners.off(event, listener);
    return this;
  }

  /**
   * Fetches every trust domain's bundle at once, then each again at its own interval, until
   * `signal` aborts or `close()`. Resolves when stopped; fetch failures are `error` events.
   */
  run(signal?: AbortSignal): Promise<void> {
    if (this.#closed) return Promise.reject(new TypeError('FederatedBundles is closed'));
    if (this.#run !== undefined) return Promise.reject(new TypeError('FederatedBundles.run() is already running'));
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
      for (const entry of this.#entries.values()) this.#fetch(entry);
    });
  }

  /** Stops polling; the getters answer nothing from now on. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#stop();
  }

  #stop(): Promise<void> {
    const run = this.#run;
    if (run === undefined) return this.#stopping ?? Promise.resolve();
    this.#run = undefined;
    run.controller.abort();
    const pending: Promise<void>[] = [];
    for (const entry of this.#entries.values()) {
      if (entry.timer !== undefined) this.#clock.clearTimeout(entry.timer);
      entry.timer = undefined;
      entry.nextFetchAt = undefined;
      if (entry.inFlight) pending.push(entry.inFlight);
    }
    this.#stopping = Promise.all(pending).then(
      () => {
        this.#stopping = undefined;
        run.finish();
      },
    );
    return this.#stopping;
  }

  #fetch(entry: Entry): void {
    const run = this.#run;
    if (run === undefined || entry.inFlight !== undefined) return;
    entry.nextFetchAt = undefined;
    const { signal } = run.controller;
    entry.inFlight = (async () => {
      let fetched: FetchedFederatedBundle;
      try {
        fetched = await entry.source.fetchBundle({ signal });
        if (this.#run !== run) return;
        this.#accept(entry, fetched);
      } catch (err) {
        if (this.#run !== run) return;
        this.#failed(entry, err);
        return;
      }
      entry.failures = 0;
      entry.lastError = undefined;
      entry.fetchedAt = this.#clock.now();
      const hintMs = fetched.refreshHintSeconds === undefined ? this.#defaultRefreshMs : fetched.refreshHintSeconds * 1000;
      this.#arm(entry, this.#clamp(hintMs));
    })().finally(() => {
      entry.inFlight = undefined;
    });
  }

  #accept(entry: Entry, fetched: FetchedFederatedBundle): void {
    const { trustDomain } = entry.source;
    const bundle = fetched?.bundle;
    if (typeof bundle?.hasAuthority !== 'function') throw new TypeError('FederatedBundleSource.fetchBundle() must resolve to { bundle: X509Bundle }');
    if (!bundle.trustDomain.equals(trustDomain)) {
      throw new BundleError(`${entry.source.location} returned the bundle of ${bundle.trustDomain.name}, expected ${trustDomain.name}`, {
        rule: 'trust-domain',
      });
    }
    if (bundle.authorities.length === 0) {
      throw new BundleError(`${entry.source.location} returned no X.509 authorities for ${trustDomain.name}`, { rule: 'empty' });
    }
    const current = entry.bundle;
    if (current?.sequenceNumber !== undefined && bundle.sequenceNumber !== undefined && bundle.sequenceNumber < current.sequenceNumber) {
      // A replayed or stale document must not bring back a root the peer has withdrawn.
      throw new BundleError(
        `${entry.source.location} returned bundle sequence ${bundle.sequenceNumber} for ${trustDomain.name}, older than ${current.sequenceNumber} in use`,
        { rule: 'sequence' },
      );
    }
    if (current !== undefined && current.sequenceNumber === bundle.sequenceNumber && sameAuthorities(current, bundle)) return;
    entry.bundle = bundle;
    this.#rebuildList();
    this.#emit('change', bundle);
  }

  #failed(entry: Entry, err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    entry.failures += 1;
    entry.lastError = error;
    const delay = backoffDelayMs(entry.failures, {
      baseMs: Math.min(this.#retryBaseMs, this.#defaultRefreshMs),
      maxMs: Math.max(this.#retryBaseMs, this.#clamp(this.#defaultRefreshMs)),
      random: this.#random,
    });
    this.#arm(entry, delay);
    this.#emit('error', {
      trustDomain: entry.source.trustDomain,
      location: entry.source.location,
      error,
      attempt: entry.failures,
      nextFetchAt: entry.nextFetchAt,
      bundleKept: entry.bundle !== undefined,
    });
  }

  #arm(entry: Entry, delayMs: number): void {
    if (this.#run === undefined) return;
    if (entry.timer !== undefined) this.#clock.clearTimeout(entry.timer);
    entry.nextFetchAt = new Date(this.#clock.now().getTime() + delayMs);
    entry.timer = this.#clock.setTimeout(() => {
      entry.timer = undefined;
      this.#fetch(entry);
    }, delayMs);
  }

  #clamp(ms: number): number {
    return Math.min(this.#maxRefreshMs, Math.max(this.#minRefreshMs, ms));
  }

  #rebuildList(): void {
    const list: X509Bundle[] = [];
    for (const entry of this.#entries.values()) if (entry.bundle !== undefined) list.push(entry.bundle);
    this.#list = Object.freeze(list);
  }

  #emit<E extends keyof FederatedBundlesEvents>(event: E, payload: FederatedBundlesEvents[E]): void {
    this.#listeners.emit(event, payload);
  }
}

function sameAuthorities(a: X509Bundle, b: X509Bundle): boolean {
  return a.authorities.length === b.authorities.length && a.authorities.every((cert) => b.hasAuthority(cert));
}
