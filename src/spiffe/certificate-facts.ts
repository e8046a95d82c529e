/**
 * The X.509 fields the SVID rules look at, read with @peculiar/x509 (node:crypto does not
 * expose key usage or URI SANs). That parser costs about 2 ms per certificate, too much to pay
 * on every TLS connection, so results are memoised by DER in a small LRU: intermediates and
 * roots are shared by all peers and a workload keeps its SVID for hours, so the verify path
 * almost always hits. Facts are a pure function of the DER, so sharing them is safe.
 * Internal to `spiffe/`.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import type { KeyObject, X509Certificate } from 'node:crypto';

export const KeyUsage = {
  digitalSignature: x509.KeyUsageFlags.digitalSignature,
  keyCertSign: x509.KeyUsageFlags.keyCertSign,
  cRLSign: x509.KeyUsageFlags.cRLSign,
} as const;

export interface CertificateFacts {
  /** basicConstraints cA; false when the extension is absent. */
  readonly ca: boolean;
  /** basicConstraints pathLenConstraint, if set. */
  readonly pathLength: number | undefined;
  /** Key usage bit flags (x509.KeyUsageFlags); undefined when the extension is absent. */
  readonly keyUsage: number | undefined;
  /** Every URI SAN, in order. */
  readonly uris: readonly string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The first extension OID that appears twice (RFC 5280 forbids it), if any. */
  readonly duplicateExtension: string | undefined;
  /** Critical extensions this library does not process; path validation must reject them. */
  readonly unhandledCritical: readonly string[];
  readonly publicKey: KeyObject;
}

const OID_SAN = '2.5.29.17';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';
// Extensions we either enforce or that carry no constraint we would need to enforce.
const HANDLED = new Set([
  OID_SAN,
  OID_BASIC_CONSTRAINTS,
  OID_KEY_USAGE,
  '2.5.29.37', // extended key usage: purpose is the TLS stack's business
  '2.5.29.14', // subject key identifier
  '2.5.29.35', // authority key identifier: checkIssued() compares it
]);

/** Bounds memory (a few hundred bytes per entry) while covering every live peer in practice. */
const MAX_CACHED = 1024;
// A Map iterates in insertion order; re-inserting on a hit makes the first key the LRU one.
const cache = new Map<string, CertificateFacts>();

/** Reads (or returns memoised) facts for `cert`. Throws whatever the ASN.1 parser throws. */
export function certificateFacts(cert: X509Certificate): CertificateFacts {
  const key = cert.raw.toString('base64');
  const cached = cache.get(key);
  if (cached !== undefined) {
    cache.delete(key);
    cache.set(key, cached);
    return cached;
  }
  const facts = readFacts(cert);
  if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value!);
  cache.set(key, facts);
  return facts;
}

function readFacts(cert: X509Certificate): CertificateFacts {
  const parsed = new x509.X509Certificate(cert.raw);
  let ca = false;
  let pathLength: number | undefined;
  let keyUsage: number | undefined;
  const uris: string[] = [];
  const seen = new Set<string>();
  let duplicateExtension: string | undefined;
  const unhandledCritical: string[] = [];
  for (const ext of parsed.extensions) {
    if (seen.has(ext.type)) duplicateExtension ??= ext.type;
    seen.add(ext.type);
    if (ext instanceof x509.BasicConstraintsExtension) {
      ca = ext.ca;
      pathLength = ext.pathLength;
    } else if (ext instanceof x509.KeyUsagesExtension) {
      keyUsage = ext.usages;
    } else if (ext instanceof x509.SubjectAlternativeNameExtension) {
      for (const name of ext.names.items) if (name.type === 'url') uris.push(name.value);
    }
    if (ext.critical && !HANDLED.has(ext.type)) unhandledCritical.push(ext.type);
  }
  return Object.freeze({
    ca,
    pathLength,
    keyUsage,
    uris: Object.freeze(uris),
    notBefore: parsed.notBefore,
    notAfter: parsed.notAfter,
    duplicateExtension,
    unhandledCritical: Object.freeze(unhandledCritical),
    publicKey: cert.publicKey,
  });
}

export function hasKeyUsage(facts: CertificateFacts, flag: number): boolean {
  return facts.keyUsage !== undefined && (facts.keyUsage & flag) !== 0;
}
