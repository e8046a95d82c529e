/**
 * mTLS servers for SPIFFE peers. Node verifies the client's chain against the union of all
 * bundle authorities during the handshake (`requestCert` + `rejectUnauthorized`, which also
 * makes a TLS 1.3 client without a certificate get the `certificate required` alert). Before any
 * listener sees the connection, `enableMtls` re-verifies the chain against the bundle of the
 * peer's own trust domain, runs the authorizer, and caches the identity on the socket; a
 * refused connection is destroyed without a `secureConnection` event, so not a byte of it is
 * read as a request. Rotation swaps the secure context once per source `update`.
 */
import type { X509Certificate } from 'node:crypto';
import type { RequestListener } from 'node:http';
import * as https from 'node:https';
import * as tls from 'node:tls';
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import type { Authorizer } from '../policy/authorizer.js';
import { rememberPeer } from './peer-identity.js';
import type { MtlsVersion } from './secure-material.js';
import {
  authorityFingerprints,
  checkSource,
  checkVersion,
  currentPem,
  NO_RESUMPTION,
  peerChainOf,
  toError,
  verifyPeer,
} from './secure-material.js';
import type { X509Source } from './x509-source.js';

export interface MtlsServerOptions {
  /** Runs after chain verification, once per connection. Default: any peer with a verified SVID. */
  readonly authorizer?: Authorizer;
  /** Default `TLSv1.2`; TLS 1.3 is always preferred when the client supports it. */
  readonly minVersion?: MtlsVersion;
  readonly clock?: Clock;
  /**
   * Called once per connection refused by the SPIFFE check or the authorizer (node itself drops
   * chains it cannot verify before that), after the socket was destroyed; e.g. to log it. Must
   * not throw.
   */
  readonly onPeerRejected?: (error: Error, socket: TLSSocket) => void;
  /** Called when a rotation could not be applied; the previous certificate stays in use. */
  readonly onRotationError?: (error: Error) => void;
}

/** Options that would undo or bypass the SPIFFE trust set-up, so callers cannot pass them. */
type ReservedOption =
  | 'cert'
  | 'key'
  | 'ca'
  | 'pfx'
  | 'passphrase'
  | 'secureContext'
  | 'SNICallback'
  | 'requestCert'
  | 'rejectUnauthorized'
  | 'minVersion'
  | 'secureOptions'
  | 'secureProtocol'
  | 'ticketKeys'
  | 'sessionTimeout';

export interface CreateMtlsServerOptions extends MtlsServerOptions {
  /** Further `tls.createServer` options (ALPN, ciphers, handshake timeout...). */
  readonly tlsOptions?: Omit<tls.TlsOptions, ReservedOption>;
}

export interface CreateMtlsHttpsServerOptions extends MtlsServerOptions {
  /** Further `https.createServer` options (keep-alive and request timeouts...). */
  readonly serverOptions?: Omit<https.ServerOptions, ReservedOption>;
}

/** The tls options `createMtlsServerOptions` returns: a snapshot of the current material. */
export interface MtlsServerTlsOptions {
  readonly cert: string;
  readonly key: string;
  readonly ca: string[];
  readonly requestCert: true;
  readonly rejectUnauthorized: true;
  readonly minVersion: MtlsVersion;
  readonly secureOptions: number;
}

/**
 * Server TLS options for the source's current SVID and bundles. On their own they only give
 * node's chain check against the union of all bundles; pass the server made with them to
 * `enableMtls` (as `createServer` and `createHttpsServer` do) for the per-trust-domain check,
 * the authorizer, the cached peer identity and rotation.
 */
export function createMtlsServerOptions(
  source: X509Source,
  options: Pick<MtlsServerOptions, 'minVersion'> = {},
): MtlsServerTlsOptions {
  checkSource(source);
  const pem = currentPem(source);
  return {
    cert: pem.cert,
    key: pem.key,
    ca: pem.ca,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: checkVersion(options.minVersion, 'minVersion'),
    secureOptions: NO_RESUMPTION,
  };
}

const enabled = new WeakSet<tls.Server>();

