import { createPrivateKey } from 'node:crypto';
import { credentials, Metadata, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { BundleError, CaNotReadyError, ConfigError } from '../../errors.js';
import type { X509SVIDResponse__Output } from '../../generated/workload/X509SVIDResponse.js';
import type { Logger } from '../../log.js';
import { silentLogger } from '../../log.js';
import { decodeConcatenatedDer } from '../../spiffe/pem.js';
import { parseTrustDomain } from '../../spiffe/trust-domain.js';
import { X509Bundle, X509BundleSet } from '../../spiffe/x509-bundle.js';
import { parseX509Svid } from '../../spiffe/x509-svid.js';
import { createStaticX509Source, type StaticX509Source, type X509Source } from '../../tls/x509-source.js';
import { loadWorkloadProto } from './protos.js';

export interface WorkloadApiSourceOptions {
  /**
   * `unix:///path` or a filesystem path. Default: the `SPIFFE_ENDPOINT_SOCKET` environment
   * variable, as go-spiffe and the SPIFFE Workload Endpoint spec have it.
   */
  readonly socket?: string;
  readonly logger?: Logger;
  /** How long to wait for the first SVID. */
  readonly timeoutMs?: number;
}

const bundleFromDer = (tdId: string, der: Uint8Array): X509Bundle => {
  const fail = (message: string): Error => new BundleError(`bundle for ${tdId}: ${message}`, { rule: 'der' });
  return new X509Bundle(parseTrustDomain(tdId), decodeConcatenatedDer(der, fail));
};

/**
 * An X509Source fed by the SPIFFE Workload API (any conforming agent: meshca's, SPIRE's): it
 * follows the FetchX509SVID stream and reconnects with backoff when the stream breaks.
 */
export async function createWorkloadApiX509Source(options: WorkloadApiSourceOptions): Promise<X509Source> {
  const logger = (options.logger ?? silentLogger).child({ component: 'workload-api-client' });
  const socket = options.socket ?? process.env['SPIFFE_ENDPOINT_SOCKET'];
  if (socket === undefined || socket.trim() === '') {
    throw new ConfigError(['no Workload API socket: pass `socket` or set SPIFFE_ENDPOINT_SOCKET (e.g. unix:///run/spire/sockets/agent.sock)']);
  }
  const target = socket.startsWith('unix:') ? socket : `unix://${socket}`;
  const { SpiffeWorkloadAPI } = loadWorkloadProto();
  const client = new SpiffeWorkloadAPI(target, credentials.createInsecure());
  let source: StaticX509Source | undefined;
  let stream: ClientReadableStream<X509SVIDResponse__Output> | undefined;
  let closed = false;
  let attempt = 0;
  let retry: NodeJS.Timeout | undefined;

  const apply = (response: X509SVIDResponse__Output): void => {
    const first = response.svids[0];
    if (!first) throw new CaNotReadyError('the Workload API sent no SVID', { rule: 'no-svid' });
    const key = createPrivateKey({ key: Buffer.from(first.x509_svid_key), format: 'der', type: 'pkcs8' });
    const svid = parseX509Svid(new Uint8Array(first.x509_svid), key);
    const bundles = new X509BundleSet([bundleFromDer(svid.id.trustDomain.idString(), first.bundle)]);
    for (const [td, der] of Object.entries(response.federated_bundles ?? {})) {
      if (parseTrustDomain(td).equals(svid.id.trustDomain)) continue;
      bundles.set(bundleFromDer(td, der));
    }
    if (source) source.set({ svid, bundles });
    else source = createStaticX509Source({ svid, bundles });
  };

  return new Promise<X509Source>((resolve, reject) => {
    const timer = setTimeout(() => {
      if (!source) {
        closed = true;
        // A reconnect still pending would call into the closed channel from a timer: a crash
        // in the caller's process long after it handled this rejection.
        if (retry) clearTimeout(retry);
        stream?.cancel();
        client.close();
        reject(new CaNotReadyError(`no SVID from the Workload API at ${target} within ${options.timeoutMs ?? 15_000} ms`, { rule: 'timeout' }));
      }
    }, options.timeoutMs ?? 15_000);

    const connect = (): void => {
      if (closed) return;
      const metadata = new Metadata();
      metadata.set('workload.spiffe.io', 'true');
      stream = client.FetchX509SVID({}, metadata);
      stream.on('data', (response: X509SVIDResponse__Output) => {
        try {
          const hadSource = source !== undefined;
          apply(response);
          attempt = 0;
          if (!hadSource) {
            clearTimeout(timer);
            resolve(wrap(source!));
          }
        } catch (err) {
          logger.error({ err }, 'ignoring an unusable Workload API response');
        }
      });
      stream.on('error', (err: ServiceError) => {
        if (closed) return;
        const delay = Math.min(30_000, 500 * 2 ** attempt++);
        logger.warn({ code: err.code, details: err.details, retryInMs: delay }, 'Workload API stream broke; reconnecting');
        retry = setTimeout(connect, delay);
      });
    };
    connect();
  });

  function wrap(inner: StaticX509Source): X509Source {
    const close = inner.close.bind(inner);
    return Object.assign(inner, {
      async close(): Promise<void> {
        closed = true;
        if (retry) clearTimeout(retry);
        stream?.cancel();
        client.close();
        await close();
      },
    });
  }
}
