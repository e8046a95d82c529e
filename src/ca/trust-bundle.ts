/**
 * The CA's own trust bundle: every root of one trust domain that relying parties should accept
 * right now (the active root, a prepared one being published ahead of use, retiring ones whose
 * SVIDs may still be valid), plus the sequence number that versions it for the SPIFFE bundle
 * endpoint. An immutable value: each change returns a new bundle.
 *
 * A bundle belongs to exactly one trust domain and there is deliberately no way to combine two:
 * a foreign domain's roots live in their own X509Bundle, looked up by the peer's trust domain.
 */
import type { X509Certificate } from 'node:crypto';
import { BundleError } from '../errors.js';
import { certificateFacts } from '../spiffe/certificate-facts.js';
import type { TrustDomain } from '../spiffe/trust-domain.js';
import { parseX509BundlePem, X509Bundle } from '../spiffe/x509-bundle.js';

const HEX_FINGERPRINT = /^[0-9A-F]{64}$/;

/**
 * Normalizes a SHA-256 fingerprint as people paste it (`openssl x509 -fingerprint -sha256`,
 * with or without colons or a `sha256 Fingerprint=` prefix, any case) to Node's
 * `fingerprint256` form, `AB:CD:...`. Throws `TypeError` for anything else.
 */
export function normalizeFingerprint(text: string): string {
  const hex = text.trim().replace(/^sha-?256\s*fingerprint\s*=\s*/i, '').replace(/:/g, '').toUpperCase();
  if (!HEX_FINGERPRINT.test(hex)) throw new TypeError(`${JSON.stringify(text)} is not a SHA-256 fingerprint (64 hex digits)`);
  return hex.match(/../g)!.join(':');
}

export class TrustBundle {
  readonly trustDomain: TrustDomain;
  /** Distinct roots in publication order (oldest first). */
  readonly roots: readonly X509Certificate[];
  /** `spiffe_sequence`: changes whenever the roots change, and only ever grows. */
  readonly sequence: number;
  readonly #x509: X509Bundle;

  /** Throws `BundleError` when a root is not a CA or names another trust domain. */
  constructor(trustDomain: TrustDomain, roots: readonly X509Certificate[], sequence: number) {
    if (!Number.isSafeInteger(sequence) || sequence < 0) throw new TypeError('sequence must be a non-negative safe integer');
    roots.forEach((root) => checkTrustDomain(trustDomain, root));
    this.#x509 = new X509Bundle(trustDomain, roots, sequence);
    this.trustDomain = trustDomain;
    this.roots = this.#x509.authorities;
    this.sequence = sequence;
    Object.freeze(this);
  }

  /** Parses `root-cert.pem` strictly (`BundleError` rules of `parseX509BundlePem`). */
  static fromPem(trustDomain: TrustDomain, pem: string, sequence: number): TrustBundle {
    return new TrustBundle(trustDomain, parseX509BundlePem(trustDomain, pem).authorities, sequence);
  }

  get fingerprints(): readonly string[] {
    return this.roots.map((r) => r.fingerprint256);
  }

  has(fingerprint: string): boolean {
    const wanted = normalizeFingerprint(fingerprint);
    return this.roots.some((r) => r.fingerprint256 === wanted);
  }

  find(fingerprint: string): X509Certificate | undefined {
    const wanted = normalizeFingerprint(fingerprint);
    return this.roots.find((r) => r.fingerprint256 === wanted);
  }

  /** Adds `root` (a no-op when present). The sequence is unchanged: callers bump it once per change. */
  withRoot(root: X509Certificate): TrustBundle {
    if (this.#x509.hasAuthority(root)) return this;
    return new TrustBundle(this.trustDomain, [...this.roots, root], this.sequence);
  }

  /** Removes the root with this fingerprint (a no-op when absent). */
  withoutRoot(fingerprint: string): TrustBundle {
    const unwanted = normalizeFingerprint(fingerprint);
    if (!this.roots.some((r) => r.fingerprint256 === unwanted)) return this;
    return new TrustBundle(this.trustDomain, this.roots.filter((r) => r.fingerprint256 !== unwanted), this.sequence);
  }

  /** A copy with a later sequence number; going backwards would let consumers ignore the update. */
  withSequence(sequence: number): TrustBundle {
    if (!(sequence > this.sequence)) throw new TypeError(`bundle sequence must grow: ${sequence} after ${this.sequence}`);
    return new TrustBundle(this.trustDomain, this.roots, sequence);
  }

  /** True when both hold the same roots, whatever the order and sequence. */
  sameRoots(other: TrustBundle): boolean {
    if (!this.trustDomain.equals(other.trustDomain) || other.roots.length !== this.roots.length) return false;
    return other.roots.every((r) => this.#x509.hasAuthority(r));
  }

  /** `root-cert.pem` content: all roots, concatenated PEM. */
  toPem(): string {
    return this.#x509.toPem();
  }

  /** The verification-side view (an `X509BundleSource` for this trust domain only). */
  toX509Bundle(): X509Bundle {
    return this.#x509;
  }
}

/**
 * Roots normally carry no SPIFFE ID; when one does, it must be this trust domain's. A root that
 * names another domain in this bundle would silently extend trust across domains.
 */
function checkTrustDomain(trustDomain: TrustDomain, root: X509Certificate): void {
  let uris: readonly string[];
  try {
    uris = certificateFacts(root).uris;
  } catch (err) {
    throw new BundleError(`bundle for ${trustDomain.name}: a root cannot be parsed`, { rule: 'certificate-parse', cause: err });
  }
  for (const uri of uris) {
    if (!uri.toLowerCase().startsWith('spiffe://')) continue;
    const host = uri.slice('spiffe://'.length).split('/')[0]!.toLowerCase();
    if (host !== trustDomain.name) {
      throw new BundleError(`bundle for ${trustDomain.name}: root ${root.fingerprint256} names trust domain ${host}`, {
        rule: 'trust-domain',
      });
    }
  }
}
