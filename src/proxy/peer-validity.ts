/**
 * How long a verified peer stays verified on a kept-alive connection. The TLS handshake checks
 * the peer once; without this, a connection would outlive the client's SVID and a distrusted
 * root for as long as the client keeps it busy. The proxy checks the two facts below before
 * every request, and closes the connection at its deadline.
 */
import type { X509Certificate } from 'node:crypto';
import type { X509BundleSource } from '../spiffe/x509-bundle.js';
import type { SpiffeId } from '../spiffe/spiffe-id.js';

export interface VerifiedPeer {
  readonly id: SpiffeId;
  /** Leaf first, ending with the authority of the peer's own trust-domain bundle. */
  readonly verifiedChain: readonly X509Certificate[];
}

/**
 * The instant (ms) after which the connection must not carry another request: the earliest
 * `notAfter` in the verified chain, or sooner with `maxAgeMs` from `nowMs`.
 */
export function connectionDeadline(peer: VerifiedPeer, nowMs: number, maxAgeMs?: number): number {
  let deadline = maxAgeMs === undefined ? Number.POSITIVE_INFINITY : nowMs + maxAgeMs;
  for (const cert of peer.verifiedChain) {
    const notAfter = Date.parse(cert.validTo);
    // An unparseable date fails closed: the connection gets no time at all.
    deadline = Math.min(deadline, Number.isNaN(notAfter) ? nowMs : notAfter);
  }
  return deadline;
}

/** True while the authority the peer chained to is still in the bundle of its trust domain. */
export function anchorStillTrusted(peer: VerifiedPeer, bundles: X509BundleSource): boolean {
  const anchor = peer.verifiedChain.at(-1);
  if (anchor === undefined) return false;
  const bundle = bundles.getX509BundleForTrustDomain(peer.id.trustDomain);
  return bundle !== undefined && bundle.hasAuthority(anchor);
}
