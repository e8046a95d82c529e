import { Metadata, Server, ServerCredentials, experimental, status, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import type { IssuanceService } from '../../ca/issuance-service.js';
import { AuthnError, AuthnUnavailableError, AuthzDeniedError, CsrError, RequestError } from '../../errors.js';
import type { IstioCertificateRequest__Output } from '../../generated/istio-ca/istio/v1/auth/IstioCertificateRequest.js';
import type { IstioCertificateResponse } from '../../generated/istio-ca/istio/v1/auth/IstioCertificateResponse.js';
import type { Logger } from '../../log.js';
import { bearerToken } from '../bearer.js';
import type { CaMetrics } from '../metrics.js';
import { errorLogFields, toPublicError } from '../status.js';
import { MutableCertificateProvider } from './certificate-provider.js';
import { loadIstioCaProto } from './protos.js';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import type { ListenerLimits } from '../../config/listener-limits.js';
import { capConnections, type ConnectionMetrics } from '../connection-limits.js';

export interface CaGrpcServerOptions {
  readonly issuance: IssuanceService;
  readonly logger: Logger;
  readonly metrics?: CaMetrics;
  /** Upper bound for one request, including authentication: a slow API server cannot wedge a call. */
  readonly requestTimeoutMs?: number;
  /** A connection without calls for this long is closed (GOAWAY). Default 60 s. */
  readonly idleTimeoutMs?: number;
  /** gRPC message size cap; a CSR plus metadata is a few KiB. */
  readonly maxMessageBytes?: number;
  /**
   * The cluster this CA authenticates for (Istio's CLUSTER_ID, default `Kubernetes`). A caller
   * whose `ClusterID` header names another cluster is refused, as istiod does: its token was
   * not issued by the cluster this CA asks.
   */
  readonly clusterId?: string;
}

/** Istio's default cluster ID (its CLUSTER_ID when unset). */
export const DEFAULT_CLUSTER_ID = 'Kubernetes';

/**
 * Istio's `IstioCertificateService/CreateCertificate`, so pilot-agent or ztunnel can use meshca as
 * their CA. The handler is thin: token from metadata, everything else in IssuanceService.
 */
export function createCaGrpcServer(options: CaGrpcServerOptions): Server {
  const maxMessageBytes = options.maxMessageBytes ?? 64 * 1024;
  const server = new Server({
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': 1024 * 1024,
    'grpc.keepalive_time_ms': 60_000,
    'grpc.max_connection_idle_ms': options.idleTimeoutMs ?? 60_000,
    // A connection lives at most 10 minutes (a call in flight gets 30 s more), so not even a
    // call that trickles its message in holds a connection for good.
    'grpc.max_connection_age_ms': 600_000,
    'grpc.max_connection_age_grace_ms': 30_000,
    // channelz keeps per-call bookkeeping for a debug service meshca does not serve.
    'grpc.enable_channelz': 0,
  });
  const log = options.logger.child({ component: 'grpc-ca' });
  const timeoutMs = options.requestTimeoutMs ?? 10_000;
  const { IstioCertificateService } = loadIstioCaProto().istio.v1.auth;

  server.addService(IstioCertificateService.service, {
    CreateCertificate(
      call: ServerUnaryCall<IstioCertificateRequest__Output, IstioCertificateResponse>,
      callback: sendUnaryData<IstioCertificateResponse>,
    ): void {
      const started = performance.now();
      const abort = new AbortController();
      // Only authentication waits on a backend; a slow API server becomes a retryable Unavailable.
      const timer = setTimeout(
        () => abort.abort(new AuthnUnavailableError(`authentication did not finish within ${timeoutMs} ms`, { rule: 'timeout' })),
        timeoutMs,
      );
      let answered = false;
      // grpc-js reports every closed stream as cancelled, answered or not: only a call still
      // being worked on is really abandoned (and only then is an error worth building).
      call.once('cancelled', () => {
        if (!answered) abort.abort(new RequestError('the client cancelled the call', { rule: 'client-gone' }));
      });
      const finish = (err: unknown, response?: IstioCertificateResponse, fields: Record<string, unknown> = {}): void => {
        answered = true;
        clearTimeout(timer);
        const latencyMs = Math.round((performance.now() - started) * 100) / 100;
        if (err === undefined) {
          options.metrics?.observe('grpc', started);
          log.info({ ...fields, result: 'issued', latencyMs }, 'certificate issued');
          callback(null, response);
          return;
        }
        const pub = toPublicError(err);
        options.metrics?.observe('grpc', started, pub.code);
        const entry = { ...fields, result: 'denied', code: pub.code, latencyMs, ...errorLogFields(err) };
        if (pub.code === 'ERR_INTERNAL') log.error(entry, 'certificate request failed');
        else log.warn(entry, 'certificate request refused');
        const metadata = new Metadata();
        metadata.set('meshca-error-code', pub.code);
        callback({ code: pub.grpcStatus, details: pub.message, metadata });
      };
      try {
        const claimed = call.metadata.get('clusterid').map(String);
        const clusterId = options.clusterId ?? DEFAULT_CLUSTER_ID;
        if (claimed.some((c) => c !== clusterId)) {
          throw new AuthnError(`the caller claims cluster ${JSON.stringify(claimed.join(','))}; this CA authenticates cluster ${JSON.stringify(clusterId)}`, { rule: 'cluster-id' });
        }
        // ztunnel asks for certificates of the pods on its node; meshca issues only the caller's
        // own identity, and says so rather than answering with an identity that was not asked for.
        if (call.request.metadata?.fields?.['ImpersonatedIdentity'] !== undefined) {
          throw new AuthzDeniedError('impersonated identities (ImpersonatedIdentity) are not issued: a caller gets its own identity only', { rule: 'impersonation' });
        }
        const token = bearerToken(call.metadata.get('authorization').map(String));
        const csr = call.request.csr;
        if (typeof csr !== 'string' || csr.length === 0) throw new CsrError('request has no CSR', { rule: 'missing' });
        const requested = Number(call.request.validity_duration);
        // Istio semantics: a non-positive validity means "the CA's default".
        const ttlSeconds = Number.isFinite(requested) && requested > 0 ? requested : undefined;
        options.issuance
          .issue({ token, csr, signal: abort.signal, ...(ttlSeconds === undefined ? {} : { ttlSeconds }) })
          .then(
            (issued) =>
              finish(undefined, { cert_chain: [...issued.certChainPem] }, {
                spiffeId: issued.spiffeId.toString(),
                namespace: issued.caller.namespace,
                serviceAccount: issued.caller.serviceAccount,
                serial: issued.serial,
                notAfter: issued.notAfter.toISOString(),
              }),
            (err: unknown) => finish(err),
          );
      } catch (err) {
        finish(err);
      }
    },
  });
  return server;
}

export interface ServingMaterial {
  readonly certChainPem: string;
  readonly keyPem: string;
  readonly rootsPem: string;
}

/** TLS server credentials whose certificate can be swapped while the server runs. */
export function createRotatingServerCredentials(initial: ServingMaterial): {
  credentials: ServerCredentials;
  update: (material: ServingMaterial) => void;
} {
  const provider = new MutableCertificateProvider();
  provider.update(initial);
  return {
    credentials: experimental.createCertificateProviderServerCredentials(provider, provider, false),
    update: (material) => provider.update(material),
  };
}

/** Binds and resolves with the actual port (useful with port 0). */
export function bindServer(server: Server, address: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port)));
  });
}

