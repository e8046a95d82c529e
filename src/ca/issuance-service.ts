import type { AuthenticateOptions, Authenticator, CallerIdentity } from '../authn/authenticator.js';
import { systemClock, type Clock } from '../clock.js';
import { CaNotReadyError, RateLimitedError } from '../errors.js';
import type { SpiffeId } from '../spiffe/spiffe-id.js';
import type { JwtSvidIssuer, MintedJwtSvid } from './jwt-svid-issuer.js';
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

export interface JwtSvidRequest {
  readonly token: string;
  readonly audience: readonly string[];
  readonly ttlSeconds?: number;
  readonly signal?: AbortSignal;
}

/** What issuance needs from a CA: the in-process CertificateAuthority or a pool of workers. */
export type SvidSigner = Pick<CertificateAuthority, 'sign' | 'resolveTtlSeconds'>;

export interface IssuanceServiceOptions {
  readonly ca: SvidSigner;
  /** Enables JWT-SVIDs; without it, requests for them are refused as not configured. */
  readonly jwtIssuer?: JwtSvidIssuer;
  readonly clock?: Clock;
  readonly authenticator: Authenticator;
  readonly trustDomain: TrustDomain;
  readonly rateLimiter?: RateLimiter;
}

/**
 * The CA's one use case: authenticate the caller, derive its SPIFFE ID, sign its CSR. Both the
 * gRPC and the HTTP API call this; neither decides identity itself.
 */
export class IssuanceService {
  readonly #ca: SvidSigner;
  readonly #authenticator: Authenticator;
  readonly #rateLimiter: RateLimiter | undefined;
  readonly #jwtIssuer: JwtSvidIssuer | undefined;
  readonly #clock: Clock;
  readonly trustDomain: TrustDomain;

  constructor(options: IssuanceServiceOptions) {
    this.#ca = options.ca;
    this.#authenticator = options.authenticator;
    this.#rateLimiter = options.rateLimiter;
    this.#jwtIssuer = options.jwtIssuer;
    this.#clock = options.clock ?? systemClock;
    this.trustDomain = options.trustDomain;
  }

  /** The JWT-SVID signing key's public JWK, for the bundle; undefined when JWT-SVIDs are off. */
  get jwtAuthority(): Record<string, unknown> | undefined {
    return this.#jwtIssuer?.publicJwk() as Record<string, unknown> | undefined;
  }

  async issue(request: IssuanceRequest): Promise<IssuanceResult> {
    // Cheap checks first so a flood of junk costs no token verification.
    this.#ca.resolveTtlSeconds(request.ttlSeconds);
    const { caller, id } = await this.#authenticate(request.token, request.signal);
    const issued = await this.#ca.sign(request.csr, id, request.ttlSeconds === undefined ? {} : { ttlSeconds: request.ttlSeconds });
    return { ...issued, caller };
  }

  /** A short-lived JWT-SVID for the authenticated caller's own SPIFFE ID. */
  async mintJwtSvid(request: JwtSvidRequest): Promise<MintedJwtSvid & { readonly caller: CallerIdentity }> {
    if (!this.#jwtIssuer) throw new CaNotReadyError('this CA does not issue JWT-SVIDs', { rule: 'jwt-disabled' });
    const { caller, id } = await this.#authenticate(request.token, request.signal);
    const minted = await this.#jwtIssuer.mint(id, request.audience, {
      now: this.#clock.now(),
      ...(request.ttlSeconds === undefined ? {} : { ttlSeconds: request.ttlSeconds }),
    });
    return { ...minted, caller };
  }

  async #authenticate(token: string, signal: AbortSignal | undefined): Promise<{ caller: CallerIdentity; id: SpiffeId }> {
    const authOptions: AuthenticateOptions = signal ? { signal } : {};
    const caller = await this.#authenticator.authenticate(token, authOptions);
    const id = workloadIdFor(this.trustDomain, caller);
    if (this.#rateLimiter && !this.#rateLimiter.tryTake(id.toString())) {
      throw new RateLimitedError(`too many requests for ${id}; retry later`, { rule: 'per-identity' });
    }
    return { caller, id };
  }
}
