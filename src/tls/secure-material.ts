/**
 * Turns an `X509Source` into what node:tls consumes (PEM cert chain, key, CA list, or a ready
 * secure context) and verifies peers against it. Everything derived from the material is cached
 * by the identity of the SVID and bundle objects, so it is built once per rotation, never per
 * connection (creating a secure context parses the key and every certificate again).
 */
import { X509Certificate } from 'node:crypto';
import { constants } from 'node:crypto';
import type { DetailedPeerCertificate, PeerCertificate, SecureContext, SecureVersion } from 'node:tls';
import { createSecureContext } from 'node:tls';
import type { Clock } from '../clock.js';
import { MAX_X509_SVID_PATH_LENGTH, verifyX509Svid } from '../spiffe/x509-svid.js';
import type { X509Bundle, X509BundleSource } from '../spiffe/x509-bundle.js';
import type { X509Svid } from '../spiffe/x509-svid.js';
import type { Authorizer } from '../policy/authorizer.js';
import type { PeerIdentity } from './peer-identity.js';
import type { X509Source } from './x509-source.js';

export type MtlsVersion = Extract<SecureVersion, 'TLSv1.2' | 'TLSv1.3'>;

/** TLS 1.2 is the floor: anything older is refused as caller misuse, not quietly raised. */
export function checkVersion(version: unknown, name: 'minVersion' | 'maxVersion'): MtlsVersion {
  if (version === undefined) return name === 'minVersion' ? 'TLSv1.2' : 'TLSv1.3';
  if (version !== 'TLSv1.2' && version !== 'TLSv1.3') {
    throw new TypeError(`${name} must be 'TLSv1.2' or 'TLSv1.3', not ${String(version)}`);
  }
  return version;
}

/**
 * No session tickets or session-ID resumption: a resumed session carries no certificate chain,
 * so the SPIFFE check could not run on it, and tickets cost ~20 % of the handshake rate
 * (shared/perf-baselines.md). Every connection is a full handshake with a fresh check.
 */
export const NO_RESUMPTION = constants.SSL_OP_NO_TICKET;

export interface ContextPem {
  /** Leaf first, then intermediates. */
  readonly cert: string;
  readonly key: string;
  /** Every authority of every bundle; never empty-means-default (see `caOf`). */
  readonly ca: string[];
}

interface Snapshot {
  readonly svid: X509Svid;
  readonly bundles: readonly X509Bundle[];
  readonly pem: ContextPem;
  /** SHA-256 fingerprints (node's format) of every bundle authority. */
  readonly authorities: ReadonlySet<string>;
  readonly contexts: Map<string, SecureContext>;
}

const snapshots = new WeakMap<X509Source, Snapshot>();

