/**
 * The verified identity of the peer of a TLS connection, computed once when the connection is
 * established and kept in a WeakMap keyed by the socket: requests on a kept-alive connection
 * read it back in O(1) and never touch certificates again (re-parsing per request costs ~3x in
 * throughput, see shared/perf-baselines.md). Entries go away with their sockets.
 */
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { SpiffeId } from '../spiffe/spiffe-id.js';

export interface PeerIdentity {
  readonly id: SpiffeId;
  /** Leaf first, ending with the bundle authority of the peer's trust domain. */
  readonly verifiedChain: readonly X509Certificate[];
}

/** A TLS socket, or anything that carries one as `socket` (node's `IncomingMessage`, fastify's request). */
export type PeerConnection = TLSSocket | { readonly socket: unknown };

const identities = new WeakMap<object, PeerIdentity>();

export function rememberPeer(socket: TLSSocket, identity: PeerIdentity): void {
  identities.set(socket, identity);
}

function socketOf(connection: PeerConnection): object | undefined {
  if (connection === null || typeof connection !== 'object') return undefined;
  if (identities.has(connection)) return connection;
  const inner = (connection as { readonly socket?: unknown }).socket;
  return inner !== null && typeof inner === 'object' ? inner : undefined;
}

/**
 * The peer identity of a connection made or accepted by this library, or undefined for any other
 * socket (plain TLS, a connection still handshaking, or one that was refused).
 */
export function findPeerIdentity(connection: PeerConnection): PeerIdentity | undefined {
  const socket = socketOf(connection);
  return socket === undefined ? undefined : identities.get(socket);
}

/**
 * The verified peer identity of `connection`. Throws `TypeError` if the connection did not come
 * through an mTLS server or client of this library: asking anything else is a wiring bug.
 */
export function getPeerIdentity(connection: PeerConnection): PeerIdentity {
  const identity = findPeerIdentity(connection);
  if (identity === undefined) {
    throw new TypeError('no verified SPIFFE peer for this connection: it was not accepted or made by meshca/tls');
  }
  return identity;
}

/** The peer's SPIFFE ID; see `getPeerIdentity`. */
export function getPeerSpiffeId(connection: PeerConnection): SpiffeId {
  return getPeerIdentity(connection).id;
}
