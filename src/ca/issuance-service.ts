import type { AuthenticateOptions, Authenticator, CallerIdentity } from '../authn/authenticator.js';
import { RateLimitedError } from '../errors.js';
import { workloadIdFor } from '../policy/workload-id.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import type { CertificateAuthority, IssuedSvid } from './certificate-authority.js';
import type { RateLimiter } from './rate-limiter.js';

export interface IssuanceRequest {
  /** The caller's bearer token (a projected service-account token). */
  readonly token: string;
  readonly csr: string | Uint8Array;
  /** Requested lifetime; undefined means the CA default. */
  readonly ttlSeconds?: number;
  readonly signal?: AbortSignal;
}

export interface IssuanceResult extends IssuedSvid {
  readonly caller: CallerIdentity;
}

export interface IssuanceServiceOptions {
  readonly ca: CertificateAuthority;
  readonly authenticator: Authenticator;
  readonly trustDomain: TrustDomain;
  readonly rateLimiter?: RateLimiter;
}

/**
 * The CA's one use case: authenticate the caller, derive its SPIFFE ID, sign its CSR. Both the
 * gRPC and the HTTP API call this; neither decides identity itself.
 */
export class IssuanceService {
  readonly #ca: CertificateAuthority;
  readonly #authenticator: Authenticator;
  readonly #rateLimiter: RateLimiter | undefined;
  readonly trustDomain: TrustDomain;

  constructor(options: IssuanceServiceOptions) {
    this.#ca = options.ca;
    this.#authenticator = options.authenticator;
    this.#rateLimiter = options.rateLimiter;
    this.trustDomain = options.trustDomain;
  }

  get ca(): CertificateAuthority {
    return this.#ca;
  }

  async issue(request: IssuanceRequest): Promise<IssuanceResult> {
    // Cheap checks first so a flood of junk costs no token verification.
    this.#ca.resolveTtlSeconds(request.ttlSeconds);
    const authOptions: AuthenticateOptions = request.signal ? { signal: request.signal } : {};
    const caller = await this.#authenticator.authenticate(request.token, authOptions);
    const id = workloadIdFor(this.trustDomain, caller);
    if (this.#rateLimiter && !this.#rateLimiter.tryTake(id.toString())) {
      throw new RateLimitedError(`too many certificate requests for ${id}; retry later`, { rule: 'per-identity' });
    }
    const issued = await this.#ca.sign(request.csr, id, request.ttlSeconds === undefined ? {} : { ttlSeconds: request.ttlSeconds });
    return { ...issued, caller };
  }
}
