/**
 * The pure half of rotation (STYLE rule 9): when to renew an SVID and how long to wait after a
 * failure. No clock, no timers; the loop in `svid-rotator.ts` supplies `random` and acts on the
 * answers.
 */
import type { RandomSource } from './ports.js';

export interface RotationTimeOptions {
  /**
   * Spread around the midpoint, as a fraction of half the lifetime. Default 0.1, so a 24 h SVID
   * renews between 10.8 h and 13.2 h: enough to keep a fleet from stampeding the CA after a
   * mass restart, while every renewal stays far from both ends of the lifetime. At most 0.5.
   */
  readonly jitterFraction?: number;
  readonly random?: RandomSource;
}

export const DEFAULT_ROTATION_JITTER_FRACTION = 0.1;
export const MAX_ROTATION_JITTER_FRACTION = 0.5;

/**
 * When to replace an SVID: notBefore + 50 % of its lifetime ± jitter. Renewing at half-life
 * leaves the other half for retries when the CA is down, as Istio and SPIRE do.
 */
export function rotationTime(svid: { readonly notBefore: Date; readonly notAfter: Date }, options: RotationTimeOptions = {}): Date {
  const start = validTime(svid?.notBefore, 'svid.notBefore');
  const end = validTime(svid?.notAfter, 'svid.notAfter');
  const fraction = options.jitterFraction ?? DEFAULT_ROTATION_JITTER_FRACTION;
  if (!Number.isFinite(fraction) || fraction < 0 || fraction > MAX_ROTATION_JITTER_FRACTION) {
    throw new TypeError(`jitterFraction must be between 0 and ${MAX_ROTATION_JITTER_FRACTION}, got ${fraction}`);
  }
  // A certificate that is already over (or malformed) is due now.
  if (end <= start) return new Date(start);
  const half = (end - start) / 2;
  const spread = (2 * unitRandom(options.random) - 1) * fraction * half;
  return new Date(Math.round(start + half + spread));
}

export type BackoffJitter = 'full' | 'equal';

export interface BackoffOptions {
  /** Delay before the first retry, before jitter. Default 1 s. */
  readonly baseMs?: number;
  /** Cap on the exponential delay. Default 5 min. */
  readonly maxMs?: number;
  /**
   * `equal` (default) waits between half and all of the exponential delay, so retries always
   * slow down; `full` waits anywhere from 0, which spreads a herd further but may retry at once.
   */
  readonly jitter?: BackoffJitter;
  readonly random?: RandomSource;
}

export const DEFAULT_BACKOFF_BASE_MS = 1000;
export const DEFAULT_BACKOFF_MAX_MS = 5 * 60_000;
/**
 * The retry cap while the workload holds no valid SVID: it has no identity at all, so every
 * second of backoff is outage; once the CA answers again the SVID is back within this (plus the
 * call), not minutes later. With a valid SVID the normal cap applies.
 */
export const NO_SVID_BACKOFF_MAX_MS = 4000;

/**
 * Delay before retry number `attempt` (1 for the first retry): `baseMs * 2^(attempt-1)` capped
 * at `maxMs`, with jitter. Integer milliseconds.
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions = {}): number {
  if (!Number.isInteger(attempt) || attempt < 1) throw new TypeError(`attempt must be a positive integer, got ${attempt}`);
  const baseMs = options.baseMs ?? DEFAULT_BACKOFF_BASE_MS;
  const maxMs = options.maxMs ?? DEFAULT_BACKOFF_MAX_MS;
  if (!Number.isFinite(baseMs) || baseMs <= 0) throw new TypeError(`baseMs must be positive, got ${baseMs}`);
  if (!Number.isFinite(maxMs) || maxMs < baseMs) throw new TypeError(`maxMs must be at least baseMs, got ${maxMs}`);
  // Capping the exponent first keeps 2^n finite for any attempt count.
  const exponential = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 52));
  const r = unitRandom(options.random);
  const delay = (options.jitter ?? 'equal') === 'full' ? r * exponential : exponential / 2 + (r * exponential) / 2;
  return Math.floor(delay);
}

function validTime(value: unknown, what: string): number {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new TypeError(`${what} must be a valid Date`);
  return value.getTime();
}

/** Clamped to [0, 1] so a sloppy random source cannot push a rotation outside its window. */
function unitRandom(random: RandomSource | undefined): number {
  const r = (random ?? Math.random)();
  if (!Number.isFinite(r)) throw new TypeError(`random() must return a finite number, got ${r}`);
  return Math.min(1, Math.max(0, r));
}
