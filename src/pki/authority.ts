import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createPrivateKey, createPublicKey, randomBytes, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';
import { CaInvalidError } from '../errors.js';
import { describeKey, keyKindOf, type KeyKind } from './algorithms.js';
import { readCertificateFields, readIsCa, readKeyUsage, readSubjectKeyId } from './certificate-fields.js';
import { exportPrivateKeyPem, generateKey } from './keys.js';
import { decodePem } from './pem.js';
import { createKeySigner, type Signer } from './signer.js';

/**
 * A signing authority: the CA certificate, its signer, the chain above it and the roots that
 * anchor it. Either a self-signed root (signing cert = root) or a plug-in intermediate.
 */
export interface Authority {
  readonly certificate: X509Certificate;
  readonly signer: Signer;
  /** Certificates between the signing certificate and the root, nearest first. */
  readonly intermediates: readonly X509Certificate[];
  /** Trust anchors (root-cert.pem). */
  readonly roots: readonly X509Certificate[];
  /** What follows a leaf in an issued chain: signing cert, intermediates, root; no repeats. */
  readonly issuerChain: readonly X509Certificate[];
  /** Raw subject Name of the signing certificate (the leaves' issuer). */
  readonly subjectName: Uint8Array;
  readonly subjectKeyId: Uint8Array;
  /** The earliest expiry along the issuer chain: no leaf may outlive it. */
  readonly notAfter: Date;
}

export interface AuthorityPem {
  readonly certPem: string;
  readonly keyPem: string;
  /** cert-chain.pem: may repeat the signing cert and root, as Istio's plug-in files often do. */
  readonly chainPem?: string;
  readonly rootPem: string;
}

function certsFromPem(pem: string, what: string): X509Certificate[] {
  let blocks;
  try {
    blocks = decodePem(pem);
  } catch (err) {
    throw new CaInvalidError(`${what} is not valid PEM`, { rule: 'pem', cause: err });
  }
  const certs: X509Certificate[] = [];
  for (const block of blocks) {
    if (block.label !== 'CERTIFICATE') continue;
    try {
      certs.push(new X509Certificate(block.der));
    } catch (err) {
      throw new CaInvalidError(`${what} holds a certificate that cannot be parsed`, { rule: 'pem', cause: err });
    }
  }
  return certs;
}

function parsePrivateKey(pem: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new CaInvalidError('CA key is not a readable PEM private key', { rule: 'key', cause: err });
  }
}

function describeCert(cert: X509Certificate): string {
  // Node reports an empty subject as undefined despite its typings.
  const subject = (cert.subject as string | undefined)?.replace(/\n/g, ', ');
  return `"${subject || '(empty subject)'}" (serial ${cert.serialNumber})`;
}

function checkValidAt(cert: X509Certificate, now: Date, what: string): void {
  const notBefore = new Date(cert.validFrom);
  const notAfter = new Date(cert.validTo);
  if (now.getTime() > notAfter.getTime()) {
    throw new CaInvalidError(`${what} ${describeCert(cert)} expired at ${notAfter.toISOString()}`, { rule: 'expired' });
  }
  if (now.getTime() < notBefore.getTime()) {
    throw new CaInvalidError(`${what} ${describeCert(cert)} is not valid until ${notBefore.toISOString()}`, {
      rule: 'not-yet-valid',
    });
  }
}

function checkIsCa(cert: X509Certificate, what: string): void {
  // Read the extensions ourselves: Node's `ca` folds key usage in and cannot say which is wrong.
  const fields = readCertificateFields(cert.raw);
  if (!readIsCa(fields)) throw new CaInvalidError(`${what} ${describeCert(cert)} is not a CA (basicConstraints CA:false)`, { rule: 'not-ca' });
  const usage = readKeyUsage(fields);
  if (usage && !usage.keyCertSign) {
    throw new CaInvalidError(`${what} ${describeCert(cert)} lacks the keyCertSign key usage`, { rule: 'key-usage' });
  }
}

function signs(parent: X509Certificate, child: X509Certificate): boolean {
  return child.checkIssued(parent) && child.verify(parent.publicKey);
}

/**
 * Loads and validates CA material. Everything that would make issued SVIDs unverifiable is
 * refused here, at start-up, rather than discovered by clients later.
 */
