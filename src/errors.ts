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
  | 'ERR_CONFIG_INVALID'
  // HTTP framework-level refusals (Fastify's body parser, router) and the opaque internal error.
  | 'ERR_BAD_REQUEST'
  | 'ERR_MEDIA_TYPE_UNSUPPORTED'
  | 'ERR_REQUEST_TOO_LARGE'
  | 'ERR_NOT_FOUND'
  | 'ERR_INTERNAL';

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
  declare readonly code: 'ERR_SPIFFE_ID_INVALID';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_SPIFFE_ID_INVALID', message, options);
  }
}

export class SvidError extends IdentityError {
  declare readonly code: 'ERR_SVID_INVALID';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_SVID_INVALID', message, options);
  }
}

export class SvidUntrustedError extends IdentityError {
  declare readonly code: 'ERR_SVID_UNTRUSTED';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_SVID_UNTRUSTED', message, options);
  }
}

export class BundleError extends IdentityError {
  declare readonly code: 'ERR_BUNDLE_INVALID';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_BUNDLE_INVALID', message, options);
  }
}

export class CsrError extends IdentityError {
  declare readonly code: 'ERR_CSR_INVALID';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_CSR_INVALID', message, options);
  }
}

/** The CSR (or a returned certificate) names an identity other than the authenticated one. */
export class IdentityMismatchError extends IdentityError {
  declare readonly code: 'ERR_IDENTITY_MISMATCH';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_IDENTITY_MISMATCH', message, options);
  }
}

/** The caller could not be authenticated. The message is for logs; clients see a generic text. */
export class AuthnError extends IdentityError {
  declare readonly code: 'ERR_AUTHN_FAILED';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_AUTHN_FAILED', message, options);
  }
}

/** The authenticator's backend (API server, JWKS endpoint) failed: retryable, not a verdict. */
export class AuthnUnavailableError extends IdentityError {
  declare readonly code: 'ERR_AUTHN_UNAVAILABLE';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_AUTHN_UNAVAILABLE', message, options);
  }
}

export class AuthzDeniedError extends IdentityError {
  declare readonly code: 'ERR_AUTHZ_DENIED';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_AUTHZ_DENIED', message, options);
  }
}

export class CaNotReadyError extends IdentityError {
  declare readonly code: 'ERR_CA_NOT_READY';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_CA_NOT_READY', message, options);
  }
}

/** CA key material that cannot be used: key/cert mismatch, expired, broken chain. */
export class CaInvalidError extends IdentityError {
  declare readonly code: 'ERR_CA_INVALID';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_CA_INVALID', message, options);
  }
}

export class TtlError extends IdentityError {
  declare readonly code: 'ERR_TTL_INVALID';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_TTL_INVALID', message, options);
  }
}

export class RateLimitedError extends IdentityError {
  declare readonly code: 'ERR_RATE_LIMITED';

  constructor(message: string, options?: IdentityErrorOptions) {
    super('ERR_RATE_LIMITED', message, options);
  }
}

/** A request field that is malformed or out of range (other than CSR, TTL and identity). */
export class RequestError extends IdentityError {
  declare readonly code: 'ERR_REQUEST_INVALID';

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
  declare readonly code: 'ERR_CONFIG_INVALID';
  readonly problems: readonly string[];

  constructor(problems: readonly string[], options?: IdentityErrorOptions) {
    super('ERR_CONFIG_INVALID', `invalid configuration:\n  - ${problems.join('\n  - ')}`, options);
    this.problems = Object.freeze([...problems]);
  }
}

/** A framework-level HTTP refusal: no body parser, route or size limit accepted the request. */
export class HttpRequestError extends IdentityError {
  declare readonly code: 'ERR_BAD_REQUEST' | 'ERR_MEDIA_TYPE_UNSUPPORTED' | 'ERR_REQUEST_TOO_LARGE' | 'ERR_NOT_FOUND';

  constructor(code: HttpRequestError['code'], message: string, options?: IdentityErrorOptions) {
    super(code, message, options);
  }
}