/** True if `enableMtls` guards `server`, i.e. every connection it emits has a verified peer. */
export function isMtlsEnabled(server: unknown): boolean {
  return server instanceof tls.Server && enabled.has(server);
}

/**
 * Guards a `tls.Server` (or `https.Server`, or http2 secure server) created with
 * `createMtlsServerOptions`: every `secureConnection` is verified first (see the module comment)
 * and the server follows the source's rotations. Pass the server's other secure-context options
 * (ciphers, ECDH curve...) as `tlsOptions`: a rotation rebuilds the context from scratch.
 * Throws `TypeError` if mTLS is already enabled on `server`.
 */
export function enableMtls(server: tls.Server, source: X509Source, options: CreateMtlsServerOptions = {}): void {
  if (!(server instanceof tls.Server)) throw new TypeError('server must be a tls.Server');
  checkSource(source);
  if (enabled.has(server)) throw new TypeError('mTLS is already enabled on this server');
  const minVersion = checkVersion(options.minVersion, 'minVersion');
  const clock = options.clock ?? systemClock;
  const authorizer = options.authorizer;
  const extra = options.tlsOptions ?? {};
  if (authorizer !== undefined && typeof authorizer !== 'function') throw new TypeError('authorizer must be a function');
  enabled.add(server);

  const emit = server.emit;
  // Node emits `secureConnection` from the socket's handshake callback, before the socket's
  // data is read. Verifying here, ahead of every listener (http's parser included), means no
  // listener ever sees an unverified peer, whoever registered first.
  server.emit = function emitVerified(this: tls.Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'secureConnection') {
      const socket = args[0] as TLSSocket;
      try {
        // getPeerCertificate(false) is the cheapest way to the leaf's fingerprint; the chain
        // itself is only fetched and parsed when the verification cache misses.
        const fingerprint = socket.getPeerCertificate(false)?.fingerprint256;
        const chain = (): X509Certificate[] => peerChainOf(socket.getPeerCertificate(true), authorityFingerprints(source));
        rememberPeer(socket, verifyPeer(fingerprint, chain, source, authorizer, clock));
      } catch (err) {
        socket.destroy();
        options.onPeerRejected?.(toError(err), socket);
        return false;
      }
    }
    return Reflect.apply(emit, this, [event, ...args]) as boolean;
  } as typeof server.emit;

  const onUpdate = (): void => {
    try {
      // One new secure context per rotation; connections already open keep the old one.
      server.setSecureContext({ ...extra, ...createMtlsServerOptions(source, { minVersion }) });
    } catch (err) {
      (options.onRotationError ?? warnRotation)(toError(err));
    }
  };
  source.on('update', onUpdate);
  server.once('close', () => source.off('update', onUpdate));
}

function warnRotation(error: Error): void {
  process.emitWarning(`meshca/tls: rotation not applied, keeping the previous certificate: ${error.message}`);
}

/** A `tls.Server` for SPIFFE mTLS; see `enableMtls`. Get the peer with `getPeerSpiffeId(socket)`. */
export function createServer(
  source: X509Source,
  options: CreateMtlsServerOptions = {},
  connectionListener?: (socket: TLSSocket) => void,
): tls.Server {
  const server = tls.createServer({ ...options.tlsOptions, ...createMtlsServerOptions(source, options) }, connectionListener);
  enableMtls(server, source, options);
  return server;
}

/** An `https.Server` for SPIFFE mTLS; see `enableMtls`. Get the peer with `getPeerSpiffeId(request)`. */
export function createHttpsServer(
  source: X509Source,
  options: CreateMtlsHttpsServerOptions = {},
  requestListener?: RequestListener,
): https.Server {
  const { serverOptions, ...mtls } = options;
  const server = https.createServer({ ...serverOptions, ...createMtlsServerOptions(source, options) }, requestListener);
  // setSecureContext picks the secure-context options out of the https ones.
  enableMtls(server, source, { ...mtls, ...(serverOptions ? { tlsOptions: serverOptions } : {}) });
  return server;
}
