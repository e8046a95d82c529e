/**
 * The agent's `CaClient` over Istio's CA API: `istio.v1.auth.IstioCertificateService/
 * CreateCertificate` with the workload's token as `authorization: Bearer`, over TLS verified
 * against the mesh root (or plaintext when explicitly asked). gRPC statuses become the coded
 * errors the rotator understands; nothing above this file sees grpc-js.
 */
import { credentials, Metadata, status as GrpcStatus, type ChannelCredentials, type ChannelOptions, type ServiceError } from '@grpc/grpc-js';
import type { CaClient, CreateCertificateRequest, CreateCertificateResult } from '../../agent/ports.js';
import {
  AuthnError,
  CaNotReadyError,
  CsrError,
  IdentityMismatchError,
  RateLimitedError,
  type IdentityError,
} from '../../errors.js';
import type { IstioCertificateServiceClient } from '../../generated/istio-ca/istio/v1/auth/IstioCertificateService.js';
import { loadIstioCaProto } from './protos.js';

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
   * Calls in flight finish on the old channel.
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
  const channelOptions: ChannelOptions =
    serverName === undefined ? {} : { 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName };
  const Service = loadIstioCaProto().istio.v1.auth.IstioCertificateService;
  const connect = (creds: ChannelCredentials): IstioCertificateServiceClient => new Service(address, creds, channelOptions);
  const tlsCredentials = (pem: string): ChannelCredentials => {
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new TypeError('rootCertPem holds no PEM certificate');
    return credentials.createSsl(Buffer.from(pem));
  };

  let creds = options.insecure === true ? credentials.createInsecure() : tlsCredentials(options.rootCertPem!);
  let client = connect(creds);
  let closed = false;
  // Calls in flight per channel, so a channel replaced by updateRootCertPem is closed only
  // after its last call has settled.
  const inFlight = new Map<IstioCertificateServiceClient, number>();
  const retired = new Set<IstioCertificateServiceClient>();
  const settle = (channel: IstioCertificateServiceClient): void => {
    const left = (inFlight.get(channel) ?? 1) - 1;
    if (left > 0) {
      inFlight.set(channel, left);
      return;
    }
    inFlight.delete(channel);
    if (retired.delete(channel)) channel.close();
  };

  return {
    createCertificate(request: CreateCertificateRequest): Promise<CreateCertificateResult> {
      const { signal } = request;
      if (closed) return Promise.reject(new CaNotReadyError('the CA client is closed', { rule: 'closed' }));
      if (signal?.aborted) return Promise.reject(signal.reason);
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${request.token}`);
      const message = {
        csr: request.csrPem,
        // proto3 default 0 means "the CA's default lifetime", as in Istio.
        validity_duration: request.ttlSeconds ?? 0,
      };
      const channel = client;
      inFlight.set(channel, (inFlight.get(channel) ?? 0) + 1);
      return new Promise((resolve, reject) => {
        const onAbort = (): void => call.cancel();
        const call = channel.CreateCertificate(message, metadata, { deadline: new Date(Date.now() + timeoutMs) }, (err, response) => {
          signal?.removeEventListener('abort', onAbort);
          // A channel that could not reach the CA keeps grpc-js's reconnect backoff (up to 2 min),
          // and answers the next attempts from it with a stale error after the CA is back. The
          // rotator has its own backoff: give its next attempt a fresh channel.
          if (err?.code === GrpcStatus.UNAVAILABLE && channel === client && !closed) {
            client = connect(creds);
            retired.add(channel);
          }
          settle(channel);
          if (signal?.aborted) {
            reject(signal.reason);
            return;
          }
          if (err) {
            reject(caErrorFromGrpc(err, address));
            return;
          }
          resolve({ certChainPem: Object.freeze([...(response?.cert_chain ?? [])]) });
        });
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    },

    updateRootCertPem(rootCertPem: string): void {
      if (options.insecure === true) throw new TypeError('a plaintext CA client has no roots to update');
      creds = tlsCredentials(rootCertPem);
      const next = connect(creds);
      const previous = client;
      client = next;
      if (inFlight.has(previous)) retired.add(previous);
      else previous.close();
    },

    close(): void {
      closed = true;
      client.close();
      for (const channel of retired) channel.close();
      retired.clear();
    },
  };
}

/**
 * The CA's gRPC status as a coded error. Transient conditions are `ERR_CA_NOT_READY` (retry
 * with backoff); the CA's verdicts keep their meaning so logs say what to fix.
 */
export function caErrorFromGrpc(err: ServiceError, address: string): IdentityError {
  const details = err.details || err.message;
  const what = `CA at ${address}`;
  switch (err.code) {
    case GrpcStatus.UNAVAILABLE:
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
      return new CaNotReadyError(`${what} does not serve istio.v1.auth.IstioCertificateService (check the address)`, {
        rule: 'unimplemented',
        cause: err,
      });
    default:
      return new CaNotReadyError(`${what} failed: ${GrpcStatus[err.code] ?? err.code}: ${details}`, { rule: 'ca-error', cause: err });
  }
}