function sameBundles(a: readonly X509Bundle[], b: readonly X509Bundle[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function snapshotOf(source: X509Source): Snapshot {
  const svid = source.getX509Svid();
  const bundles = source.getX509Bundles();
  const cached = snapshots.get(source);
  if (cached !== undefined && cached.svid === svid && sameBundles(cached.bundles, bundles)) return cached;
  const authorities = new Set(bundles.flatMap((bundle) => bundle.authorities.map((cert) => cert.fingerprint256)));
  const snapshot: Snapshot = { svid, bundles, pem: pemOf(svid, bundles), authorities, contexts: new Map() };
  snapshots.set(source, snapshot);
  return snapshot;
}

function pemOf(svid: X509Svid, bundles: readonly X509Bundle[]): ContextPem {
  if (svid.privateKey === undefined) throw new TypeError('the SVID of an X509Source needs its private key');
  return {
    cert: svid.certificates.map((c) => c.toString()).join(''),
    key: svid.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    ca: caOf(bundles),
  };
}

/**
 * The union of all bundle authorities. Node falls back to its built-in public roots when `ca` is
 * missing, which must never happen for mTLS: an empty list (truthy) trusts nothing instead.
 */
function caOf(bundles: readonly X509Bundle[]): string[] {
  const seen = new Set<string>();
  const ca: string[] = [];
  for (const bundle of bundles) {
    for (const cert of bundle.authorities) {
      if (seen.has(cert.fingerprint256)) continue;
      seen.add(cert.fingerprint256);
      ca.push(cert.toString());
    }
  }
  return ca;
}

/** Fingerprints of all authorities of the source's current bundles (cached per rotation). */
export function authorityFingerprints(source: X509Source): ReadonlySet<string> {
  return snapshotOf(source).authorities;
}

/** PEM material of the source's current SVID and bundles (cached per rotation). */
export function currentPem(source: X509Source): ContextPem {
  return snapshotOf(source).pem;
}

export interface TlsVersions {
  readonly minVersion: MtlsVersion;
  readonly maxVersion: MtlsVersion;
}

/** A client secure context for the current material, built once per rotation and version range. */
export function currentClientContext(source: X509Source, versions: TlsVersions): SecureContext {
  const snapshot = snapshotOf(source);
  const key = `${versions.minVersion}-${versions.maxVersion}`;
  let context = snapshot.contexts.get(key);
  if (context === undefined) {
    context = createSecureContext({ ...snapshot.pem, ...versions, secureOptions: NO_RESUMPTION });
    snapshot.contexts.set(key, context);
  }
  return context;
}

/**
 * The peer's certificates, leaf first, from node's detailed peer certificate (each linked to its
 * issuer; a self-issued root points at itself). Certificates in `skip` (bundle authorities,
 * which node appends from its trust store) are left out rather than parsed: verification finds
 * them in the bundle anyway. Bounded, so a hostile chain cannot make this loop long.
 *
 * Parsing DER again costs ~0.2 ms per certificate with OpenSSL 3, which is why callers consult
 * the verification cache first. `getPeerX509Certificate()` would reuse OpenSSL's decoded
 * certificates, but on Node 20 it consumes the socket's peer chain as it walks it, so the
 * application's own `getPeerCertificate(true)` would afterwards see the leaf alone.
 */
export function peerChainOf(
  peer: PeerCertificate | DetailedPeerCertificate | undefined,
  skip: ReadonlySet<string> = new Set(),
): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<PeerCertificate>();
  let current: PeerCertificate | undefined = peer;
  while (current !== undefined && current !== null && current.raw !== undefined && !seen.has(current)) {
    if (seen.size > MAX_X509_SVID_PATH_LENGTH) break; // verifyX509Svid rejects it as too long
    seen.add(current);
    if (chain.length === 0 || !skip.has(current.fingerprint256)) chain.push(new X509Certificate(current.raw));
    current = (current as Partial<DetailedPeerCertificate>).issuerCertificate;
  }
  return chain;
}

interface VerifiedLeaf {
  readonly identity: PeerIdentity;
  /** The bundle the path was verified against; a different bundle object means a new decision. */
  readonly bundle: X509Bundle;
  /** The window in which every certificate of the verified path is valid (ms since epoch). */
  readonly validFrom: number;
  readonly validUntil: number;
}

/**
 * Verification results by SHA-256 fingerprint of the leaf DER. A workload keeps its SVID for
 * hours and reconnects many times, and re-verifying costs a signature check plus decoding
 * (~0.4 ms, a fifth of a handshake). Reusing a result is sound because it is a pure function
 * of the leaf, the bundle object of the leaf's trust domain and the time: a hit requires the
 * same bundle object and a time inside the path's validity. The peer still proved possession of
 * the leaf's key in this handshake, node still verified the presented chain against the trust
 * store, and the authorizer still runs on every connection. Only successes are stored.
 */
const verifiedLeaves = new Map<string, VerifiedLeaf>();
/** Bounds memory (one small entry per distinct peer SVID) while covering every live peer in practice. */
const MAX_VERIFIED_LEAVES = 4096;

function lookupVerified(fingerprint: string, bundles: X509BundleSource, nowMs: number): PeerIdentity | undefined {
  const hit = verifiedLeaves.get(fingerprint);
  if (hit === undefined) return undefined;
  if (
    nowMs < hit.validFrom ||
    nowMs > hit.validUntil ||
    bundles.getX509BundleForTrustDomain(hit.identity.id.trustDomain) !== hit.bundle
  ) {
    verifiedLeaves.delete(fingerprint);
    return undefined;
  }
  // Re-inserting keeps the Map in least-recently-used order.
  verifiedLeaves.delete(fingerprint);
  verifiedLeaves.set(fingerprint, hit);
  return hit.identity;
}

function rememberVerified(identity: PeerIdentity, bundles: X509BundleSource): void {
  const bundle = bundles.getX509BundleForTrustDomain(identity.id.trustDomain);
  if (bundle === undefined) return;
  let validFrom = -Infinity;
  let validUntil = Infinity;
  for (const cert of identity.verifiedChain) {
    validFrom = Math.max(validFrom, Date.parse(cert.validFrom));
    validUntil = Math.min(validUntil, Date.parse(cert.validTo));
  }
  if (Number.isNaN(validFrom) || Number.isNaN(validUntil)) return;
  if (verifiedLeaves.size >= MAX_VERIFIED_LEAVES) verifiedLeaves.delete(verifiedLeaves.keys().next().value!);
  verifiedLeaves.set(identity.verifiedChain[0]!.fingerprint256, { identity, bundle, validFrom, validUntil });
}

/**
 * The SPIFFE check node's own chain verification cannot do: verify against the bundle of the
 * leaf's own trust domain (so td-a's CA cannot vouch for an ID in td-b), then authorize.
 * `leafFingerprint` (SHA-256, as node formats it) enables the result cache; `chain` is only
 * called on a miss.
 */
export function verifyPeer(
  leafFingerprint: string | undefined,
  chain: () => readonly X509Certificate[],
  bundles: X509BundleSource,
  authorizer: Authorizer | undefined,
  clock: Clock,
): PeerIdentity {
  const now = clock.now();
  let identity = leafFingerprint === undefined ? undefined : lookupVerified(leafFingerprint, bundles, now.getTime());
  if (identity === undefined) {
    const { id, verifiedChain } = verifyX509Svid(chain(), bundles, { now });
    identity = Object.freeze({ id, verifiedChain });
    rememberVerified(identity, bundles);
  }
  authorizer?.(identity.id, identity.verifiedChain);
  return identity;
}

export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Throws `TypeError` unless `source` looks like an `X509Source`. */
export function checkSource(source: X509Source): void {
  if (
    source === null ||
    typeof source !== 'object' ||
    typeof source.getX509Svid !== 'function' ||
    typeof source.getX509Bundles !== 'function' ||
    typeof source.getX509BundleForTrustDomain !== 'function' ||
    typeof source.on !== 'function'
  ) {
    throw new TypeError('source must be an X509Source');
  }
}
