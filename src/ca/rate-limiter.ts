import type { Clock } from '../clock.js';

export interface RateLimiterOptions {
  /** Sustained requests per second per key; 0 disables limiting. */
  readonly ratePerSecond: number;
  /** Requests a key may make at once before the rate applies. */
  readonly burst: number;
  readonly clock: Clock;
  /** Keys tracked at most; the least recently seen is forgotten first (it is then full again). */
  readonly maxKeys?: number;
}

/**
 * Token buckets per key (per SPIFFE ID). Generous by default: every replica of a Deployment
 * shares one service account, so a cold start sends hundreds of requests for one identity.
 */
export class RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #clock: Clock;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: RateLimiterOptions) {
    if (!(options.ratePerSecond >= 0) || !(options.burst >= 1)) throw new TypeError('rate must be >= 0 and burst >= 1');
    this.#rate = options.ratePerSecond;
    this.#burst = options.burst;
    this.#clock = options.clock;
    this.#maxKeys = options.maxKeys ?? 100_000;
  }

  /** Takes one token for `key`; false when the key is over its rate. */
  tryTake(key: string): boolean {
    if (this.#rate === 0) return true;
    const now = this.#clock.now().getTime();
    let bucket = this.#buckets.get(key);
    if (bucket) {
      this.#buckets.delete(key); // re-insert below: Map order is our LRU order
      bucket.tokens = Math.min(this.#burst, bucket.tokens + ((now - bucket.at) / 1000) * this.#rate);
      bucket.at = now;
    } else {
      bucket = { tokens: this.#burst, at: now };
      if (this.#buckets.size >= this.#maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!);
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}