/**
 * Listens for gRPC on a socket meshca owns and hands each connection to grpc-js (its connection
 * injector), so the listener has what grpc-js's own bind lacks: a connection cap with a log
 * line and a metric, and a TLS handshake deadline (grpc-js leaves node's 120 s). Rejects with
 * node's own error (EADDRINUSE...) when the address cannot be bound.
 */
export async function listenGrpc(
  server: Server,
  credentials: ServerCredentials,
  address: { readonly host: string; readonly port: number },
  limits: ListenerLimits,
  options: { readonly logger: Logger; readonly metrics?: ConnectionMetrics },
): Promise<NetServer> {
  withHandshakeTimeout(credentials, limits.handshakeTimeoutMs);
  const injector = server.createConnectionInjector(credentials);
  const listener = createNetServer((socket) => injector.injectConnection(socket));
  capConnections(listener, 'grpc', limits, options);
  listener.once('close', () => injector.destroy());
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(address.port, address.host, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  return listener;
}

/**
 * grpc-js builds its TLS server from the credentials' constructor options; a handshake deadline
 * set there reaches node's `tls.Server`. Fails closed if grpc-js stops exposing them.
 */
function withHandshakeTimeout(credentials: ServerCredentials, ms: number): void {
  const internal = credentials as unknown as { _isSecure(): boolean; _getConstructorOptions?: () => Record<string, unknown> | null };
  if (!internal._isSecure()) return;
  const options = internal._getConstructorOptions?.();
  if (options === null || options === undefined || typeof options !== 'object') {
    throw new TypeError('this @grpc/grpc-js no longer exposes its TLS server options: cannot set a handshake timeout');
  }
  options['handshakeTimeout'] = ms;
}

export { status as grpcStatus };
