import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate } from 'node:crypto';
import { describeKey } from './algorithms.js';
import { parseCsr, verifyCsrSignature } from './csr.js';
import { decodePem, type PemBlock } from './pem.js';

/** A certificate or CSR described for people (`meshca inspect`) and scripts (`--json`). */
export interface CertificateDescription {
  readonly type: 'certificate';
  readonly role: 'x509-svid' | 'root-ca' | 'intermediate-ca' | 'certificate';
  readonly spiffeIds: readonly string[];
  readonly subject: string;
  readonly issuer: string;
  readonly serial: string;
  readonly notBefore: string;
  readonly notAfter: string;
  /** Seconds until notAfter at the time of description; negative when expired. */
  readonly secondsLeft: number;
  readonly key: string;
  readonly signatureAlgorithm: string;
  readonly extensions: readonly { readonly name: string; readonly critical: boolean; readonly value: string }[];
  readonly sha256Fingerprint: string;
  readonly sha1Fingerprint: string;
}

export interface CsrDescription {
  readonly type: 'csr';
  readonly subject: string;
  readonly key: string;
  readonly signatureAlgorithm: string;
  readonly signatureValid: boolean;
  readonly requestedSans: readonly string[];
}

export type Description = CertificateDescription | CsrDescription;

const KEY_USAGE_NAMES: readonly [number, string][] = [
  [x509.KeyUsageFlags.digitalSignature, 'digitalSignature'],
  [x509.KeyUsageFlags.nonRepudiation, 'nonRepudiation'],
  [x509.KeyUsageFlags.keyEncipherment, 'keyEncipherment'],
  [x509.KeyUsageFlags.dataEncipherment, 'dataEncipherment'],
  [x509.KeyUsageFlags.keyAgreement, 'keyAgreement'],
  [x509.KeyUsageFlags.keyCertSign, 'keyCertSign'],
  [x509.KeyUsageFlags.cRLSign, 'cRLSign'],
];

const EKU_NAMES: Readonly<Record<string, string>> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
  '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection',
  '1.3.6.1.5.5.7.3.8': 'timeStamping',
  '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
};

const colonHex = (buf: ArrayBuffer | Uint8Array | string): string =>
  (typeof buf === 'string' ? buf : Buffer.from(buf instanceof Uint8Array ? buf : new Uint8Array(buf)).toString('hex'))
    .toUpperCase()
    .replace(/(..)(?!$)/g, '$1:');

function describeExtension(ext: x509.Extension): { name: string; critical: boolean; value: string } {
  const critical = ext.critical;
  if (ext instanceof x509.BasicConstraintsExtension) {
    const len = ext.pathLength === undefined ? '' : `, pathlen:${ext.pathLength}`;
    return { name: 'Basic Constraints', critical, value: `CA:${ext.ca ? 'true' : 'false'}${len}` };
  }
  if (ext instanceof x509.KeyUsagesExtension) {
    const names = KEY_USAGE_NAMES.filter(([flag]) => (ext.usages & flag) !== 0).map(([, n]) => n);
    return { name: 'Key Usage', critical, value: names.join(', ') };
  }
  if (ext instanceof x509.ExtendedKeyUsageExtension) {
    return { name: 'Extended Key Usage', critical, value: ext.usages.map((u) => EKU_NAMES[String(u)] ?? String(u)).join(', ') };
  }
  if (ext instanceof x509.SubjectAlternativeNameExtension) {
    const names = ext.names.items.map((n) => `${n.type === 'url' ? 'URI' : n.type.toUpperCase()}:${n.value}`);
    return { name: 'Subject Alternative Name', critical, value: names.join(', ') };
  }
  if (ext instanceof x509.AuthorityKeyIdentifierExtension) {
    return { name: 'Authority Key Identifier', critical, value: ext.keyId ? colonHex(ext.keyId) : '(issuer and serial)' };
  }
  if (ext instanceof x509.SubjectKeyIdentifierExtension) {
    return { name: 'Subject Key Identifier', critical, value: colonHex(ext.keyId) };
  }
  return { name: ext.type, critical, value: `${ext.value.byteLength} bytes` };
}

function describeCertificate(block: PemBlock, now: Date): CertificateDescription {
  const cert = new X509Certificate(block.der);
  const parsed = new x509.X509Certificate(block.der);
  const extensions = parsed.extensions.map(describeExtension);
  const san = parsed.getExtension(x509.SubjectAlternativeNameExtension);
  const spiffeIds = (san?.names.items ?? []).filter((n) => n.type === 'url' && n.value.startsWith('spiffe://')).map((n) => n.value);
  const selfSigned = cert.checkIssued(cert);
  const role = cert.ca ? (selfSigned ? 'root-ca' : 'intermediate-ca') : spiffeIds.length === 1 ? 'x509-svid' : 'certificate';
  const notAfter = new Date(cert.validTo);
  const signature = parsed.signatureAlgorithm as { name?: string; hash?: { name?: string } };
  return {
    type: 'certificate',
    role,
    spiffeIds,
    subject: parsed.subject || '',
    issuer: parsed.issuer,
    serial: colonHex(cert.serialNumber.toLowerCase().replace(/^(.)((..)*)$/, '0$1$2')),
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: notAfter.toISOString(),
    secondsLeft: Math.floor((notAfter.getTime() - now.getTime()) / 1000),
    key: describeKey(cert.publicKey),
    signatureAlgorithm: [signature.name, signature.hash?.name].filter(Boolean).join(' with '),
    extensions,
    sha256Fingerprint: cert.fingerprint256,
    sha1Fingerprint: cert.fingerprint,
  };
}

function describeRequest(block: PemBlock): CsrDescription {
  const csr = parseCsr(block.der);
  let signatureValid = true;
  try {
    verifyCsrSignature(csr);
  } catch {
    signatureValid = false;
  }
  const parsed = new x509.Pkcs10CertificateRequest(block.der);
  return {
    type: 'csr',
    subject: parsed.subject,
    key: csr.keyDescription,
    signatureAlgorithm: csr.signatureAlgorithm?.name ?? csr.signatureAlgorithmOid,
    signatureValid,
    requestedSans: csr.sans.map((s) => `${s.type === 'uri' ? 'URI' : s.type.toUpperCase()}:${s.value}`),
  };
}

/** Describes every certificate and CSR in a PEM text, in order. */
export function describePem(text: string, now: Date): Description[] {
  const out: Description[] = [];
  for (const block of decodePem(text)) {
    if (block.label === 'CERTIFICATE') out.push(describeCertificate(block, now));
    else if (block.label === 'CERTIFICATE REQUEST' || block.label === 'NEW CERTIFICATE REQUEST') out.push(describeRequest(block));
  }
  return out;
}
