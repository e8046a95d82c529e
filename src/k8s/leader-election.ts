/**
 * Leader election on a coordination.k8s.io/v1 Lease, with the semantics of client-go's
 * leaderelection package, so meshca replicas and `kubectl get lease` agree on who leads:
 *
 * - `spec.holderIdentity` names the leader; `renewTime` is when it last renewed;
 *   `leaseDurationSeconds` is how long others wait after that before taking over;
 *   `acquireTime` is when the current holder got it; `leaseTransitions` counts changes of holder.
 * - A candidate takes the lease when it has no holder or the holder's lease expired
 *   (renewTime + leaseDurationSeconds < now). Each write carries the resourceVersion it read, so
 *   of two candidates racing for an expired lease the API server accepts one; the other gets 409
 *   Conflict, re-reads, and finds a live holder.
 * - The leader renews every `retryPeriodMs`. If it cannot renew for `renewDeadlineMs` (shorter
 *   than the lease) it steps down on its own, before anyone else may take over; if it finds
 *   another holder it steps down at once.
 * - On a clean stop the leader steps down first, then releases the lease (clears the holder) so
 *   a peer takes over at its next retry instead of waiting out the lease.
 *
 * Expiry compares renewTime with this replica's clock, so replicas' clocks must agree to well
 * within `leaseDurationSeconds - renewDeadline` (NTP-synchronised nodes do).
 */
import { EventEmitter } from 'node:events';

import { CoordinationV1Api, V1MicroTime } from '@kubernetes/client-node';
import type { KubeConfig, V1Lease, V1LeaseSpec } from '@kubernetes/client-node';

import { sleep, systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { ConfigError } from '../errors.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import { callKube, KubeApiError, kubeStatusOf, MESHCA_LABELS, readOptional } from './kube-api.js';

export const DEFAULT_LEASE_NAME = 'meshca-leader';
export const DEFAULT_LEASE_DURATION_SECONDS = 15;
export const DEFAULT_RENEW_DEADLINE_MS = 10_000;
export const DEFAULT_RETRY_PERIOD_MS = 2_000;

export interface LeaseLeaderElectorOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  /** Default `meshca-leader`. */
  readonly leaseName?: string;
  /** This replica's name in `holderIdentity`: unique among candidates (the pod name). */
  readonly identity: string;
  /** Default 15. */
  readonly leaseDurationSeconds?: number;
  /** Default 10 s; must be shorter than the lease. */
  readonly renewDeadlineMs?: number;
  /** Default 2 s; must be shorter than the renew deadline. */
  readonly retryPeriodMs?: number;
  /** Followers wait up to this fraction longer than `retryPeriodMs`, so they do not poll in step. Default 0.2. */
  readonly jitterFraction?: number;
  /** Jitter source, [0, 1). Default `Math.random`. */
  readonly random?: () => number;
  /** Clear the holder when stopping while leading. Default true. */
  readonly releaseOnStop?: boolean;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Bound on each API call; default the renew deadline split over a few attempts. */
  readonly requestTimeoutMs?: number;
}

export interface LeaderElectorEvents {
  'started-leading': [];
  'stopped-leading': [];
  /** A new holder was observed (including this replica); undefined when the lease was released. */
  'new-leader': [string | undefined];
}

type AttemptOutcome =
  | { readonly kind: 'leading' }
  | { readonly kind: 'held'; readonly holder: string }
  | { readonly kind: 'failed'; readonly error: KubeApiError };

