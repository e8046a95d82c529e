/**
 * CA rotation without downtime. The model (as in SPIRE's prepared/active/old slots and Istio's
 * multi-root `root-cert.pem`) rests on one ordering rule: relying parties must hold a root
 * before any SVID chains to it, and must keep it until the last SVID that chains to it expires.
 *
 *   prepare   a new authority is created and its root is PUBLISHED in the bundle; it signs nothing.
 *   activate  once the bundle has propagated, the prepared authority starts signing; the old root
 *             stays in the bundle until `trustUntil` = activation + max SVID TTL.
 *   retire    roots whose `trustUntil` passed leave the bundle.
 *   distrust  emergency: a compromised root leaves the bundle at once, whatever it breaks.
 *
 * Every change bumps the bundle sequence (`spiffe_sequence`). Decisions here are pure; files are
 * reached through the `AuthorityStore` port, whose file adapter is `files/authority-slots.ts`.
 */
import type { X509Certificate } from 'node:crypto';
import { CaInvalidError, CaNotReadyError, isIdentityError } from '../errors.js';
import type { KeyKind } from '../pki/algorithms.js';
import {
  authorityAnchor,
  createSelfSignedRoot,
  isSelfSignedAuthority,
  loadAuthority,
  type Authority,
  type AuthorityPem,
  type CreateRootOptions,
} from '../pki/authority.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import { parseX509BundlePem } from '../spiffe/x509-bundle.js';
import { DEFAULT_MAX_SVID_TTL_SECONDS } from './certificate-authority.js';
import { normalizeFingerprint, TrustBundle } from './trust-bundle.js';

export const AUTHORITY_STATE_SCHEMA_VERSION = 1;
/** How long a prepared root sits in the bundle before it may sign: well over the refresh hint. */
export const DEFAULT_PROPAGATION_DELAY_SECONDS = 3600;
/** The refresh hint the CA publishes; the propagation delay is never shorter. */
export const DEFAULT_REFRESH_HINT_SECONDS = 300;
/** A CA must be able to outlive this many max-TTL SVIDs, or it is refused. */
export const LIFETIME_SVID_MULTIPLE = 3;
export const DEFAULT_ROOT_VALIDITY_DAYS = 3650;
/** How soon automatic rotation asks the activation gate again after it said "not yet". */
export const ACTIVATION_RECHECK_MS = 60_000;

export interface RetiringRoot {
  /** SHA-256 fingerprint, Node's `fingerprint256` form. */
  readonly fingerprint: string;
  /** When every SVID this root's authority signed has expired: successor's activation + max SVID TTL. */
  readonly trustUntil: Date;
}

export interface DistrustedRoot {
  readonly fingerprint: string;
  readonly at: Date;
}

/** `authority-state.json`: what the files alone cannot say. */
export interface AuthorityState {
  readonly schemaVersion: typeof AUTHORITY_STATE_SCHEMA_VERSION;
  readonly trustDomain: string;
  readonly sequence: number;
  /** The roots `sequence` describes; a root-cert.pem holding others was edited outside meshca. */
  readonly bundleFingerprints: readonly string[];
  /** Signing certificate of the active authority and when it started signing (unknown for `ca init`). */
  readonly active: { readonly fingerprint: string; readonly activatedAt: Date | undefined } | undefined;
  /** Signing certificate of the prepared authority and when its root entered the bundle. */
  readonly next: { readonly fingerprint: string; readonly publishedAt: Date } | undefined;
  readonly retiring: readonly RetiringRoot[];
  readonly distrusted: readonly DistrustedRoot[];
}

/** The raw contents of a data directory. `active.rootPem` is the whole bundle (root-cert.pem). */
export interface StoredAuthority {
  readonly active: AuthorityPem;
  /** The prepared authority; its `rootPem` holds only the root(s) it chains to. */
  readonly next: AuthorityPem | undefined;
  /** Why `next/` could not be read (half-copied by hand, unreadable), when it could not. */
  readonly nextError: Error | undefined;
  readonly state: AuthorityState | undefined;
  readonly warnings: readonly string[];
}

/** One rotation step as the store must apply it: all or nothing, `state` last. */
export interface AuthorityChange {
  /** New active signing files (the bundle is `bundlePem`). */
  readonly active?: Omit<AuthorityPem, 'rootPem'>;
  /** New prepared authority, or `null` to remove `next/`. */
  readonly next?: AuthorityPem | null;
  /** New root-cert.pem. */
  readonly bundlePem?: string;
  readonly state: AuthorityState;
}

