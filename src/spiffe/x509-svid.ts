/**
 * X509-SVIDs per the SPIFFE X509-SVID standard: parsing (shape rules only, for our own or
 * configured SVIDs) and verification of a peer's chain against the bundle of the peer's own
 * trust domain. Parse and verify are separate on purpose (STYLE rule 2); authorization is a
 * third step elsewhere.
 */
import { createPrivateKey, createPublicKey, KeyObject, X509Certificate } from 'node:crypto';
import { SpiffeIdError, SvidError, SvidUntrustedError } from '../errors.js';
import type { CertificateFacts } from './certificate-facts.js';
import { certificateFacts, hasKeyUsage, KeyUsage } from './certificate-facts.js';
import type { DecodeFailure } from './pem.js';
import { decodeCertificatesPem, decodeConcatenatedDer, decodeDer, looksLikeDer } from './pem.js';
import { parseSpiffeId } from './spiffe-id.js';
import type { SpiffeId } from './spiffe-id.js';
import type { X509Bundle, X509BundleSource } from './x509-bundle.js';

export interface X509Svid {
  readonly id: SpiffeId;
  /** node:crypto certificates, leaf first, then the intermediates that chain it to a root. */
  readonly certificates: readonly X509Certificate[];
  readonly privateKey?: KeyObject;
  /** Validity of the leaf. */
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** Anything that can hand out the current SVID: a static one, or the rotator. */
export interface X509SvidSource {
  getX509Svid(): X509Svid;
}

export interface VerifyX509SvidOptions {
  /** The instant at which every certificate in the path must be valid. */
  readonly now: Date;
}

export interface VerifyX509SvidResult {
  readonly id: SpiffeId;
  /** Leaf first, ending with the bundle authority that anchors it. */
  readonly verifiedChain: readonly X509Certificate[];
}

/**
 * Stable `rule` values of `SvidError` / `SvidUntrustedError`. Leaf rules are shared: verify
 * reports a malformed peer leaf as untrusted with the same rule parse would use.
 */
export type X509SvidRule =
  | 'no-certificates'
  | 'pem'
  | 'der'
  | 'certificate-parse'
  | 'duplicate-extension'
  | 'uri-san-count'
  | 'spiffe-id'
  | 'leaf-id-path'
  | 'leaf-is-ca'
  | 'leaf-key-usage'
  | 'leaf-key-cert-sign'
  | 'leaf-crl-sign'
  | 'intermediate-not-ca'
  | 'intermediate-key-usage'
  | 'private-key'
  | 'key-mismatch'
  | 'chain-too-long'
  | 'no-bundle'
  | 'bundle-mismatch'
  | 'expired'
  | 'not-yet-valid'
  | 'unhandled-critical-extension'
  | 'path-length'
  | 'path-too-long'
  | 'no-path';

/** Longest accepted path, leaf and anchor included; also caps the certificates a peer may send. */
export const MAX_X509_SVID_PATH_LENGTH = 10;

type Fail = (message: string, rule: X509SvidRule, cause?: unknown) => Error;

const svidError: Fail = (message, rule, cause) => new SvidError(message, { rule, cause });
const untrusted: Fail = (message, rule, cause) => new SvidUntrustedError(message, { rule, cause });
const decodeAsSvidError: DecodeFailure = (message, rule, cause) => svidError(message, rule, cause);

/**
 * Decodes concatenated PEM `CERTIFICATE` blocks (other block types are rejected). Throws
 * `SvidError` with rule `pem`, `der` or `no-certificates`.
 */
export function parseCertificatesPem(pem: string): X509Certificate[] {
  return decodeCertificatesPem(pem, decodeAsSvidError);
}

/**
 * Parses an X509-SVID from PEM text, one DER buffer (possibly several concatenated
 * certificates) or a list of DER buffers, leaf first, and checks the X509-SVID shape rules:
 * the leaf has exactly one URI SAN holding a SPIFFE ID with a path, is not a CA, has key usage
 * digitalSignature and neither keyCertSign nor cRLSign; every further certificate is a CA with
 * keyCertSign. If a private key is given it must match the leaf. Signatures and validity
 * periods are not checked here; that is `verifyX509Svid`. Throws `SvidError` with `rule`.
 */
export function parseX509Svid(
  chain: string | Uint8Array | readonly Uint8Array[],
  privateKey?: string | KeyObject,
): X509Svid {
  const certificates = decodeChain(chain);
  const { id, facts } = readLeaf(certificates[0]!, svidError);
  certificates.slice(1).forEach((cert, i) => checkSigningCertificate(cert, i + 1));
  const key = privateKey === undefined ? undefined : readPrivateKey(privateKey);
  if (key !== undefined && !createPublicKey(key).equals(facts.publicKey)) {
    throw svidError(`the private key does not match the public key of the leaf certificate of ${id}`, 'key-mismatch');
  }
  return Object.freeze({
    id,
    certificates: Object.freeze(certificates),
    ...(key === undefined ? {} : { privateKey: key }),
    notBefore: new Date(facts.notBefore.getTime()),
    notAfter: new Date(facts.notAfter.getTime()),
  });
}

/**
 * The X509-SVID leaf rules applied to one DER certificate, as SPIRE's credential validator
 * checks what its CA signs: it must parse (OpenSSL's parser, as every TLS peer will) and be a
 * valid SVID leaf. Returns its SPIFFE ID and public key; throws `SvidError` with `rule`.
 */
export function checkX509SvidLeaf(der: Uint8Array): { readonly id: SpiffeId; readonly publicKey: KeyObject } {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (err) {
    throw svidError('the certificate cannot be parsed', 'certificate-parse', err);
  }
  const { id, facts } = readLeaf(cert, svidError);
  return { id, publicKey: facts.publicKey };
}

/** Wraps a fixed SVID as a source, interchangeable with a rotating one. */
export function createStaticX509SvidSource(svid: X509Svid): X509SvidSource {
  return { getX509Svid: () => svid };
}

function decodeChain(chain: string | Uint8Array | readonly Uint8Array[]): X509Certificate[] {
  if (typeof chain === 'string') return decodeCertificatesPem(chain, decodeAsSvidError);
  if (chain instanceof Uint8Array) {
    return looksLikeDer(chain)
      ? decodeConcatenatedDer(chain, decodeAsSvidError)
      : decodeCertificatesPem(Buffer.from(chain).toString('latin1'), decodeAsSvidError);
  }
  if (!Array.isArray(chain)) throw new TypeError('chain must be PEM text, DER bytes or a list of DER buffers');
  if (chain.length === 0) throw svidError('no certificates given', 'no-certificates');
  return chain.map((der: unknown, i) => {
    if (!(der instanceof Uint8Array)) throw new TypeError('chain entries must be Uint8Array DER buffers');
    return decodeDer(der, i, decodeAsSvidError);
  });
}

function readPrivateKey(key: string | KeyObject): KeyObject {
  if (key instanceof KeyObject) {
    if (key.type !== 'private') throw new TypeError('privateKey must be a private KeyObject');
    return key;
  }
  if (typeof key !== 'string') throw new TypeError('privateKey must be PEM text or a KeyObject');
  try {
    return createPrivateKey(key);
  } catch (err) {
    throw svidError('the private key cannot be parsed', 'private-key', err);
  }
}

function factsOf(cert: X509Certificate, what: string, fail: Fail): CertificateFacts {
  let facts: CertificateFacts;
  try {
    facts = certificateFacts(cert);
  } catch (err) {
    throw fail(`${what} cannot be parsed`, 'certificate-parse', err);
  }
  // Two SAN (or key usage) extensions would let a signer smuggle a second identity past
  // "exactly one URI SAN"; RFC 5280 forbids repeats, so refuse them outright.
  if (facts.duplicateExtension !== undefined) {
    throw fail(`${what} repeats extension ${facts.duplicateExtension}`, 'duplicate-extension');
  }
  return facts;
}

/** The X509-SVID leaf rules (sections 2, 3.1, 4.1, 4.3 and 5.2). */
function readLeaf(cert: X509Certificate, fail: Fail): { id: SpiffeId; facts: CertificateFacts } {
  const facts = factsOf(cert, 'the leaf certificate', fail);
  if (facts.uris.length !== 1) {
    throw fail(`the leaf certificate must have exactly one URI SAN, it has ${facts.uris.length}`, 'uri-san-count');
  }
  let id: SpiffeId;
  try {
    id = parseSpiffeId(facts.uris[0]!);
  } catch (err) {
    if (!(err instanceof SpiffeIdError)) throw err;
    throw fail(`the leaf certificate's URI SAN is not a valid SPIFFE ID: ${err.message}`, 'spiffe-id', err);
  }
  if (id.path === '') {
    throw fail(`the leaf SPIFFE ID ${id} must have a path (trust domain IDs are for CAs)`, 'leaf-id-path');
  }
  if (facts.ca) throw fail(`the leaf certificate of ${id} must not be a CA`, 'leaf-is-ca');
  if (!hasKeyUsage(facts, KeyUsage.digitalSignature)) {
    throw fail(`the leaf certificate of ${id} must have key usage digitalSignature`, 'leaf-key-usage');
  }
  if (hasKeyUsage(facts, KeyUsage.keyCertSign)) {
    throw fail(`the leaf certificate of ${id} must not have key usage keyCertSign`, 'leaf-key-cert-sign');
  }
  if (hasKeyUsage(facts, KeyUsage.cRLSign)) {
    throw fail(`the leaf certificate of ${id} must not have key usage cRLSign`, 'leaf-crl-sign');
  }
  return { id, facts };
}

/** Section 3.2: certificates after the leaf are signing certificates. */
function checkSigningCertificate(cert: X509Certificate, index: number): void {
  const facts = factsOf(cert, `certificate ${index}`, svidError);
  const what = `certificate ${index} ${describeSubject(cert)}`;
  if (!facts.ca) throw svidError(`${what} is not a CA`, 'intermediate-not-ca');
  if (!hasKeyUsage(facts, KeyUsage.keyCertSign)) {
    throw svidError(`${what} lacks key usage keyCertSign`, 'intermediate-key-usage');
  }
}

interface PathNode {
  readonly cert: X509Certificate;
  readonly parent: PathNode | undefined;
  /** Certificates from the leaf up to and including this one. */
  readonly length: number;
}

interface Failure {
  readonly message: string;
  readonly rule: X509SvidRule;
}

/**
 * Verifies a peer's X509-SVID chain (leaf first; intermediates in any order; the root may be
 * included) against the bundle of the leaf's own trust domain: the leaf rules of
 * `parseX509Svid`, then a signature path from the leaf through the given intermediates to an
 * authority of that bundle, with every certificate on it valid at `now`, every issuer a CA
 * with keyCertSign, pathLenConstraint honoured, no unhandled critical extension, and at most
 * `MAX_X509_SVID_PATH_LENGTH` certificates. Throws `SvidUntrustedError` with `rule`.
 */
export function verifyX509Svid(
  certificates: readonly X509Certificate[],
  bundles: X509BundleSource,
  options: VerifyX509SvidOptions,
): VerifyX509SvidResult {
  if (!Array.isArray(certificates)) throw new TypeError('certificates must be an array');
  if (typeof bundles?.getX509BundleForTrustDomain !== 'function') {
    throw new TypeError('bundles must be an X509BundleSource');
  }
  const now = options?.now;
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new TypeError('options.now must be a valid Date');
  for (const cert of certificates) {
    if (!(cert instanceof X509Certificate)) {
      throw new TypeError('certificates must be node:crypto X509Certificate objects');
    }
  }
  const leaf = certificates[0];
  if (leaf === undefined) throw untrusted('the peer presented no certificates', 'no-certificates');
  if (certificates.length > MAX_X509_SVID_PATH_LENGTH) {
    throw untrusted(
      `the peer presented ${certificates.length} certificates, at most ${MAX_X509_SVID_PATH_LENGTH} are accepted`,
      'chain-too-long',
    );
  }

  const { id, facts } = readLeaf(leaf, untrusted);
  const bundle = bundles.getX509BundleForTrustDomain(id.trustDomain);
  if (bundle === undefined) {
    throw untrusted(`no bundle for trust domain ${id.trustDomain.name} (peer ${id})`, 'no-bundle');
  }
  if (!bundle.trustDomain.equals(id.trustDomain)) {
    // A source that answers with another domain's roots would let that domain mint our IDs.
    throw untrusted(
      `the bundle source returned the bundle of ${bundle.trustDomain.name} for ${id.trustDomain.name}`,
      'bundle-mismatch',
    );
  }
  const leafWhat = `the leaf certificate of ${id}`;
  const leafFailure = checkValidity(facts, leafWhat, now) ?? checkCritical(facts, leafWhat);
  if (leafFailure !== undefined) throw untrusted(leafFailure.message, leafFailure.rule);

  const path = buildPath(leaf, certificates.slice(1), bundle, now);
  if ('rule' in path) throw untrusted(`${path.message} (peer ${id})`, path.rule);
  return Object.freeze({ id, verifiedChain: Object.freeze(path) });
}

/**
 * Breadth-first search from the leaf, so every intermediate is expanded once at its shortest
 * distance (best for pathLenConstraint too) and hostile chains cost at most n^2 cheap name
 * comparisons. Returns the path, or the first specific reason a candidate issuer was refused.
 */
function buildPath(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  bundle: X509Bundle,
  now: Date,
): X509Certificate[] | Failure {
  let failure: Failure | undefined;
  // Roots the peer sent along are matched as bundle authorities, not as intermediates.
  const candidates = intermediates.filter((cert) => !bundle.hasAuthority(cert));
  const expanded = new Set<X509Certificate>([leaf]);
  const queue: PathNode[] = [{ cert: leaf, parent: undefined, length: 1 }];
  for (let head = 0; head < queue.length; head++) {
    const node = queue[head]!;
    for (const authority of bundle.authorities) {
      if (!signedBy(node.cert, authority)) continue;
      const refused = refuseIssuer(authority, node, now, true);
      if (refused !== undefined) {
        failure ??= refused;
        continue;
      }
      return chainOf(node, authority);
    }
    for (const candidate of candidates) {
      if (expanded.has(candidate)) continue;
      if (!signedBy(node.cert, candidate)) continue;
      const refused = refuseIssuer(candidate, node, now, false);
      if (refused !== undefined) {
        failure ??= refused;
        continue;
      }
      // The intermediate still needs an issuer above it, hence + 2.
      if (node.length + 2 > MAX_X509_SVID_PATH_LENGTH) {
        failure ??= { message: `the path exceeds ${MAX_X509_SVID_PATH_LENGTH} certificates`, rule: 'path-too-long' };
        continue;
      }
      expanded.add(candidate);
      queue.push({ cert: candidate, parent: node, length: node.length + 1 });
    }
  }
  return (
    failure ?? {
      message: `no chain of signatures leads to an authority of trust domain ${bundle.trustDomain.name}`,
      rule: 'no-path',
    }
  );
}

/** Cheap name match first; the signature check is the expensive part. */
function signedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  if (child.issuer !== issuer.subject && !child.checkIssued(issuer)) return false;
  let publicKey: KeyObject;
  try {
    publicKey = certificateFacts(issuer).publicKey;
  } catch {
    return false;
  }
  try {
    return child.verify(publicKey);
  } catch {
    // Mismatched key types (an RSA signature against an EC key) throw rather than return false.
    return false;
  }
}

