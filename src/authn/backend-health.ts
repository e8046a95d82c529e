/**
 * Whether the authentication backend (the API server's TokenReview) can give verdicts, for the
 * CA's readiness: a CA that can only answer "authentication backend unavailable" should not get
 * traffic, and `/readyz` should say why. Every real review updates it; `probe()` sends a review
 * of a token that cannot be valid, which a reachable API server answers "not authenticated".
 */
import { AuthnError, AuthnUnavailableError } from '../errors.js';
import type { AuthenticateOptions, Authenticator, CallerIdentity } from './authenticator.js';

/**
 * Shaped like a JWT (so it passes the local shape check and reaches the API server) but signed
 * by nobody: the answer can only be "not authenticated" or a failure to give a verdict.
 */
const PROBE_TOKEN = 'eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtZXNoY2EtcmVhZGluZXNzLXByb2JlIn0.bm90IGEgc2lnbmF0dXJl';

export class AuthBackendHealth implements Authenticator {
  readonly #inner: Authenticator;
  #problem: string | undefined;

  constructor(inner: Authenticator, options: { readonly initialProblem?: string } = {}) {
    this.#inner = inner;
    this.#problem = options.initialProblem;
  }

  /** Why the backend cannot give verdicts, as of the last review; undefined when it can. */
  get problem(): string | undefined {
    return this.#problem;
  }

  async authenticate(token: string, options?: AuthenticateOptions): Promise<CallerIdentity> {
    try {
      const identity = await this.#inner.authenticate(token, options);
      this.#problem = undefined;
      return identity;
    } catch (err) {
      if (err instanceof AuthnUnavailableError) this.#problem = `authentication backend unavailable: ${err.message}`;
      else if (err instanceof AuthnError) this.#problem = undefined;
      throw err;
    }
  }

  /** Sends one review of a token that cannot be valid; resolves with the resulting problem. */
  async probe(): Promise<string | undefined> {
    await this.authenticate(PROBE_TOKEN).catch(() => undefined);
    return this.#problem;
  }
}