/** The one error a server sends for a fault of its own; the cause stays in its log. */
export class InternalError extends IdentityError {
  declare readonly code: 'ERR_INTERNAL';

  constructor(message = 'internal error', options?: IdentityErrorOptions) {
    super('ERR_INTERNAL', message, options);
  }
}

type ErrorFactory = (message: string, options: IdentityErrorOptions) => IdentityError;

// A record, not a list: the compiler refuses it unless it names every code of the union.
const ERROR_CLASSES: Readonly<Record<ErrorCode, ErrorFactory>> = {
  ERR_SPIFFE_ID_INVALID: (m, o) => new SpiffeIdError(m, o),
  ERR_SVID_INVALID: (m, o) => new SvidError(m, o),
  ERR_SVID_UNTRUSTED: (m, o) => new SvidUntrustedError(m, o),
  ERR_BUNDLE_INVALID: (m, o) => new BundleError(m, o),
  ERR_CSR_INVALID: (m, o) => new CsrError(m, o),
  ERR_IDENTITY_MISMATCH: (m, o) => new IdentityMismatchError(m, o),
  ERR_AUTHN_FAILED: (m, o) => new AuthnError(m, o),
  ERR_AUTHN_UNAVAILABLE: (m, o) => new AuthnUnavailableError(m, o),
  ERR_AUTHZ_DENIED: (m, o) => new AuthzDeniedError(m, o),
  ERR_CA_NOT_READY: (m, o) => new CaNotReadyError(m, o),
  ERR_CA_INVALID: (m, o) => new CaInvalidError(m, o),
  ERR_TTL_INVALID: (m, o) => new TtlError(m, o),
  ERR_RATE_LIMITED: (m, o) => new RateLimitedError(m, o),
  ERR_REQUEST_INVALID: (m, o) => new RequestError(m, o),
  ERR_FRAMING_INVALID: (m, o) => new FramingError('ERR_FRAMING_INVALID', m, o),
  ERR_HEADERS_TOO_LARGE: (m, o) => new FramingError('ERR_HEADERS_TOO_LARGE', m, o),
  ERR_TRANSFER_CODING_UNSUPPORTED: (m, o) => new FramingError('ERR_TRANSFER_CODING_UNSUPPORTED', m, o),
  ERR_EXPECTATION_UNSUPPORTED: (m, o) => new FramingError('ERR_EXPECTATION_UNSUPPORTED', m, o),
  ERR_UPSTREAM_UNAVAILABLE: (m, o) => new UpstreamError('ERR_UPSTREAM_UNAVAILABLE', m, o),
  ERR_UPSTREAM_IDENTITY: (m, o) => new UpstreamError('ERR_UPSTREAM_IDENTITY', m, o),
  ERR_CONFIG_INVALID: (m, o) => new ConfigError([m], o),
  ERR_BAD_REQUEST: (m, o) => new HttpRequestError('ERR_BAD_REQUEST', m, o),
  ERR_MEDIA_TYPE_UNSUPPORTED: (m, o) => new HttpRequestError('ERR_MEDIA_TYPE_UNSUPPORTED', m, o),
  ERR_REQUEST_TOO_LARGE: (m, o) => new HttpRequestError('ERR_REQUEST_TOO_LARGE', m, o),
  ERR_NOT_FOUND: (m, o) => new HttpRequestError('ERR_NOT_FOUND', m, o),
  ERR_INTERNAL: (m, o) => new InternalError(m, o),
};
const ERROR_CODES: ReadonlySet<string> = new Set(Object.keys(ERROR_CLASSES));

/**
 * The error of a code that crossed a boundary (a worker's reply, a server's `meshca-error-code`),
 * rebuilt as its subclass so the receiver handles it exactly as one raised in process.
 */
export function errorFromCode(code: ErrorCode, message: string, options: IdentityErrorOptions = {}): IdentityError {
  return ERROR_CLASSES[code](message, options);
}


/** Whether a string read off the wire (e.g. the `meshca-error-code` trailer) is one of ours. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && ERROR_CODES.has(value);
}

export function isIdentityError(err: unknown): err is IdentityError {
  return err instanceof IdentityError;
}