export function loadAuthority(pem: AuthorityPem, now: Date): Authority {
  const [certificate, ...extraSigning] = certsFromPem(pem.certPem, 'ca-cert.pem');
  if (!certificate) throw new CaInvalidError('ca-cert.pem holds no certificate', { rule: 'missing' });
  if (extraSigning.length > 0) throw new CaInvalidError('ca-cert.pem must hold exactly one certificate', { rule: 'pem' });
  const roots = certsFromPem(pem.rootPem, 'root-cert.pem');
  if (roots.length === 0) throw new CaInvalidError('root-cert.pem holds no certificate', { rule: 'missing' });
  const privateKey = parsePrivateKey(pem.keyPem);
  const kind = keyKindOf(privateKey);
  if (kind === undefined) {
    throw new CaInvalidError(`CA key type ${describeKey(privateKey)} is not supported`, { rule: 'key-type' });
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new CaInvalidError(`ca-key.pem does not match the public key of ca-cert.pem ${describeCert(certificate)}`, {
      rule: 'key-mismatch',
    });
  }
  checkIsCa(certificate, 'CA certificate');
  checkValidAt(certificate, now, 'CA certificate');

  // Walk up from the signing certificate through cert-chain.pem to a root.
  const pool = (pem.chainPem ? certsFromPem(pem.chainPem, 'cert-chain.pem') : []).filter(
    (c) => c.fingerprint256 !== certificate.fingerprint256 && !roots.some((r) => r.fingerprint256 === c.fingerprint256),
  );
  const intermediates: X509Certificate[] = [];
  let current = certificate;
  let anchor: X509Certificate;
  for (let depth = 0; ; depth++) {
    const root = roots.find((r) => signs(r, current));
    if (root) {
      checkIsCa(root, 'root certificate');
      checkValidAt(root, now, 'root certificate');
      anchor = root;
      break;
    }
    if (depth > 8) throw new CaInvalidError('CA chain is too long', { rule: 'chain' });
    const next = pool.find((c) => !intermediates.includes(c) && signs(c, current));
    if (!next) {
      throw new CaInvalidError(
        `CA chain is broken: no certificate in cert-chain.pem or root-cert.pem signed ${describeCert(current)} (issuer "${(current.issuer as string | undefined)?.replace(/\n/g, ', ') ?? ''}")`,
        { rule: 'chain' },
      );
    }
    checkIsCa(next, 'intermediate certificate');
    checkValidAt(next, now, 'intermediate certificate');
    intermediates.push(next);
    current = next;
  }

  const fields = readCertificateFields(certificate.raw);
  const issuerChain = [certificate, ...intermediates];
  if (anchor.fingerprint256 !== certificate.fingerprint256) issuerChain.push(anchor);
  const notAfter = Math.min(...issuerChain.map((c) => new Date(c.validTo).getTime()));
  return Object.freeze({
    certificate,
    signer: createKeySigner(privateKey),
    intermediates: Object.freeze(intermediates),
    roots: Object.freeze(roots),
    issuerChain: Object.freeze(issuerChain),
    subjectName: fields.subjectName,
    subjectKeyId: readSubjectKeyId(fields),
    notAfter: new Date(notAfter),
  });
}

/** The root an authority chains to: the last certificate of its issuer chain (itself when self-signed). */
export function authorityAnchor(authority: Authority): X509Certificate {
  return authority.issuerChain[authority.issuerChain.length - 1]!;
}

/** True for a self-signed root signing directly, as `ca init` creates; false for a plug-in intermediate. */
export function isSelfSignedAuthority(authority: Authority): boolean {
  return authorityAnchor(authority).fingerprint256 === authority.certificate.fingerprint256;
}

// @peculiar/x509 is typed against the DOM's Crypto; Node's webcrypto is the same object at run time.
const webcryptoProvider = webcrypto as unknown as Parameters<typeof x509.SubjectKeyIdentifierExtension.create>[2];

type WebAlgorithm = { name: string } & Record<string, unknown>;

const WEBCRYPTO_ALGORITHMS: Record<KeyKind, { key: WebAlgorithm; sign: WebAlgorithm }> = {
  'ec-p256': { key: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } },
  'ec-p384': { key: { name: 'ECDSA', namedCurve: 'P-384' }, sign: { name: 'ECDSA', hash: 'SHA-384' } },
  'rsa-2048': { key: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } },
  'rsa-3072': { key: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } },
  'rsa-4096': { key: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } },
  ed25519: { key: { name: 'Ed25519' }, sign: { name: 'Ed25519' } },
};

export interface CreateRootOptions {
  readonly trustDomain: string;
  readonly keyKind?: KeyKind;
  readonly now: Date;
  /** Default 10 years, as Istio's self-signed root. */
  readonly validityDays?: number;
}

/**
 * Creates a self-signed mesh root: O=<trust domain>, critical CA:true, critical
 * keyCertSign+cRLSign, subjectKeyIdentifier. Built with @peculiar/x509: this runs once per root,
 * so the generic generator's cost does not matter here.
 */
export async function createSelfSignedRoot(options: CreateRootOptions): Promise<{ certPem: string; keyPem: string }> {
  const kind = options.keyKind ?? 'ec-p256';
  const { privateKey } = await generateKey(kind);
  const algs = WEBCRYPTO_ALGORITHMS[kind];
  const subtle = webcrypto.subtle;
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const keys = {
    privateKey: await subtle.importKey('pkcs8', pkcs8, algs.key, false, ['sign']),
    publicKey: await subtle.importKey('spki', spki, algs.key, true, ['verify']),
  };
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) || 0x01;
  const notBefore = new Date(options.now.getTime() - 60_000);
  const notAfter = new Date(options.now.getTime() + (options.validityDays ?? 3650) * 86_400_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial.toString('hex'),
      name: [{ O: [options.trustDomain] }],
      notBefore,
      notAfter,
      keys,
      signingAlgorithm: algs.sign,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcryptoProvider),
      ],
    },
    webcryptoProvider,
  );
  return { certPem: cert.toString('pem') + '\n', keyPem: exportPrivateKeyPem(privateKey) };
}
