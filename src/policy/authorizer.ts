/**
 * Peer authorization after the TLS handshake, go-spiffe style: an `Authorizer` is a function of
 * the verified peer SPIFFE ID (and its chain) that returns normally to allow and throws
 * `AuthzDeniedError` to deny. Adapters call it after `verifyX509Svid`; it never sees an
 * unverified identity.
 *
 * Every constructor fails closed: a predicate that throws or returns anything but `true` denies.
 */
import type { X509Certificate } from 'node:crypto';
import { AuthzDeniedError } from '../errors.js';
import { SpiffeId } from '../spiffe/spiffe-id.js';
import { TrustDomain } from '../spiffe/trust-domain.js';

export type Authorizer = (peer: SpiffeId, chain?: readonly X509Certificate[]) => void;

export type AuthorizerRule = 'authorize-id' | 'authorize-one-of' | 'authorize-member-of' | 'authorize-if';

function checkPeer(peer: unknown): asserts peer is SpiffeId {
  if (!(peer instanceof SpiffeId)) throw new TypeError('peer must be a SpiffeId');
}

function quote(s: string): string {
  return JSON.stringify(s);
}

/** Allows any verified peer. Use only where the trust bundle alone is the policy. */
export function authorizeAny(): Authorizer {
  return (peer) => {
    checkPeer(peer);
  };
}

/** Allows exactly one SPIFFE ID. */
export function authorizeId(id: SpiffeId): Authorizer {
  if (!(id instanceof SpiffeId)) throw new TypeError('authorizeId: id must be a SpiffeId');
  const expected = id.toString();
  return (peer) => {
    checkPeer(peer);
    if (!peer.equals(id)) {
      throw new AuthzDeniedError(`peer ${quote(peer.toString())} is not authorized: expected ${quote(expected)}`, {
        rule: 'authorize-id',
      });
    }
  };
}

/** Allows any of the given SPIFFE IDs; with none, denies every peer. */
export function authorizeOneOf(...ids: readonly SpiffeId[]): Authorizer {
  for (const id of ids) if (!(id instanceof SpiffeId)) throw new TypeError('authorizeOneOf: every id must be a SpiffeId');
  const allowed = new Set(ids.map((id) => id.toString()));
  const listed = ids.length <= 5 ? [...allowed].map(quote).join(', ') : `${allowed.size} allowed IDs`;
  return (peer) => {
    checkPeer(peer);
    if (!allowed.has(peer.toString())) {
      throw new AuthzDeniedError(
        `peer ${quote(peer.toString())} is not authorized: expected one of ${allowed.size === 0 ? '(none)' : listed}`,
        { rule: 'authorize-one-of' },
      );
    }
  };
}

/** Allows any peer in the trust domain. */
export function authorizeMemberOf(trustDomain: TrustDomain): Authorizer {
  if (!(trustDomain instanceof TrustDomain)) throw new TypeError('authorizeMemberOf: trustDomain must be a TrustDomain');
  return (peer) => {
    checkPeer(peer);
    if (!peer.memberOf(trustDomain)) {
      throw new AuthzDeniedError(
        `peer ${quote(peer.toString())} is not authorized: expected a member of trust domain ${quote(trustDomain.name)}`,
        { rule: 'authorize-member-of' },
      );
    }
  };
}

/**
 * Allows a peer when `predicate` returns exactly `true`. `description` says what is required,
 * for the denial message ("a workload in namespace payments").
 */
export function authorizeIf(
  predicate: (peer: SpiffeId, chain: readonly X509Certificate[]) => boolean,
  description: string,
): Authorizer {
  if (typeof predicate !== 'function') throw new TypeError('authorizeIf: predicate must be a function');
  if (typeof description !== 'string' || description.length === 0) throw new TypeError('authorizeIf: description must be a non-empty string');
  return (peer, chain = []) => {
    checkPeer(peer);
    let allowed: unknown;
    try {
      allowed = predicate(peer, chain);
    } catch (err) {
      throw new AuthzDeniedError(`peer ${quote(peer.toString())} is not authorized: the check for ${description} failed`, {
        rule: 'authorize-if',
        cause: err,
      });
    }
    if (allowed !== true) {
      throw new AuthzDeniedError(`peer ${quote(peer.toString())} is not authorized: expected ${description}`, { rule: 'authorize-if' });
    }
  };
}