/** Port: where authorities and the bundle live. The file adapter is `createFileAuthorityStore`. */
export interface AuthorityStore {
  /** A consistent view; rejects with `CaNotReadyError` rule `in-progress` while a change is being written. */
  read(): Promise<StoredAuthority>;
  /**
   * Exclusive read-modify-write: `decide` sees the current contents and returns a change (or
   * none); the store applies it so that an interruption leaves the old state or, after
   * recovery, the new one.
   */
  update<T>(decide: (current: StoredAuthority) => Promise<{ readonly change?: AuthorityChange; readonly result: T }>): Promise<T>;
}

export interface NextAuthority {
  readonly authority: Authority;
  readonly authorityPem: AuthorityPem;
  /** The root it chains to (itself for a self-signed root). */
  readonly anchor: X509Certificate;
  /** When `prepare` published its root; undefined when it was staged by hand and not yet published. */
  readonly publishedAt: Date | undefined;
}

/** A validated view of a data directory: what a running CA signs with and publishes. */
export interface AuthoritySnapshot {
  readonly trustDomain: TrustDomain;
  readonly authority: Authority;
  /** The active authority's files; `rootPem` is the whole bundle. */
  readonly authorityPem: AuthorityPem;
  readonly bundle: TrustBundle;
  readonly next: NextAuthority | undefined;
  readonly nextError: Error | undefined;
  /** The state with what the files say reconciled in (drift is listed in `notes`). */
  readonly state: AuthorityState;
  /** File warnings and differences between the files and authority-state.json. */
  readonly notes: readonly string[];
}