/** Why `issuer`, whose key signed `node.cert`, cannot be its issuer on this path. */
function refuseIssuer(issuer: X509Certificate, node: PathNode, now: Date, isAuthority: boolean): Failure | undefined {
  const what = `${isAuthority ? 'the authority' : 'the intermediate'} ${describeSubject(issuer)}`;
  let facts: CertificateFacts;
  try {
    facts = certificateFacts(issuer);
  } catch {
    return { message: `${what} cannot be parsed`, rule: 'certificate-parse' };
  }
  if (facts.duplicateExtension !== undefined) {
    return { message: `${what} repeats extension ${facts.duplicateExtension}`, rule: 'duplicate-extension' };
  }
  if (!facts.ca) return { message: `${what} signed a certificate but is not a CA`, rule: 'intermediate-not-ca' };
  // Bundle authorities without a key usage extension are accepted (checked at bundle
  // construction); intermediates must carry keyCertSign per the X509-SVID standard.
  const keyUsageOk = isAuthority && facts.keyUsage === undefined ? true : hasKeyUsage(facts, KeyUsage.keyCertSign);
  if (!keyUsageOk) {
    return { message: `${what} lacks key usage keyCertSign`, rule: 'intermediate-key-usage' };
  }
  // Number of intermediates between this issuer and the leaf.
  const below = node.length - 1;
  if (facts.pathLength !== undefined && below > facts.pathLength) {
    return {
      message: `${what} allows ${facts.pathLength} intermediates below it, the path has ${below}`,
      rule: 'path-length',
    };
  }
  const invalid = checkValidity(facts, what, now) ?? checkCritical(facts, what);
  if (invalid !== undefined) return invalid;
  // Last: OpenSSL's own issuer check (name and authority key identifier) for what the
  // string comparison in signedBy() may have glossed over.
  if (!node.cert.checkIssued(issuer)) {
    return { message: `${what} does not match the issuer name or key identifier of its child`, rule: 'no-path' };
  }
  return undefined;
}

