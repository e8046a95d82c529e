/**
 * mTLS clients for SPIFFE servers: present the source's SVID and accept the server by its
 * SPIFFE ID instead of its host name. Node checks the chain against the union of all bundle
 * authorities; `checkServerIdentity` (called by node after that, for every full handshake)
 * re-verifies it against the bundle of the server's own trust domain and runs the authorizer.
 * Session resumption is off, so the check can never be skipped on a resumed session.
 */
import type { X509Certificate } from 'node:crypto';
import type { Duplex } from 'node:stream';
import * as https from 'node:https';
import * as tls from 'node:tls';
import type { PeerCertificate, SecureContext, TLSSocket } from 'node:tls';
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import type { Authorizer } from '../policy/authorizer.js';
import { rememberPeer } from './peer-identity.js';
import type { MtlsVersion, TlsVersions } from './secure-material.js';
import {
  authorityFingerprints,
  checkSource,
  checkVersion,
  currentClientContext,
  peerChainOf,
  toError,
  verifyPeer,
} from './secure-material.js';
import type { X509Source } from './x509-source.js';

export interface MtlsClientOptions {
  /** Decides whether the server's SPIFFE ID is the one we meant to reach. Required. */
  readonly authorizer: Authorizer;
  /** Default `TLSv1.2`; TLS 1.3 is used whenever the server supports it. */
  readonly minVersion?: MtlsVersion;
  /** Default `TLSv1.3`; `TLSv1.2` forces TLS 1.2 (for old peers, and tests). */
  readonly maxVersion?: MtlsVersion;
  readonly clock?: Clock;
}

/**
 * Options callers cannot pass: they would bypass the SPIFFE checks, or (every secure-context
 * option) be silently ignored next to the shared `secureContext`.
 */
type ReservedOption = keyof tls.SecureContextOptions | 'secureContext' | 'checkServerIdentity' | 'rejectUnauthorized' | 'session';

/** What `createMtlsClientOptions` returns; spread it into `tls.connect` or an agent's options. */
export interface MtlsClientTlsOptions {
  readonly secureContext: SecureContext;
  readonly rejectUnauthorized: true;
  readonly checkServerIdentity: (hostname: string, cert: PeerCertificate) => Error | undefined;
}

interface Resolved {
  readonly authorizer: Authorizer;
  readonly versions: TlsVersions;
  readonly clock: Clock;
}

function resolve(source: X509Source, options: MtlsClientOptions): Resolved {
  checkSource(source);
  if (typeof options?.authorizer !== 'function') {
    throw new TypeError('options.authorizer is required: a client must say which server identity it expects');
  }
  const minVersion = checkVersion(options.minVersion, 'minVersion');
  const maxVersion = checkVersion(options.maxVersion, 'maxVersion');
  if (minVersion === 'TLSv1.3' && maxVersion === 'TLSv1.2') throw new TypeError('minVersion is above maxVersion');
  return { authorizer: options.authorizer, versions: { minVersion, maxVersion }, clock: options.clock ?? systemClock };
}

/**
 * Builds the TLS options of one connection. `socket()` returns the connection's socket once it
 * exists, so the server's verified identity is remembered on it (undefined for socket-less
 * option snapshots). The secure context is shared by all connections until the source rotates.
 */
function connectionOptions(source: X509Source, resolved: Resolved, socket: () => TLSSocket | undefined): MtlsClientTlsOptions {
  return {
    secureContext: currentClientContext(source, resolved.versions),
    rejectUnauthorized: true,
    // Node calls this after its own chain check, for every full handshake, and treats a returned
    // Error as fatal. It must not throw: node calls it from a handshake callback.
    checkServerIdentity: (_hostname, cert) => {
      try {
        // Node built `cert` (the detailed chain) for this call anyway.
        const chain = (): X509Certificate[] => peerChainOf(cert, authorityFingerprints(source));
        const identity = verifyPeer(cert.fingerprint256, chain, source, resolved.authorizer, resolved.clock);
        const own = socket();
        if (own !== undefined) rememberPeer(own, identity);
        return undefined;
      } catch (err) {
        return toError(err);
      }
    },
  };
}

/**
 * Client TLS options for the source's current SVID and bundles, verifying the server by SPIFFE
 * ID. A snapshot: call again after the source's `update` (or use `connect` / `createMtlsAgent`,
 * which always use the current material).
 */
export function createMtlsClientOptions(source: X509Source, options: MtlsClientOptions): MtlsClientTlsOptions {
  return connectionOptions(source, resolve(source, options), () => undefined);
}

export interface MtlsConnectOptions extends MtlsClientOptions, Omit<tls.ConnectionOptions, ReservedOption> {
  readonly host?: string;
  readonly port: number;
}

/**
 * Opens an mTLS connection. `secureConnect` fires only once the server's SVID is verified and
 * authorized; otherwise the socket emits `error` (an `IdentityError` such as
 * `ERR_SVID_UNTRUSTED` or `ERR_AUTHZ_DENIED`). `getPeerSpiffeId(socket)` then returns the server's ID.
 * No `servername` is needed: SNI is sent for host names only as a courtesy, never checked.
 */
export function connect(source: X509Source, options: MtlsConnectOptions): TLSSocket {
  const { authorizer, minVersion, maxVersion, clock, ...rest } = options;
  const resolved = resolve(source, {
    authorizer,
    ...(minVersion ? { minVersion } : {}),
    ...(maxVersion ? { maxVersion } : {}),
    ...(clock ? { clock } : {}),
  });
  let socket: TLSSocket | undefined;
  // `socket` is assigned before the handshake can call back: tls.connect returns first.
  socket = tls.connect({ ...rest, ...connectionOptions(source, resolved, () => socket) });
  return socket;
}

export interface MtlsAgentOptions extends MtlsClientOptions {
  /** Further `https.Agent` options (keepAlive, maxSockets...). Session caching is always off. */
  readonly agentOptions?: Omit<https.AgentOptions, ReservedOption | 'maxCachedSessions'>;
}

/**
 * An `https.Agent` that presents the source's SVID and accepts servers by SPIFFE ID through the
 * authorizer. Each new connection uses the material current at that moment, so rotations need
 * no new agent; pooled connections keep the credentials they were made with.
 */
export function createMtlsAgent(source: X509Source, options: MtlsAgentOptions): https.Agent {
  return new MtlsAgent(source, resolve(source, options), options.agentOptions ?? {});
}

class MtlsAgent extends https.Agent {
  readonly #source: X509Source;
  readonly #resolved: Resolved;

  constructor(source: X509Source, resolved: Resolved, agentOptions: https.AgentOptions) {
    // A cached session would let node skip checkServerIdentity on resumption (see module comment).
    super({ ...agentOptions, maxCachedSessions: 0 });
    this.#source = source;
    this.#resolved = resolved;
  }

  override createConnection(
    options: https.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    let socket: Duplex | null | undefined;
    const tlsOptions = connectionOptions(this.#source, this.#resolved, () => (socket ?? undefined) as TLSSocket | undefined);
    socket = super.createConnection({ ...options, ...tlsOptions }, callback);
    return socket;
  }
}
