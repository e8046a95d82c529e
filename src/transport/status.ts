import type { ErrorCode, IdentityError } from '../errors.js';
import { errorFromCode, isErrorCode, isIdentityError } from '../errors.js';

/**
 * gRPC status codes (grpc/doc/statuscodes.md), as numbers: they are part of the wire protocol,
 * and spelling them here keeps the HTTP-only processes (the sidecar) from loading grpc-js.
 * They equal `@grpc/grpc-js`'s `status` enum member for member.
 */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatus = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/**
 * The only place error codes become wire statuses. Anything that is not an IdentityError is a
 * bug: it becomes an opaque 500 / INTERNAL and its cause is logged, never sent.
 */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  ERR_SPIFFE_ID_INVALID: 400,
  ERR_SVID_INVALID: 400,
  ERR_SVID_UNTRUSTED: 401,
  ERR_BUNDLE_INVALID: 400,
  ERR_CSR_INVALID: 400,
  ERR_IDENTITY_MISMATCH: 403,
  ERR_AUTHN_FAILED: 401,
  ERR_AUTHN_UNAVAILABLE: 503,
  ERR_AUTHZ_DENIED: 403,
  ERR_CA_NOT_READY: 503,
  ERR_CA_INVALID: 500,
  ERR_TTL_INVALID: 400,
  ERR_RATE_LIMITED: 429,
  ERR_REQUEST_INVALID: 400,
  ERR_FRAMING_INVALID: 400,
  ERR_HEADERS_TOO_LARGE: 431,
  ERR_TRANSFER_CODING_UNSUPPORTED: 501,
  ERR_EXPECTATION_UNSUPPORTED: 417,
  ERR_UPSTREAM_UNAVAILABLE: 502,
  ERR_UPSTREAM_IDENTITY: 502,
  ERR_CONFIG_INVALID: 500,
  ERR_BAD_REQUEST: 400,
  ERR_MEDIA_TYPE_UNSUPPORTED: 415,
  ERR_REQUEST_TOO_LARGE: 413,
  ERR_NOT_FOUND: 404,
  ERR_INTERNAL: 500,
};

export const GRPC_STATUS: Readonly<Record<ErrorCode, GrpcStatus>> = {
  ERR_SPIFFE_ID_INVALID: GrpcStatus.INVALID_ARGUMENT,
  ERR_SVID_INVALID: GrpcStatus.INVALID_ARGUMENT,
  ERR_SVID_UNTRUSTED: GrpcStatus.UNAUTHENTICATED,
  ERR_BUNDLE_INVALID: GrpcStatus.INVALID_ARGUMENT,
  ERR_CSR_INVALID: GrpcStatus.INVALID_ARGUMENT,
  ERR_IDENTITY_MISMATCH: GrpcStatus.PERMISSION_DENIED,
  ERR_AUTHN_FAILED: GrpcStatus.UNAUTHENTICATED,
  ERR_AUTHN_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  ERR_AUTHZ_DENIED: GrpcStatus.PERMISSION_DENIED,
  ERR_CA_NOT_READY: GrpcStatus.UNAVAILABLE,
  ERR_CA_INVALID: GrpcStatus.INTERNAL,
  ERR_TTL_INVALID: GrpcStatus.INVALID_ARGUMENT,
  ERR_RATE_LIMITED: GrpcStatus.RESOURCE_EXHAUSTED,
  ERR_REQUEST_INVALID: GrpcStatus.INVALID_ARGUMENT,
  ERR_FRAMING_INVALID: GrpcStatus.INVALID_ARGUMENT,
  ERR_HEADERS_TOO_LARGE: GrpcStatus.RESOURCE_EXHAUSTED,
  ERR_TRANSFER_CODING_UNSUPPORTED: GrpcStatus.UNIMPLEMENTED,
  ERR_EXPECTATION_UNSUPPORTED: GrpcStatus.FAILED_PRECONDITION,
  ERR_UPSTREAM_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  ERR_UPSTREAM_IDENTITY: GrpcStatus.UNAVAILABLE,
  ERR_CONFIG_INVALID: GrpcStatus.INTERNAL,
  ERR_BAD_REQUEST: GrpcStatus.INVALID_ARGUMENT,
  ERR_MEDIA_TYPE_UNSUPPORTED: GrpcStatus.INVALID_ARGUMENT,
  ERR_REQUEST_TOO_LARGE: GrpcStatus.RESOURCE_EXHAUSTED,
  ERR_NOT_FOUND: GrpcStatus.NOT_FOUND,
  ERR_INTERNAL: GrpcStatus.INTERNAL,
};

/** What a client is told. Authentication failures reveal nothing about why. */
export interface PublicError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly httpStatus: number;
  readonly grpcStatus: GrpcStatus;
}

export function toPublicError(err: unknown): PublicError {
  if (!isIdentityError(err)) {
    return { code: 'ERR_INTERNAL', message: 'internal error', httpStatus: HTTP_STATUS.ERR_INTERNAL, grpcStatus: GRPC_STATUS.ERR_INTERNAL };
  }
  const internal = err.code === 'ERR_CA_INVALID' || err.code === 'ERR_CONFIG_INVALID' || err.code === 'ERR_INTERNAL';
  const message =
    err.code === 'ERR_AUTHN_FAILED'
      ? 'authentication failed'
      : err.code === 'ERR_AUTHN_UNAVAILABLE'
        ? 'authentication backend unavailable; retry'
        : internal
          ? 'internal error'
          : err.message;
  const code = internal ? 'ERR_INTERNAL' : err.code;
  return { code, message, httpStatus: HTTP_STATUS[code], grpcStatus: GRPC_STATUS[code] };
}

/**
 * What goes into the log line for a failure: an expected refusal is one short record (code,
 * rule, message); only unexpected errors carry their stack.
 */
export function errorLogFields(err: unknown): Record<string, unknown> {
  if (isIdentityError(err)) return { errCode: err.code, errRule: err.rule, errMessage: err.message };
  return { err };
}

/** Codes a client treats as "the server could not answer now": retried, never a verdict on the request. */
const SERVER_FAULTS: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['ERR_INTERNAL', 'ERR_CA_NOT_READY', 'ERR_CA_INVALID', 'ERR_CONFIG_INVALID']);

/**
 * A refusal from a meshca server, as the client raises it. The server's `meshca-error-code`
 * (gRPC trailer, or `error.code` of an HTTP body) names the verdict exactly: a TTL refusal
 * stays `ERR_TTL_INVALID`, not "some INVALID_ARGUMENT". `derived` is the error read from the
 * status alone, for peers that send no code (Istio's CA); it also supplies the message and rule.
 */
export function errorFromWire(sentCode: unknown, derived: IdentityError): IdentityError {
  if (!isErrorCode(sentCode) || sentCode === derived.code || SERVER_FAULTS.has(sentCode)) return derived;
  return errorFromCode(sentCode, derived.message, { rule: derived.rule, cause: derived.cause });
}