function checkValidity(facts: CertificateFacts, what: string, now: Date): Failure | undefined {
  const t = now.getTime();
  if (t < facts.notBefore.getTime()) {
    return { message: `${what} is not valid before ${facts.notBefore.toISOString()}`, rule: 'not-yet-valid' };
  }
  if (t > facts.notAfter.getTime()) {
    return { message: `${what} expired at ${facts.notAfter.toISOString()}`, rule: 'expired' };
  }
  return undefined;
}

function checkCritical(facts: CertificateFacts, what: string): Failure | undefined {
  const oid = facts.unhandledCritical[0];
  if (oid === undefined) return undefined;
  return {
    message: `${what} has critical extension ${oid}, which is not supported`,
    rule: 'unhandled-critical-extension',
  };
}

function chainOf(node: PathNode, anchor: X509Certificate): X509Certificate[] {
  // Parent links point from the issuer side down to the leaf; the result is leaf first.
  const chain: X509Certificate[] = [anchor];
  for (let n: PathNode | undefined = node; n !== undefined; n = n.parent) chain.push(n.cert);
  return chain.reverse();
}

/** One-line subject for messages; node:crypto separates RDNs with newlines. */
function describeSubject(cert: X509Certificate): string {
  const subject = cert.subject as string | undefined;
  return subject === undefined || subject === '' ? '(empty subject)' : JSON.stringify(subject.replace(/\n/g, ', '));
}
