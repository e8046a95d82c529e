/**
 * The X.509 fields the SVID rules look at (node:crypto does not expose key usage, basic
 * constraints or URI SANs), read with the DER reader of `pki/` in a few microseconds, which is
 * cheap enough for every TLS handshake. The generic @peculiar/x509 parser used before cost about
 * 2 ms per certificate.
 *
 * Results are memoised per `X509Certificate` object in a WeakMap: bundle authorities are the same
 * objects on every verification, so their facts (and public key) are read once per bundle, and
 * the entries go away with the certificates. Facts are a pure function of the DER, so sharing
 * them is safe. Internal to `spiffe/`.
 */
import type { KeyObject, X509Certificate } from 'node:crypto';
import { OID } from '../pki/algorithms.js';
import {
  KEY_USAGE_FLAG,
  readBasicConstraints,
  readCertificateFields,
  readKeyUsageFlags,
  readSubjectAltUris,
  readValidity,
} from '../pki/certificate-fields.js';

export const KeyUsage = {
  digitalSignature: KEY_USAGE_FLAG.digitalSignature,
  keyCertSign: KEY_USAGE_FLAG.keyCertSign,
  cRLSign: KEY_USAGE_FLAG.cRLSign,
} as const;

export interface CertificateFacts {
  /** basicConstraints cA; false when the extension is absent. */
  readonly ca: boolean;
  /** basicConstraints pathLenConstraint, if set. */
  readonly pathLength: number | undefined;
  /** Key usage bit flags (`KEY_USAGE_FLAG`); undefined when the extension is absent. */
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

// Extensions we either enforce or that carry no constraint we would need to enforce.
const HANDLED: ReadonlySet<string> = new Set([
  OID.subjectAltName,
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage, // purpose is the TLS stack's business
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier, // checkIssued() compares it
]);

const cache = new WeakMap<X509Certificate, CertificateFacts>();

/** Reads (or returns memoised) facts for `cert`. Throws `DerError` on a malformed encoding. */
export function certificateFacts(cert: X509Certificate): CertificateFacts {
  let facts = cache.get(cert);
  if (facts === undefined) {
    facts = readFacts(cert);
    cache.set(cert, facts);
  }
  return facts;
}

function readFacts(cert: X509Certificate): CertificateFacts {
  const fields = readCertificateFields(cert.raw);
  const { ca, pathLength } = readBasicConstraints(fields);
  const keyUsage = readKeyUsageFlags(fields);
  const uris = readSubjectAltUris(fields);
  const { notBefore, notAfter } = readValidity(fields);
  const unhandledCritical = fields.criticalExtensions.filter((oid) => !HANDLED.has(oid));
  let publicKey: KeyObject | undefined;
  return Object.freeze({
    ca,
    pathLength,
    keyUsage,
    uris: Object.freeze(uris),
    notBefore,
    notAfter,
    duplicateExtension: fields.duplicateExtension,
    unhandledCritical: Object.freeze(unhandledCritical),
    // Lazy: only issuers' keys are needed to verify a path, and extracting one costs more
    // than reading all the other facts.
    get publicKey(): KeyObject {
      return (publicKey ??= cert.publicKey);
    },
  });
}

export function hasKeyUsage(facts: CertificateFacts, flag: number): boolean {
  return facts.keyUsage !== undefined && (facts.keyUsage & flag) !== 0;
}