/** client-node types MicroTime as a Date but hands back the wire string: accept both. */
function toDate(value: unknown): Date | undefined {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value;
  if (typeof value !== 'string' || value === '') return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** A MicroTime on the wire: RFC 3339 with microseconds, as client-go writes it. */
function microTime(date: Date): V1MicroTime {
  return new V1MicroTime(date.getTime());
}

/** Whether `spec` names a holder whose lease is still running at `now`. Exported for tests. */
export function leaseHolderAt(spec: V1LeaseSpec | undefined, now: Date): string | undefined {
  const holder = spec?.holderIdentity;
  if (holder === undefined || holder === '') return undefined;
  const renewed = toDate(spec?.renewTime) ?? toDate(spec?.acquireTime);
  const durationSeconds = spec?.leaseDurationSeconds;
  // A lease without times or duration cannot be shown to be live: treat it as expired.
  if (renewed === undefined || durationSeconds === undefined || !(durationSeconds > 0)) return undefined;
  return renewed.getTime() + durationSeconds * 1000 < now.getTime() ? undefined : holder;
}

export class LeaseLeaderElector extends EventEmitter<LeaderElectorEvents> {
  readonly identity: string;
  readonly namespace: string;
  readonly leaseName: string;
  readonly #api: CoordinationV1Api;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #leaseDurationSeconds: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  readonly #jitterFraction: number;
  readonly #random: () => number;
  readonly #releaseOnStop: boolean;
  readonly #requestTimeoutMs: number;

  #leader = false;
  #running = false;
  #lastRenewAt: Date | undefined;
  #observedHolder: string | undefined;
  #lastErrorLogged: string | undefined;

  constructor(options: LeaseLeaderElectorOptions) {
    super();
    const problems: string[] = [];
    const leaseDurationSeconds = options.leaseDurationSeconds ?? DEFAULT_LEASE_DURATION_SECONDS;
    const renewDeadlineMs = options.renewDeadlineMs ?? DEFAULT_RENEW_DEADLINE_MS;
    const retryPeriodMs = options.retryPeriodMs ?? DEFAULT_RETRY_PERIOD_MS;
    const jitterFraction = options.jitterFraction ?? 0.2;
    if (typeof options.identity !== 'string' || options.identity === '') problems.push('leader election identity must be non-empty (the pod name)');
    if (typeof options.namespace !== 'string' || options.namespace === '') problems.push('leader election namespace must be non-empty');
    if (!Number.isInteger(leaseDurationSeconds) || leaseDurationSeconds < 1) problems.push(`leaseDurationSeconds must be a positive integer, got ${leaseDurationSeconds}`);
    if (!(renewDeadlineMs > 0) || renewDeadlineMs >= leaseDurationSeconds * 1000) {
      problems.push(`renewDeadlineMs (${renewDeadlineMs}) must be positive and shorter than the lease (${leaseDurationSeconds * 1000} ms)`);
    }
    // As client-go: a renew deadline no longer than a (jittered) retry would give the leader one try.
    if (!(retryPeriodMs > 0) || retryPeriodMs * (1 + jitterFraction) >= renewDeadlineMs) {
      problems.push(`retryPeriodMs (${retryPeriodMs}) with its jitter must be shorter than renewDeadlineMs (${renewDeadlineMs})`);
    }
    if (!(jitterFraction >= 0)) problems.push(`jitterFraction must be >= 0, got ${jitterFraction}`);
    if (problems.length > 0) throw new ConfigError(problems);
    this.identity = options.identity;
    this.namespace = options.namespace;
    this.leaseName = options.leaseName ?? DEFAULT_LEASE_NAME;
    this.#clock = options.clock ?? systemClock;
    this.#logger = (options.logger ?? silentLogger).child({ component: 'leader-election', lease: `${this.namespace}/${this.leaseName}`, identity: this.identity });
    this.#leaseDurationSeconds = leaseDurationSeconds;
    this.#renewDeadlineMs = renewDeadlineMs;
    this.#retryPeriodMs = retryPeriodMs;
    this.#jitterFraction = jitterFraction;
    this.#random = options.random ?? Math.random;
    this.#releaseOnStop = options.releaseOnStop ?? true;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? Math.max(1000, Math.floor(renewDeadlineMs / 2));
    try {
      this.#api = options.kubeConfig.makeApiClient(CoordinationV1Api);
    } catch (err) {
      throw new ConfigError([`kubeconfig cannot be used for leader election: ${err instanceof Error ? err.message : String(err)}`], { cause: err });
    }
  }

  /** Whether this replica currently believes it holds the lease. */
  get isLeader(): boolean {
    return this.#leader;
  }

  /** The holder seen at the last successful read, possibly this replica. */
  get observedLeader(): string | undefined {
    return this.#observedHolder;
  }

  /**
   * Campaigns for and keeps the lease until `signal` aborts; resolves after stepping down (and
   * releasing the lease). API failures are logged and retried, never thrown.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#running) throw new TypeError('LeaseLeaderElector.run is already running');
    this.#running = true;
    this.#logger.info({ namespace: this.namespace }, 'campaigning for leadership');
    try {
      while (!signal.aborted) {
        const attemptAt = this.#clock.now();
        let outcome: AttemptOutcome;
        try {
          outcome = await this.#tryAcquireOrRenew(attemptAt, signal);
        } catch (err) {
          if (signal.aborted) break;
          throw err;
        }
        this.#apply(outcome, attemptAt);
        try {
          await sleep(this.#clock, this.#nextDelayMs(), signal);
        } catch {
          break;
        }
      }
    } finally {
      if (this.#leader) {
        // Stop the leader's work before anyone else can start it.
        this.#stepDown('stopping', true);
        if (this.#releaseOnStop) await this.#release();
      }
      this.#running = false;
    }
  }

  #nextDelayMs(): number {
    if (this.#leader && this.#lastRenewAt !== undefined) {
      // Wake no later than the renew deadline, so stepping down is never late.
      const untilDeadline = this.#lastRenewAt.getTime() + this.#renewDeadlineMs - this.#clock.now().getTime();
      return Math.max(0, Math.min(this.#retryPeriodMs, untilDeadline));
    }
    return this.#retryPeriodMs * (1 + this.#jitterFraction * this.#random());
  }

  #apply(outcome: AttemptOutcome, attemptAt: Date): void {
    switch (outcome.kind) {
      case 'leading':
        this.#lastErrorLogged = undefined;
        // The lease says renewTime = attemptAt: measure the deadline from there, not from the answer.
        this.#lastRenewAt = attemptAt;
        if (!this.#leader) {
          this.#leader = true;
          this.#logger.info({ namespace: this.namespace }, 'became the leader');
          this.emit('started-leading');
        }
        return;
      case 'held':
        this.#lastErrorLogged = undefined;
        if (this.#leader) this.#stepDown(`the lease is held by ${outcome.holder}`);
        return;
      case 'failed': {
        // Log a failure once per distinct message: a follower retrying every 2 s must not flood the log.
        if (this.#lastErrorLogged !== outcome.error.message) {
          this.#lastErrorLogged = outcome.error.message;
          this.#logger.warn({ err: outcome.error, leader: this.#leader }, 'leader election: lease request failed; retrying');
        }
        const sinceRenewMs = this.#lastRenewAt === undefined ? Infinity : this.#clock.now().getTime() - this.#lastRenewAt.getTime();
        if (this.#leader && sinceRenewMs >= this.#renewDeadlineMs) {
          this.#stepDown(`could not renew the lease for ${Math.round(sinceRenewMs)} ms (renew deadline ${this.#renewDeadlineMs} ms)`);
        }
        return;
      }
    }
  }

  /** `expected`: a requested stop, logged as info; losing the lease otherwise deserves a warning. */
  #stepDown(why: string, expected = false): void {
    if (!this.#leader) return;
    this.#leader = false;
    this.#lastRenewAt = undefined;
    const fields = { namespace: this.namespace, reason: why };
    if (expected) this.#logger.info(fields, 'stopped leading');
    else this.#logger.warn(fields, 'stopped leading');
    this.emit('stopped-leading');
  }

  #observe(holder: string | undefined): void {
    if (holder === this.#observedHolder) return;
    this.#observedHolder = holder;
    this.#logger.info({ namespace: this.namespace, holder: holder ?? null }, 'observed a new leader');
    this.emit('new-leader', holder);
  }

  #read(signal: AbortSignal | undefined): Promise<V1Lease | undefined> {
    return readOptional(
      `get lease ${this.namespace}/${this.leaseName}`,
      (o) => this.#api.readNamespacedLease({ name: this.leaseName, namespace: this.namespace }, o),
      { timeoutMs: this.#requestTimeoutMs, ...(signal === undefined ? {} : { signal }) },
    );
  }

  /** One round of client-go's tryAcquireOrRenew; a 409 on write is answered by re-reading once. */
  async #tryAcquireOrRenew(now: Date, signal: AbortSignal): Promise<AttemptOutcome> {
    const action = `update lease ${this.namespace}/${this.leaseName}`;
    const callOptions = { signal, timeoutMs: this.#requestTimeoutMs };
    for (let round = 0; round < 2; round++) {
      let current: V1Lease | undefined;
      try {
        current = await this.#read(signal);
      } catch (err) {
        if (signal.aborted) throw err;
        return { kind: 'failed', error: err as KubeApiError };
      }
      const spec: V1LeaseSpec = {
        holderIdentity: this.identity,
        leaseDurationSeconds: this.#leaseDurationSeconds,
        acquireTime: microTime(now),
        renewTime: microTime(now),
        leaseTransitions: 0,
      };
      try {
        if (current === undefined) {
          await callKube(
            `create lease ${this.namespace}/${this.leaseName}`,
            (o) =>
              this.#api.createNamespacedLease(
                {
                  namespace: this.namespace,
                  body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.leaseName, namespace: this.namespace, labels: { ...MESHCA_LABELS } }, spec },
                },
                o,
              ),
            callOptions,
          );
          this.#observe(this.identity);
          return { kind: 'leading' };
        }
        const previous = current.spec;
        const holder = leaseHolderAt(previous, now);
        if (holder !== undefined && holder !== this.identity) {
          this.#observe(holder);
          return { kind: 'held', holder };
        }
        if (previous?.holderIdentity === this.identity) {
          // Renewal: keep when we acquired it and the transition count.
          spec.acquireTime = previous.acquireTime ?? spec.acquireTime;
          spec.leaseTransitions = previous.leaseTransitions ?? 0;
        } else {
          spec.leaseTransitions = (previous?.leaseTransitions ?? 0) + 1;
        }
        await callKube(
          action,
          (o) =>
            this.#api.replaceNamespacedLease(
              {
                name: this.leaseName,
                namespace: this.namespace,
                // resourceVersion makes this a compare-and-swap: a concurrent writer gets us a 409.
                body: { ...current, metadata: { ...current.metadata, name: this.leaseName }, spec },
              },
              o,
            ),
          callOptions,
        );
        this.#observe(this.identity);
        return { kind: 'leading' };
      } catch (err) {
        if (signal.aborted) throw err;
        if (kubeStatusOf(err) === 409 && round === 0) continue;
        return { kind: 'failed', error: err as KubeApiError };
      }
    }
    // Two conflicts in a row: someone else is writing the lease right now; try again next period.
    return { kind: 'failed', error: new KubeApiError(`${action}: the lease kept changing under us`, { rule: 'conflict', status: 409 }) };
  }

  /** Clears the holder so a peer can take over at once. Best effort: the lease expires anyway. */
  async #release(): Promise<void> {
    try {
      const current = await this.#read(undefined);
      if (current?.spec?.holderIdentity !== this.identity) return;
      const now = this.#clock.now();
      await callKube(
        `release lease ${this.namespace}/${this.leaseName}`,
        (o) =>
          this.#api.replaceNamespacedLease(
            {
              name: this.leaseName,
              namespace: this.namespace,
              body: {
                ...current,
                // As client-go: no holder, a one-second lease, transitions kept.
                spec: { leaseDurationSeconds: 1, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: current.spec?.leaseTransitions ?? 0 },
              },
            },
            o,
          ),
        { timeoutMs: this.#requestTimeoutMs },
      );
      this.#observe(undefined);
      this.#logger.info({ namespace: this.namespace }, 'released the lease');
    } catch (err) {
      this.#logger.warn({ err }, 'could not release the lease; peers take over when it expires');
    }
  }
}
