import {
  AuthnError,
  AuthnUnavailableError,
  AuthzDeniedError,
  BundleError,
  CaInvalidError,
  CaNotReadyError,
  ConfigError,
  CsrError,
  FramingError,
  IdentityError,
  IdentityMismatchError,
  RateLimitedError,
  RequestError,
  SpiffeIdError,
  SvidError,
  SvidUntrustedError,
  TtlError,
  UpstreamError,
  type ErrorCode,
} from '../errors.js';

/** Messages between the signing pool and its workers (structured-clone safe). */
export interface SignJob {
  readonly id: number;
  readonly csr: string | Uint8Array;
  readonly identity: string;
  readonly ttlSeconds: number | undefined;
  /** The main thread's clock, so an injected clock governs validity in workers too. */
  readonly nowMs: number;
}

export interface SignSuccess {
  readonly id: number;
  readonly ok: true;
  readonly certificate: Uint8Array;
  readonly certChainPem: readonly string[];
  readonly serial: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

export interface SignFailure {
  readonly id: number;
  readonly ok: false;
  readonly code: ErrorCode | undefined;
  readonly rule: string | undefined;
  readonly message: string;
}

export type SignReply = SignSuccess | SignFailure;

const ERROR_CLASSES: Record<ErrorCode, (message: string, rule: string | undefined) => IdentityError> = {
  ERR_SPIFFE_ID_INVALID: (m, rule) => new SpiffeIdError(m, { rule }),
  ERR_SVID_INVALID: (m, rule) => new SvidError(m, { rule }),
  ERR_SVID_UNTRUSTED: (m, rule) => new SvidUntrustedError(m, { rule }),
  ERR_BUNDLE_INVALID: (m, rule) => new BundleError(m, { rule }),
  ERR_CSR_INVALID: (m, rule) => new CsrError(m, { rule }),
  ERR_IDENTITY_MISMATCH: (m, rule) => new IdentityMismatchError(m, { rule }),
  ERR_AUTHN_FAILED: (m, rule) => new AuthnError(m, { rule }),
  ERR_AUTHN_UNAVAILABLE: (m, rule) => new AuthnUnavailableError(m, { rule }),
  ERR_AUTHZ_DENIED: (m, rule) => new AuthzDeniedError(m, { rule }),
  ERR_CA_NOT_READY: (m, rule) => new CaNotReadyError(m, { rule }),
  ERR_CA_INVALID: (m, rule) => new CaInvalidError(m, { rule }),
  ERR_TTL_INVALID: (m, rule) => new TtlError(m, { rule }),
  ERR_RATE_LIMITED: (m, rule) => new RateLimitedError(m, { rule }),
  ERR_REQUEST_INVALID: (m, rule) => new RequestError(m, { rule }),
  ERR_FRAMING_INVALID: (m, rule) => new FramingError('ERR_FRAMING_INVALID', m, { rule }),
  ERR_HEADERS_TOO_LARGE: (m, rule) => new FramingError('ERR_HEADERS_TOO_LARGE', m, { rule }),
  ERR_TRANSFER_CODING_UNSUPPORTED: (m, rule) => new FramingError('ERR_TRANSFER_CODING_UNSUPPORTED', m, { rule }),
  ERR_EXPECTATION_UNSUPPORTED: (m, rule) => new FramingError('ERR_EXPECTATION_UNSUPPORTED', m, { rule }),
  ERR_UPSTREAM_UNAVAILABLE: (m, rule) => new UpstreamError('ERR_UPSTREAM_UNAVAILABLE', m, { rule }),
  ERR_UPSTREAM_IDENTITY: (m, rule) => new UpstreamError('ERR_UPSTREAM_IDENTITY', m, { rule }),
  ERR_CONFIG_INVALID: (m) => new ConfigError([m]),
};

/** Rebuilds the coded error a worker reported, so callers see the same error as in-process. */
export function reviveError(failure: SignFailure): Error {
  if (failure.code === undefined) return new Error(failure.message);
  return ERROR_CLASSES[failure.code](failure.message, failure.rule);
}
