/**
 * Stable, coded errors for every identity failure. Transports map `code` to a wire status
 * (see transport/status.ts); nothing else should switch on messages.
 */
export type ErrorCode =
  | 'ERR_SPIFFE_ID_INVALID'
  | 'ERR_SVID_INVALID'
  | 'ERR_SVID_UNTRUSTED'
  | 'ERR_BUNDLE_INVALID'
  | 'ERR_CSR_INVALID'
  | 'ERR_IDENTITY_MISMATCH'
  | 'ERR_AUTHN_FAILED'
  | 'ERR_AUTHN_UNAVAILABLE'
  | 'ERR_AUTHZ_DENIED'
  | 'ERR_CA_NOT_READY'
  | 'ERR_CA_INVALID'
  | 'ERR_TTL_INVALID'
  | 'ERR_RATE_LIMITED'
  | 'ERR_REQUEST_INVALID'
  | 'ERR_FRAMING_INVALID'
  | 'ERR_HEADERS_TOO_LARGE'
  | 'ERR_TRANSFER_CODING_UNSUPPORTED'
  | 'ERR_EXPECTATION_UNSUPPORTED'
  | 'ERR_UPSTREAM_UNAVAILABLE'
  | 'ERR_UPSTREAM_IDENTITY'
  | 'ERR_CONFIG_INVALID';

export interface IdentityErrorOptions {
  readonly cause?: unknown;
  /** Short machine-readable name of the rule that failed, e.g. `path-dot-segment`. */
  readonly rule?: string;
}

export class IdentityError extends Error {
  readonly code: ErrorCode;
  readonly rule: string | undefined;

  constructor(code: ErrorCode, message: string, options: IdentityErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.rule = options.rule;
  }

  override get name(): string {
    return this.constructor.name;
  }
}

export class SpiffeIdError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_SPIFFE_ID_INVALID', message, options);
  }
}

export class SvidError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_SVID_INVALID', message, options);
  }
}

export class SvidUntrustedError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_SVID_UNTRUSTED', message, options);
  }
}

export class BundleError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_BUNDLE_INVALID', message, options);
  }
}

export class CsrError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_CSR_INVALID', message, options);
  }
}

/** The CSR (or a returned certificate) names an identity other than the authenticated one. */
export class IdentityMismatchError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_IDENTITY_MISMATCH', message, options);
  }
}

/** The caller could not be authenticated. The message is for logs; clients see a generic text. */
export class AuthnError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_AUTHN_FAILED', message, options);
  }
}

/** The authenticator's backend (API server, JWKS endpoint) failed: retryable, not a verdict. */
export class AuthnUnavailableError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_AUTHN_UNAVAILABLE', message, options);
  }
}

export class AuthzDeniedError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_AUTHZ_DENIED', message, options);
  }
}

export class CaNotReadyError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_CA_NOT_READY', message, options);
  }
}

/** CA key material that cannot be used: key/cert mismatch, expired, broken chain. */
export class CaInvalidError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_CA_INVALID', message, options);
  }
}

export class TtlError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_TTL_INVALID', message, options);
  }
}

export class RateLimitedError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_RATE_LIMITED', message, options);
  }
}

/** A request field that is malformed or out of range (other than CSR, TTL and identity). */
export class RequestError extends IdentityError {
  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_REQUEST_INVALID', message, options);
  }
}

/** Codes a proxy answers a request's framing with (see proxy/framing.ts). */
export type FramingErrorCode = 'ERR_FRAMING_INVALID' | 'ERR_HEADERS_TOO_LARGE' | 'ERR_TRANSFER_CODING_UNSUPPORTED' | 'ERR_EXPECTATION_UNSUPPORTED';

/** A request the proxy cannot frame as exactly one request; its connection is closed. */
export class FramingError extends IdentityError {
  declare readonly code: FramingErrorCode;

  constructor(code: FramingErrorCode, message: string, options?: IdentityErrorOptions) {
    super(code, message, options);
  }
}

/** The proxy's upstream could not be reached, or presented an identity other than the expected one. */
export class UpstreamError extends IdentityError {
  declare readonly code: 'ERR_UPSTREAM_UNAVAILABLE' | 'ERR_UPSTREAM_IDENTITY';

  constructor(code: 'ERR_UPSTREAM_UNAVAILABLE' | 'ERR_UPSTREAM_IDENTITY', message: string, options?: IdentityErrorOptions) {
    super(code, message, options);
  }
}

/** Configuration problems, all of them at once, so an operator fixes them in one pass. */
export class ConfigError extends IdentityError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[], options?: IdentityErrorOptions) {
    super('ERR_CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`, options);
    this.problems = Object.freeze([...problems]);
  }
}

export function isIdentityError(err: unknown): err is IdentityError {
  return err instanceof IdentityError;
}
