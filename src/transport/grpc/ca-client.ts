/**
 * The agent's `CaClient` over Istio's CA API: `istio.v1.auth.IstioCertificateService/
 * CreateCertificate` with the workload's token as `authorization: Bearer`, over TLS verified
 * against the mesh root (or plaintext when explicitly asked). It speaks gRPC over `node:http2`
 * itself (unary-channel.ts, protobuf-wire.ts): the agent and the sidecar load no grpc-js for it.
 * gRPC statuses become the coded errors the rotator understands.
 */
import type { CaClient, CreateCertificateRequest, CreateCertificateResult } from '../../agent/ports.js';
import {
  AuthnError,
  CaNotReadyError,
  CsrError,
  IdentityMismatchError,
  RateLimitedError,
  type IdentityError,
} from '../../errors.js';
import { errorFromWire, GrpcStatus } from '../status.js';
import { decodeIstioCertificateResponse, encodeIstioCertificateRequest, ProtobufDecodeError } from './protobuf-wire.js';
import { UnaryChannel, type ConnectionFailure, type UnaryResult } from './unary-channel.js';

const CREATE_CERTIFICATE = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

export interface GrpcCaClientOptions {
  /** gRPC target, `host:port` (e.g. `istiod.istio-system.svc:15012`). */
  readonly address: string;
  /** PEM roots that the CA's serving certificate must chain to (the mesh root-cert.pem). */
  readonly rootCertPem?: string;
  /** Plaintext. Only for local development: the token would cross the network in the clear. */
  readonly insecure?: boolean;
  /** Name to verify in the CA's certificate when it differs from the address host. */
  readonly serverName?: string;
  /** Deadline of each call. Default 10 s. */
  readonly timeoutMs?: number;
}

export interface GrpcCaClient extends CaClient {
  /**
   * Trusts new roots for the CA's serving certificate from now on (the mesh root rotated).
   * Calls in flight finish on the old connection.
   */
  updateRootCertPem(rootCertPem: string): void;
  close(): void;
}

export const DEFAULT_CA_TIMEOUT_MS = 10_000;

export function createGrpcCaClient(options: GrpcCaClientOptions): GrpcCaClient {
  const { address, serverName } = options;
  if (typeof address !== 'string' || address.trim().length === 0) throw new TypeError('address is required (host:port)');
  if ((options.insecure === true) === (options.rootCertPem !== undefined)) {
    throw new TypeError('give exactly one of rootCertPem (TLS) or insecure: true (plaintext)');
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_CA_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new TypeError(`timeoutMs must be positive, got ${timeoutMs}`);
  const checkRoots = (pem: string): string => {
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new TypeError('rootCertPem holds no PEM certificate');
    return pem;
  };
  const channel = new UnaryChannel({
    address,
    ...(options.insecure === true ? {} : { rootCertPem: checkRoots(options.rootCertPem!) }),
    ...(serverName === undefined ? {} : { serverName }),
  });
  let closed = false;

  return {
    async createCertificate(request: CreateCertificateRequest): Promise<CreateCertificateResult> {
      const { signal } = request;
      if (closed) throw new CaNotReadyError('the CA client is closed', { rule: 'closed' });
      if (signal?.aborted) throw signal.reason;
      const result = await channel.call({
        path: CREATE_CERTIFICATE,
        // proto3 default 0 means "the CA's default lifetime", as in Istio.
        message: encodeIstioCertificateRequest({ csr: request.csrPem, validitySeconds: request.ttlSeconds ?? 0 }),
        metadata: { authorization: `Bearer ${request.token}` },
        timeoutMs,
        ...(signal === undefined ? {} : { signal }),
      });
      if (signal?.aborted) throw signal.reason;
      if (result.status !== GrpcStatus.OK) throw caErrorFromGrpc(result, { address, serverName });
      try {
        return { certChainPem: Object.freeze(decodeIstioCertificateResponse(result.message).certChain) };
      } catch (err) {
        if (!(err instanceof ProtobufDecodeError)) throw err;
        throw new CaNotReadyError(`CA at ${address} sent a malformed IstioCertificateResponse: ${err.message}`, { rule: 'ca-error', cause: err });
      }
    },

    updateRootCertPem(rootCertPem: string): void {
      if (options.insecure === true) throw new TypeError('a plaintext CA client has no roots to update');
      channel.updateRootCertPem(checkRoots(rootCertPem));
    },

    close(): void {
      closed = true;
      channel.close();
    },
  };
}

/**
 * The CA's gRPC status as a coded error. Transient conditions are `ERR_CA_NOT_READY` (retry
 * with backoff); the CA's verdicts keep their meaning so logs say what to fix.
 */
export function caErrorFromGrpc(
  result: Exclude<UnaryResult, { status: typeof GrpcStatus.OK }>,
  target: { readonly address: string; readonly serverName?: string | undefined; readonly service?: string },
): IdentityError {
  return errorFromWire(result.errorCode, errorFromStatus(result, target));
}

function errorFromStatus(
  result: Exclude<UnaryResult, { status: typeof GrpcStatus.OK }>,
  target: { readonly address: string; readonly serverName?: string | undefined; readonly service?: string },
): IdentityError {
  const { details } = result;
  const what = `CA at ${target.address}`;
  const err = new Error(`${GRPC_STATUS_NAME[result.status] ?? result.status}: ${details}`);
  switch (result.status) {
    case GrpcStatus.UNAVAILABLE:
      if (result.cause?.code === 'ERR_TLS_CERT_ALTNAME_INVALID') return nameMismatch(what, target, result.cause);
      return new CaNotReadyError(`${what} is unavailable: ${details}`, { rule: 'unavailable', cause: err });
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new CaNotReadyError(`${what} did not answer before the deadline`, { rule: 'deadline-exceeded', cause: err });
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return new RateLimitedError(`${what} is rate limiting this workload: ${details}`, { rule: 'ca-rate-limited', cause: err });
    case GrpcStatus.UNAUTHENTICATED:
      return new AuthnError(`${what} did not accept the service-account token: ${details}`, { rule: 'ca-rejected-token', cause: err });
    case GrpcStatus.PERMISSION_DENIED:
      return new IdentityMismatchError(`${what} refused the identity requested: ${details}`, { rule: 'ca-denied', cause: err });
    case GrpcStatus.INVALID_ARGUMENT:
      return new CsrError(`${what} rejected the certificate request: ${details}`, { rule: 'ca-rejected-request', cause: err });
    case GrpcStatus.UNIMPLEMENTED:
      return new CaNotReadyError(`${what} does not serve ${target.service ?? 'istio.v1.auth.IstioCertificateService (check the address)'}`, {
        rule: 'unimplemented',
        cause: err,
      });
    default:
      return new CaNotReadyError(`${what} failed: ${err.message}`, { rule: 'ca-error', cause: err });
  }
}

const GRPC_STATUS_NAME: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(GrpcStatus).map(([name, code]) => [code, name]));

/**
 * The CA's certificate does not name the host dialled: say which names it has and the flag
 * that picks one, since retrying cannot fix it.
 */
function nameMismatch(what: string, target: { readonly address: string; readonly serverName?: string | undefined }, cause: ConnectionFailure): IdentityError {
  const names = cause.peerCertificate?.subjectaltname;
  const host = target.serverName ?? target.address.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  return new CaNotReadyError(
    `${what}: its serving certificate is not valid for ${JSON.stringify(host)}` +
      `${names ? ` (it names ${names})` : ''}; dial one of its names, or set --ca-server-name to one of them`,
    { rule: 'server-name-mismatch', cause: new Error(cause.message) },
  );
}
