/**
 * X.509 bundles: the root authorities of one trust domain, and sets of bundles keyed by trust
 * domain. A bundle never vouches for another trust domain's IDs; verification looks a bundle up
 * by the *peer's* trust domain, which is why sets are keyed and never merged.
 */
import type { X509Certificate } from 'node:crypto';
import { BundleError } from '../errors.js';
import { certificateFacts, hasKeyUsage, KeyUsage } from './certificate-facts.js';
import { decodeCertificatesPem } from './pem.js';
import { TrustDomain } from './trust-domain.js';

/** Where verifiers get the authorities for a trust domain. */
export interface X509BundleSource {
  /** The bundle for `trustDomain`, or undefined if that trust domain is not trusted at all. */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined;
}

export class X509Bundle implements X509BundleSource {
  readonly trustDomain: TrustDomain;
  /** node:crypto certificates, de-duplicated, in the order given. */
  readonly authorities: readonly X509Certificate[];
  /** Optional version from the distribution channel (SPIFFE bundle `spiffe_sequence`). */
  readonly sequenceNumber: number | undefined;
  readonly #fingerprints: ReadonlySet<string>;

  /**
   * Throws `BundleError` (rule `authority-not-ca`, `authority-key-usage` or `certificate-parse`)
   * if an authority cannot sign certificates. An empty bundle is allowed here (a trust domain
   * whose authorities are all withdrawn); `parseX509BundlePem` rejects empty input.
   */
  constructor(trustDomain: TrustDomain, authorities: readonly X509Certificate[], sequenceNumber?: number) {
    if (!(trustDomain instanceof TrustDomain)) throw new TypeError('trustDomain must be a TrustDomain');
    if (sequenceNumber !== undefined && !Number.isSafeInteger(sequenceNumber)) {
      throw new TypeError('sequenceNumber must be a safe integer');
    }
    const fingerprints = new Set<string>();
    const unique: X509Certificate[] = [];
    authorities.forEach((cert, index) => {
      checkAuthority(trustDomain, cert, index);
      if (fingerprints.has(cert.fingerprint256)) return;
      fingerprints.add(cert.fingerprint256);
      unique.push(cert);
    });
    this.trustDomain = trustDomain;
    this.authorities = Object.freeze(unique);
    this.sequenceNumber = sequenceNumber;
    this.#fingerprints = fingerprints;
    Object.freeze(this);
  }

  /** True if `cert` (compared by its SHA-256 fingerprint, i.e. exact DER) is an authority. */
  hasAuthority(cert: X509Certificate): boolean {
    return this.#fingerprints.has(cert.fingerprint256);
  }

  /** The authorities as concatenated PEM blocks (empty string for an empty bundle). */
  toPem(): string {
    return this.authorities.map((cert) => cert.toString()).join('');
  }

  /** A bundle is a source for its own trust domain only. */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.trustDomain.equals(trustDomain) ? this : undefined;
  }
}

function checkAuthority(td: TrustDomain, cert: X509Certificate, index: number): void {
  let facts;
  try {
    facts = certificateFacts(cert);
  } catch (err) {
    throw new BundleError(`bundle for ${td.name}: authority ${index} cannot be parsed`, {
      rule: 'certificate-parse',
      cause: err,
    });
  }
  const what = `bundle for ${td.name}: authority ${index} ${JSON.stringify(cert.subject ?? '')}`;
  if (!facts.ca) throw new BundleError(`${what} is not a CA certificate`, { rule: 'authority-not-ca' });
  // RFC 5280: a CA without the key usage extension may sign; with it, keyCertSign is required.
  if (facts.keyUsage !== undefined && !hasKeyUsage(facts, KeyUsage.keyCertSign)) {
    throw new BundleError(`${what} lacks key usage keyCertSign`, { rule: 'authority-key-usage' });
  }
}

/**
 * Parses concatenated PEM `CERTIFICATE` blocks into a bundle for `trustDomain`. Throws
 * `BundleError` with rule `empty`, `pem`, `der`, `authority-not-ca` or `authority-key-usage`.
 */
export function parseX509BundlePem(trustDomain: TrustDomain, pem: string, sequenceNumber?: number): X509Bundle {
  if (!(trustDomain instanceof TrustDomain)) throw new TypeError('trustDomain must be a TrustDomain');
  if (typeof pem !== 'string') throw new TypeError('bundle PEM must be a string');
  const certs = decodeCertificatesPem(
    pem,
    (message, rule, cause) =>
      new BundleError(`bundle for ${trustDomain.name}: ${message}`, {
        rule: rule === 'no-certificates' ? 'empty' : rule,
        cause,
      }),
  );
  return new X509Bundle(trustDomain, certs, sequenceNumber);
}

/**
 * Bundles for several trust domains (own plus federated). Setting a bundle replaces the one for
 * its trust domain wholesale; authorities of different trust domains are never pooled.
 */
export class X509BundleSet implements X509BundleSource {
  readonly #bundles = new Map<string, X509Bundle>();

  /** Throws `TypeError` if two bundles share a trust domain: that is ambiguous, not mergeable. */
  constructor(bundles: Iterable<X509Bundle> = []) {
    for (const bundle of bundles) {
      if (this.#bundles.has(bundle.trustDomain.name)) {
        throw new TypeError(`two bundles for trust domain ${bundle.trustDomain.name}`);
      }
      this.set(bundle);
    }
  }

  get size(): number {
    return this.#bundles.size;
  }

  /** Adds or replaces the bundle for `bundle.trustDomain`. */
  set(bundle: X509Bundle): this {
    if (!(bundle instanceof X509Bundle)) throw new TypeError('bundle must be an X509Bundle');
    this.#bundles.set(bundle.trustDomain.name, bundle);
    return this;
  }

  delete(trustDomain: TrustDomain): boolean {
    return this.#bundles.delete(trustDomain.name);
  }

  has(trustDomain: TrustDomain): boolean {
    return this.#bundles.has(trustDomain.name);
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.#bundles.get(trustDomain.name);
  }

  bundles(): X509Bundle[] {
    return [...this.#bundles.values()];
  }
}