export interface ResolveSnapshotOptions {
  readonly trustDomain: TrustDomain;
  readonly now: Date;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/**
 * Validates stored contents into a snapshot. Throws `CaInvalidError` / `BundleError` when the
 * active authority or the bundle cannot be used (rules of `loadAuthority` and
 * `parseX509BundlePem`, plus `trust-domain` and `distrusted`). A broken `next/` is not fatal
 * here: it is reported in `nextError`, and only operations that need it refuse.
 */
export function resolveAuthoritySnapshot(stored: StoredAuthority, { trustDomain, now }: ResolveSnapshotOptions): AuthoritySnapshot {
  const saved = stored.state;
  if (saved && saved.trustDomain !== trustDomain.name) {
    throw new CaInvalidError(`the data directory belongs to trust domain ${saved.trustDomain}, not ${trustDomain.name}`, {
      rule: 'trust-domain',
    });
  }
  const roots = parseX509BundlePem(trustDomain, stored.active.rootPem).authorities;
  for (const root of roots) {
    const distrusted = saved?.distrusted.find((d) => d.fingerprint === root.fingerprint256);
    if (distrusted) {
      throw new CaInvalidError(
        `root-cert.pem holds root ${root.fingerprint256}, distrusted at ${distrusted.at.toISOString()}; remove it from the bundle`,
        { rule: 'distrusted' },
      );
    }
  }
  const authority = loadAuthority(stored.active, now);
  const notes = [...stored.warnings];
  const fingerprints = roots.map((r) => r.fingerprint256);

  let sequence = 1;
  if (saved) {
    sequence = saved.sequence;
    if (!sameSet(saved.bundleFingerprints, fingerprints)) {
      // Edited outside meshca (plug-in CA files replaced): still a new bundle, so a new sequence.
      sequence += 1;
      notes.push(`root-cert.pem changed outside meshca since bundle sequence ${saved.sequence}`);
    }
  }
  const bundle = new TrustBundle(trustDomain, roots, sequence);

  let activatedAt: Date | undefined;
  if (saved?.active) {
    if (saved.active.fingerprint === authority.certificate.fingerprint256) activatedAt = saved.active.activatedAt;
    else notes.push('the active CA certificate changed outside meshca; its activation time is unknown');
  }
  const anchor = authorityAnchor(authority);
  const retiring = (saved?.retiring ?? []).filter((r) => fingerprints.includes(r.fingerprint) && r.fingerprint !== anchor.fingerprint256);

  let next: NextAuthority | undefined;
  let nextError = stored.nextError;
  if (stored.next && !nextError) {
    try {
      const nextAuthority = loadAuthority(stored.next, now);
      const nextAnchor = authorityAnchor(nextAuthority);
      const recorded = saved?.next?.fingerprint === nextAuthority.certificate.fingerprint256 && fingerprints.includes(nextAnchor.fingerprint256);
      next = Object.freeze({
        authority: nextAuthority,
        authorityPem: stored.next,
        anchor: nextAnchor,
        publishedAt: recorded ? saved!.next!.publishedAt : undefined,
      });
    } catch (err) {
      if (!isIdentityError(err)) throw err;
      nextError = err;
    }
  }
  if (nextError) notes.push(`next/ holds no usable authority: ${nextError.message}`);

  const state: AuthorityState = Object.freeze({
    schemaVersion: AUTHORITY_STATE_SCHEMA_VERSION,
    trustDomain: trustDomain.name,
    sequence,
    bundleFingerprints: Object.freeze(fingerprints),
    active: Object.freeze({ fingerprint: authority.certificate.fingerprint256, activatedAt }),
    next: next?.publishedAt ? Object.freeze({ fingerprint: next.authority.certificate.fingerprint256, publishedAt: next.publishedAt }) : undefined,
    retiring: Object.freeze(retiring),
    distrusted: Object.freeze([...(saved?.distrusted ?? [])]),
  });
  return Object.freeze({
    trustDomain,
    authority,
    authorityPem: stored.active,
    bundle,
    next,
    nextError,
    state,
    notes: Object.freeze(notes),
  });
}

export interface CheckAuthorityLifetimeOptions {
  readonly authorityNotAfter: Date;
  readonly maxSvidTtlSeconds: number;
  readonly now: Date;
}

/**
 * The lifetime rule: a CA must outlive an SVID several times over, or SVIDs get clipped to its
 * expiry and its successor has no room to be prepared, published and activated. Throws
 * `CaInvalidError` rule `lifetime` when the remaining life is under 3 x the max SVID TTL.
 */
export function checkAuthorityLifetime({ authorityNotAfter, maxSvidTtlSeconds, now }: CheckAuthorityLifetimeOptions): void {
  if (!(maxSvidTtlSeconds > 0)) throw new TypeError('maxSvidTtlSeconds must be positive');
  const remainingSeconds = (authorityNotAfter.getTime() - now.getTime()) / 1000;
  const neededSeconds = LIFETIME_SVID_MULTIPLE * maxSvidTtlSeconds;
  if (remainingSeconds < neededSeconds) {
    throw new CaInvalidError(
      `the CA expires at ${authorityNotAfter.toISOString()}, in ${Math.max(0, Math.floor(remainingSeconds))}s; it must stay valid ` +
        `for at least ${LIFETIME_SVID_MULTIPLE} x the max SVID TTL (${neededSeconds}s)`,
      { rule: 'lifetime' },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Automatic rotation of self-signed roots: a pure plan, executed by whoever owns a timer.

export interface AutoRotationState {
  readonly active: { readonly notBefore: Date; readonly notAfter: Date; readonly selfSigned: boolean };
  /** A prepared authority; `publishedAt` undefined = staged in next/ but not yet in the bundle. */
  readonly next: { readonly publishedAt: Date | undefined } | undefined;
  readonly retiring: readonly RetiringRoot[];
}

export interface AutoRotationOptions {
  /** How long a prepared root must sit in the bundle before it signs. Default 1 h. */
  readonly propagationDelaySeconds?: number;
  /** The published refresh hint; the propagation delay is never shorter. Default 300 s. */
  readonly refreshHintSeconds?: number;
  /** Prepare when this fraction of the root's life is left. Default 0.2. */
  readonly prepareRemainingFraction?: number;
  /** ... or when this much is left, whichever comes first. Default 30 days. */
  readonly prepareRemainingSeconds?: number;
  /** Max SVID TTL: the successor must be active before the lifetime rule would refuse the old CA. Default 7 days. */
  readonly maxSvidTtlSeconds?: number;
}

export type AutoRotationAction = 'prepare' | 'activate' | 'retire' | 'none';

export interface AutoRotationPlan {
  readonly action: AutoRotationAction;
  /** When to act; at or before `now` means now. Undefined for `none`. */
  readonly at: Date | undefined;
  readonly reason: string;
}

export function autoRotationStateOf(snapshot: AuthoritySnapshot): AutoRotationState {
  return {
    active: {
      notBefore: new Date(snapshot.authority.certificate.validFrom),
      notAfter: snapshot.authority.notAfter,
      selfSigned: isSelfSignedAuthority(snapshot.authority),
    },
    next: snapshot.next ? { publishedAt: snapshot.next.publishedAt } : undefined,
    retiring: snapshot.state.retiring,
  };
}

/** The effective propagation delay in seconds: the configured one, never below the refresh hint. */
export function propagationDelaySeconds(options: AutoRotationOptions = {}): number {
  return Math.max(options.propagationDelaySeconds ?? DEFAULT_PROPAGATION_DELAY_SECONDS, options.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS);
}

/**
 * The next automatic step and when it is due. Retiring comes first on ties (it only shrinks the
 * bundle), then activation, then preparation. A plug-in (not self-signed) authority is never
 * prepared automatically: meshca does not hold its root key; an operator stages `next/`.
 */
export function planAutoRotation(state: AutoRotationState, now: Date, options: AutoRotationOptions = {}): AutoRotationPlan {
  const delayMs = propagationDelaySeconds(options) * 1000;
  const candidates: AutoRotationPlan[] = [];

  if (state.retiring.length > 0) {
    const first = state.retiring.reduce((a, b) => (a.trustUntil.getTime() <= b.trustUntil.getTime() ? a : b));
    candidates.push({ action: 'retire', at: first.trustUntil, reason: `root ${first.fingerprint} is trusted until ${first.trustUntil.toISOString()}` });
  }
  if (state.next) {
    if (state.next.publishedAt === undefined) {
      candidates.push({ action: 'prepare', at: now, reason: 'an authority staged in next/ is not published in the bundle yet' });
    } else {
      const at = new Date(state.next.publishedAt.getTime() + delayMs);
      candidates.push({ action: 'activate', at, reason: `the prepared root has been published since ${state.next.publishedAt.toISOString()}` });
    }
  } else if (state.active.selfSigned) {
    const { notBefore, notAfter } = state.active;
    const totalMs = notAfter.getTime() - notBefore.getTime();
    const maxSvidTtlMs = (options.maxSvidTtlSeconds ?? DEFAULT_MAX_SVID_TTL_SECONDS) * 1000;
    const leadMs = Math.max(
      totalMs * (options.prepareRemainingFraction ?? 0.2),
      (options.prepareRemainingSeconds ?? 30 * 86400) * 1000,
      // The successor must be signing before the old CA falls under the lifetime rule.
      LIFETIME_SVID_MULTIPLE * maxSvidTtlMs + delayMs,
    );
    const at = new Date(Math.max(notBefore.getTime(), notAfter.getTime() - leadMs));
    candidates.push({ action: 'prepare', at, reason: `the root expires at ${notAfter.toISOString()}` });
  }
  if (candidates.length === 0) {
    return { action: 'none', at: undefined, reason: 'plug-in authority: rotate it by staging a new one in next/' };
  }
  const order: Record<AutoRotationAction, number> = { retire: 0, activate: 1, prepare: 2, none: 3 };
  return candidates.reduce((a, b) => {
    const diff = a.at!.getTime() - b.at!.getTime();
    return diff < 0 || (diff === 0 && order[a.action] <= order[b.action]) ? a : b;
  });
}

// ---------------------------------------------------------------------------------------------
// Operations.

export interface RootSummary {
  readonly fingerprint: string;
  readonly subject: string;
  readonly notAfter: Date;
}

export type RotationOperation = 'prepare' | 'activate' | 'retire' | 'distrust';

export interface RotationResult {
  readonly operation: RotationOperation;
  /** False when there was nothing to do (files untouched, sequence unchanged). */
  readonly changed: boolean;
  readonly sequence: number;
  /** Roots that entered / left the bundle. */
  readonly added: readonly RootSummary[];
  readonly removed: readonly RootSummary[];
  /** The signing certificate and the root it chains to, after the operation. */
  readonly active: RootSummary;
  readonly activeRoot: RootSummary;
  readonly next: RootSummary | undefined;
  readonly retiring: readonly RetiringRoot[];
  readonly bundle: readonly RootSummary[];
  readonly warnings: readonly string[];
}

export interface AuthorityRotationOptions {
  readonly store: AuthorityStore;
  readonly trustDomain: TrustDomain;
  /** The longest SVID the CA issues: how long a replaced root stays trusted. Default 7 days. */
  readonly maxSvidTtlSeconds?: number;
  readonly propagationDelaySeconds?: number;
  readonly refreshHintSeconds?: number;
  /** Root factory; defaults to `createSelfSignedRoot`. */
  readonly createRoot?: (options: CreateRootOptions) => Promise<{ certPem: string; keyPem: string }>;
  /**
   * Asked before the prepared authority starts signing: why relying parties may not hold its
   * root yet (in Kubernetes, a namespace whose root ConfigMap lacks it), or undefined to go
   * ahead. Activation waits for it; `activate({ force: true })` does not ask.
   */
  readonly activationGate?: (next: NextAuthority) => Promise<string | undefined>;
}

export interface ActivateOptions {
  readonly now: Date;
  /** Activate even if the activation gate says relying parties may not have the root yet. */
  readonly force?: boolean;
}

export interface PrepareOptions {
  readonly now: Date;
  readonly keyKind?: KeyKind;
  readonly validityDays?: number;
}

export interface RetireOptions {
  readonly now: Date;
  /** Drop retiring roots even before their `trustUntil`: SVIDs they signed stop verifying. */
  readonly force?: boolean;
}

function summarize(cert: X509Certificate): RootSummary {
  // Node reports an empty subject as undefined despite its typings.
  const subject = (cert.subject as string | undefined)?.replace(/\n/g, ', ') || '(empty subject)';
  return Object.freeze({ fingerprint: cert.fingerprint256, subject, notAfter: new Date(cert.validTo) });
}

interface Decision {
  readonly change?: AuthorityChange;
  readonly result: RotationResult;
}

/** Runs rotation operations against an `AuthorityStore`; each one is a single atomic change. */
export class AuthorityRotation {
  readonly #store: AuthorityStore;
  readonly #trustDomain: TrustDomain;
  readonly #maxSvidTtlSeconds: number;
  readonly #autoOptions: AutoRotationOptions;
  readonly #createRoot: NonNullable<AuthorityRotationOptions['createRoot']>;
  readonly #activationGate: AuthorityRotationOptions['activationGate'];

  constructor(options: AuthorityRotationOptions) {
    this.#store = options.store;
    this.#trustDomain = options.trustDomain;
    this.#maxSvidTtlSeconds = options.maxSvidTtlSeconds ?? DEFAULT_MAX_SVID_TTL_SECONDS;
    if (!(this.#maxSvidTtlSeconds > 0)) throw new TypeError('maxSvidTtlSeconds must be positive');
    this.#autoOptions = {
      maxSvidTtlSeconds: this.#maxSvidTtlSeconds,
      ...(options.propagationDelaySeconds === undefined ? {} : { propagationDelaySeconds: options.propagationDelaySeconds }),
      ...(options.refreshHintSeconds === undefined ? {} : { refreshHintSeconds: options.refreshHintSeconds }),
    };
    this.#createRoot = options.createRoot ?? createSelfSignedRoot;
    this.#activationGate = options.activationGate;
  }

  get autoRotationOptions(): AutoRotationOptions {
    return this.#autoOptions;
  }

  /** The validated current state, without changing anything. */
  async status(now: Date): Promise<AuthoritySnapshot> {
    return resolveAuthoritySnapshot(await this.#store.read(), { trustDomain: this.#trustDomain, now });
  }

  /**
   * Publishes a new authority: a fresh self-signed root in `next/`, or the one an operator
   * staged there, whose root enters the bundle now and signs nothing until `activate`.
   */
  prepare(options: PrepareOptions): Promise<RotationResult> {
    return this.#update(options.now, async (snap) => {
      const { now } = options;
      if (snap.nextError) {
        throw new CaInvalidError(`next/ holds an authority that cannot be used (${snap.nextError.message}); fix or remove it first`, {
          rule: snap.nextError instanceof CaInvalidError ? (snap.nextError.rule ?? 'next') : 'next',
          cause: snap.nextError,
        });
      }
      if (snap.next?.publishedAt) {
        throw new CaInvalidError(
          `an authority is already prepared (SHA-256 ${snap.next.authority.certificate.fingerprint256}, published at ` +
            `${snap.next.publishedAt.toISOString()}); activate it, or distrust its root to discard it`,
          { rule: 'already-prepared' },
        );
      }
      let nextPem: AuthorityPem | undefined;
      let next: Authority;
      if (snap.next) {
        next = snap.next.authority; // staged by an operator: publish it as it is
      } else {
        const root = await this.#createRoot({
          trustDomain: this.#trustDomain.name,
          keyKind: options.keyKind ?? 'ec-p256',
          now,
          validityDays: options.validityDays ?? DEFAULT_ROOT_VALIDITY_DAYS,
        });
        nextPem = { certPem: root.certPem, keyPem: root.keyPem, chainPem: root.certPem, rootPem: root.certPem };
        next = loadAuthority(nextPem, now);
      }
      checkAuthorityLifetime({ authorityNotAfter: next.notAfter, maxSvidTtlSeconds: this.#maxSvidTtlSeconds, now });
      const anchor = authorityAnchor(next);
      this.#refuseDistrusted(snap, anchor);
      const bundle = snap.bundle.withRoot(anchor).withSequence(snap.bundle.sequence + 1);
      const state: AuthorityState = {
        ...snap.state,
        sequence: bundle.sequence,
        bundleFingerprints: bundle.fingerprints,
        next: { fingerprint: next.certificate.fingerprint256, publishedAt: now },
        // A staged authority under a root that was on its way out keeps that root trusted.
        retiring: snap.state.retiring.filter((r) => r.fingerprint !== anchor.fingerprint256),
      };
      return this.#decide('prepare', snap, bundle, state, next, {
        ...(nextPem ? { next: nextPem } : {}),
        bundlePem: bundle.toPem(),
        state,
      });
    });
  }

  /** The prepared authority starts signing; the old root stays trusted until activation + max SVID TTL. */
  activate({ now, force = false }: ActivateOptions): Promise<RotationResult> {
    return this.#update(now, async (snap) => {
      const next = this.#requireNext(snap, 'activate');
      const warnings: string[] = [];
      if (!snap.bundle.has(next.anchor.fingerprint256)) {
        throw new CaInvalidError(
          `the prepared authority's root ${next.anchor.fingerprint256} is not in the trust bundle; run \`meshca ca rotate --prepare\` to publish it first`,
          { rule: 'not-published' },
        );
      }
      const waitFor = force ? undefined : await this.#activationGate?.(next);
      if (waitFor !== undefined) {
        throw new CaNotReadyError(`not activating yet: ${waitFor} (activate anyway with --force)`, { rule: 'not-propagated' });
      }
      const delayMs = propagationDelaySeconds(this.#autoOptions) * 1000;
      if (next.publishedAt === undefined) {
        warnings.push('the prepared authority was not published by `meshca ca rotate --prepare`; make sure every relying party already has its root');
      } else if (now.getTime() - next.publishedAt.getTime() < delayMs) {
        warnings.push(
          `its root was published only ${Math.round((now.getTime() - next.publishedAt.getTime()) / 1000)}s ago, less than the ` +
            `propagation delay (${delayMs / 1000}s): relying parties that have not refreshed their bundle reject the new SVIDs until they do`,
        );
      }
      const promoted = this.#promote(snap, next, now, false);
      const bundle = promoted.bundle.withSequence(snap.bundle.sequence + 1);
      const state: AuthorityState = { ...promoted.state, sequence: bundle.sequence };
      return this.#decide('activate', snap, bundle, state, undefined, {
        active: activeFilesOf(next.authorityPem),
        next: null,
        state,
      }, warnings);
    });
  }

  /** Drops retiring roots whose `trustUntil` has passed (all of them with `force`). */
  retire({ now, force = false }: RetireOptions): Promise<RotationResult> {
    return this.#update(now, async (snap) => {
      const due = snap.state.retiring.filter((r) => force || r.trustUntil.getTime() <= now.getTime());
      if (due.length === 0) {
        const first = [...snap.state.retiring].sort((a, b) => a.trustUntil.getTime() - b.trustUntil.getTime())[0];
        if (first) {
          throw new CaInvalidError(
            `root ${first.fingerprint} is still trusted until ${first.trustUntil.toISOString()}: SVIDs it signed may be valid until then; ` +
              'retire after that time, or pass --force to drop it now',
            { rule: 'too-early' },
          );
        }
        return { result: this.#result('retire', snap, snap.bundle, snap.state, snap.authority, snap.next?.authority, false, ['no root is retiring: nothing to do']) };
      }
      const warnings = due
        .filter((r) => r.trustUntil.getTime() > now.getTime())
        .map((r) => `root ${r.fingerprint} was trusted until ${r.trustUntil.toISOString()}: SVIDs it signed no longer verify`);
      let bundle = snap.bundle;
      for (const r of due) bundle = bundle.withoutRoot(r.fingerprint);
      bundle = bundle.withSequence(snap.bundle.sequence + 1);
      const state: AuthorityState = {
        ...snap.state,
        sequence: bundle.sequence,
        bundleFingerprints: bundle.fingerprints,
        retiring: snap.state.retiring.filter((r) => !due.includes(r)),
      };
      return this.#decide('retire', snap, bundle, state, snap.next?.authority, { bundlePem: bundle.toPem(), state }, warnings);
    });
  }

  /**
   * Emergency removal of a compromised root. The active root can only go when a prepared
   * authority (under another root) exists: that one is activated at once.
   */
  distrust(fingerprint: string, { now }: { readonly now: Date }): Promise<RotationResult> {
    const target = normalizeFingerprint(fingerprint);
    return this.#update(now, async (snap) => {
      const warnings: string[] = [];
      const root = snap.bundle.find(target);
      if (!root) {
        const before = snap.state.distrusted.find((d) => d.fingerprint === target);
        if (before) {
          return {
            result: this.#result('distrust', snap, snap.bundle, snap.state, snap.authority, snap.next?.authority, false, [
              `root ${target} was already distrusted at ${before.at.toISOString()}`,
            ]),
          };
        }
        throw new CaInvalidError(`root ${target} is not in the trust bundle (it holds ${snap.bundle.fingerprints.join(', ')})`, {
          rule: 'unknown-root',
        });
      }
      const distrusted = [...snap.state.distrusted, { fingerprint: target, at: now }];
      const activeAnchor = authorityAnchor(snap.authority);
      let change: Omit<AuthorityChange, 'state'> = {};
      let base = snap;
      let nextAfter: Authority | undefined = snap.next?.authority;
      if (activeAnchor.fingerprint256 === target) {
        const next = snap.next;
        if (!next || snap.nextError || next.anchor.fingerprint256 === target) {
          throw new CaInvalidError(
            `root ${target} signs the active authority and no prepared authority under another root exists: distrusting it ` +
              'would leave nothing to sign with. Run `meshca ca rotate --prepare`, then distrust it (the prepared authority is activated at once)',
            { rule: 'no-next' },
          );
        }
        const promoted = this.#promote(snap, next, now, true);
        base = { ...snap, bundle: promoted.bundle, state: promoted.state };
        change = { active: activeFilesOf(next.authorityPem), next: null };
        nextAfter = undefined;
        warnings.push(`activated the prepared authority ${next.authority.certificate.fingerprint256} in place of the distrusted one`);
        if (next.publishedAt === undefined || now.getTime() - next.publishedAt.getTime() < propagationDelaySeconds(this.#autoOptions) * 1000) {
          warnings.push('the new root may not have reached every relying party yet');
        }
      } else if (snap.next && snap.next.anchor.fingerprint256 === target) {
        change = { next: null };
        nextAfter = undefined;
        warnings.push('discarded the prepared authority that chains to this root');
      }
      const bundle = base.bundle.withoutRoot(target).withSequence(snap.bundle.sequence + 1);
      warnings.push(`SVIDs that chain to ${target} fail verification once relying parties fetch bundle sequence ${bundle.sequence}`);
      const state: AuthorityState = {
        ...base.state,
        sequence: bundle.sequence,
        bundleFingerprints: bundle.fingerprints,
        next: nextAfter ? base.state.next : undefined,
        retiring: base.state.retiring.filter((r) => r.fingerprint !== target),
        distrusted,
      };
      return this.#decide('distrust', snap, bundle, state, nextAfter, { ...change, bundlePem: bundle.toPem(), state }, warnings);
    });
  }

  /**
   * One step of automatic rotation: performs the planned action when it is due and returns the
   * plan that follows. The caller arms a timer for `plan.at`.
   */
  async autoRotate({ now, keyKind }: { readonly now: Date; readonly keyKind?: KeyKind }): Promise<{ performed: RotationResult | undefined; plan: AutoRotationPlan }> {
    const plan = planAutoRotation(autoRotationStateOf(await this.status(now)), now, this.#autoOptions);
    if (plan.action === 'none' || plan.at === undefined || plan.at.getTime() > now.getTime()) return { performed: undefined, plan };
    let performed: RotationResult;
    switch (plan.action) {
      case 'prepare':
        performed = await this.prepare({ now, ...(keyKind ? { keyKind } : {}) });
        break;
      case 'activate':
        try {
          performed = await this.activate({ now });
        } catch (err) {
          // Relying parties may not hold the root yet: look again shortly, do not fail.
          if (!(err instanceof CaNotReadyError && err.rule === 'not-propagated')) throw err;
          return { performed: undefined, plan: { action: 'activate', at: new Date(now.getTime() + ACTIVATION_RECHECK_MS), reason: err.message } };
        }
        break;
      case 'retire':
        performed = await this.retire({ now });
        break;
    }
    return { performed, plan: planAutoRotation(autoRotationStateOf(await this.status(now)), now, this.#autoOptions) };
  }

  // -------------------------------------------------------------------------------------------

  #update(now: Date, decide: (snap: AuthoritySnapshot) => Promise<Decision>): Promise<RotationResult> {
    return this.#store.update(async (current) => decide(resolveAuthoritySnapshot(current, { trustDomain: this.#trustDomain, now })));
  }

  #requireNext(snap: AuthoritySnapshot, what: string): NextAuthority {
    if (snap.nextError) {
      throw new CaInvalidError(`cannot ${what}: next/ holds an authority that cannot be used (${snap.nextError.message})`, {
        rule: 'next',
        cause: snap.nextError,
      });
    }
    if (!snap.next) throw new CaNotReadyError(`nothing to ${what}: no authority is prepared; run \`meshca ca rotate --prepare\` first`, { rule: 'no-next' });
    return snap.next;
  }

  #refuseDistrusted(snap: AuthoritySnapshot, root: X509Certificate): void {
    const entry = snap.state.distrusted.find((d) => d.fingerprint === root.fingerprint256);
    if (entry) {
      throw new CaInvalidError(`root ${root.fingerprint256} was distrusted at ${entry.at.toISOString()} and cannot be trusted again`, {
        rule: 'distrusted',
      });
    }
  }

  /**
   * The state and bundle once `next` signs. The replaced root (if the root changes at all: a new
   * intermediate under the same root retires nothing) stays trusted for one max SVID TTL, unless
   * it is being distrusted.
   */
  #promote(snap: AuthoritySnapshot, next: NextAuthority, now: Date, distrustOld: boolean): { state: AuthorityState; bundle: TrustBundle } {
    checkAuthorityLifetime({ authorityNotAfter: next.authority.notAfter, maxSvidTtlSeconds: this.#maxSvidTtlSeconds, now });
    this.#refuseDistrusted(snap, next.anchor);
    const oldAnchor = authorityAnchor(snap.authority);
    let retiring = snap.state.retiring.filter((r) => r.fingerprint !== next.anchor.fingerprint256);
    if (!distrustOld && oldAnchor.fingerprint256 !== next.anchor.fingerprint256) {
      const trustUntil = new Date(now.getTime() + this.#maxSvidTtlSeconds * 1000);
      const earlier = retiring.find((r) => r.fingerprint === oldAnchor.fingerprint256);
      retiring = [
        ...retiring.filter((r) => r.fingerprint !== oldAnchor.fingerprint256),
        { fingerprint: oldAnchor.fingerprint256, trustUntil: earlier && earlier.trustUntil > trustUntil ? earlier.trustUntil : trustUntil },
      ];
    }
    // Normally already published; an emergency activation publishes it now rather than sign
    // unverifiably. The caller bumps the sequence once for the whole operation.
    const bundle = snap.bundle.withRoot(next.anchor);
    const state: AuthorityState = {
      ...snap.state,
      bundleFingerprints: bundle.fingerprints,
      active: { fingerprint: next.authority.certificate.fingerprint256, activatedAt: now },
      next: undefined,
      retiring,
    };
    return { state, bundle };
  }

  #decide(
    operation: RotationOperation,
    before: AuthoritySnapshot,
    bundle: TrustBundle,
    state: AuthorityState,
    next: Authority | undefined,
    change: AuthorityChange,
    warnings: readonly string[] = [],
  ): Decision {
    // After an activation the signing authority is the former `next`.
    const signing = change.active ? before.next!.authority : before.authority;
    const result = this.#result(operation, before, bundle, state, signing, next, true, warnings);
    return { change, result };
  }

  #result(
    operation: RotationOperation,
    before: AuthoritySnapshot,
    bundle: TrustBundle,
    state: AuthorityState,
    signing: Authority,
    next: Authority | undefined,
    changed: boolean,
    warnings: readonly string[],
  ): RotationResult {
    return Object.freeze({
      operation,
      changed,
      sequence: bundle.sequence,
      added: bundle.roots.filter((r) => !before.bundle.has(r.fingerprint256)).map(summarize),
      removed: before.bundle.roots.filter((r) => !bundle.has(r.fingerprint256)).map(summarize),
      active: summarize(signing.certificate),
      activeRoot: summarize(authorityAnchor(signing)),
      next: next ? summarize(next.certificate) : undefined,
      retiring: state.retiring,
      bundle: bundle.roots.map(summarize),
      warnings: Object.freeze([...warnings]),
    });
  }
}

function activeFilesOf(pem: AuthorityPem): Omit<AuthorityPem, 'rootPem'> {
  return { certPem: pem.certPem, keyPem: pem.keyPem, chainPem: pem.chainPem ?? pem.certPem };
}
