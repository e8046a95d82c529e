import { createHash } from 'node:crypto';
import { OID } from './algorithms.js';
import { bytesOf, contentOf, decodeOid, DerError, expectElement, readBitStringBytes, readChildren, TAG } from './der.js';

/** The raw pieces of a certificate that issuance and CA validation need, read without copying. */
export interface CertificateFields {
  readonly tbs: Uint8Array;
  readonly issuerName: Uint8Array;
  readonly subjectName: Uint8Array;
  readonly spki: Uint8Array;
  readonly extensions: ReadonlyMap<string, { readonly critical: boolean; readonly value: Uint8Array }>;
}

export function readCertificateFields(der: Uint8Array): CertificateFields {
  const cert = expectElement(der, 0, TAG.SEQUENCE);
  if (cert.end !== der.length) throw new DerError('trailing bytes after certificate');
  const [tbsEl] = readChildren(der, cert);
  if (tbsEl?.tag !== TAG.SEQUENCE) throw new DerError('malformed certificate');
  const parts = readChildren(der, tbsEl);
  let i = parts[0]?.tag === 0xa0 ? 1 : 0;
  i += 2; // serial, signature algorithm
  const issuer = parts[i++];
  i++; // validity
  const subject = parts[i++];
  const spki = parts[i++];
  if (!issuer || !subject || !spki) throw new DerError('truncated TBSCertificate');
  const extensions = new Map<string, { critical: boolean; value: Uint8Array }>();
  const extEl = parts.slice(i).find((p) => p.tag === 0xa3);
  if (extEl) {
    const seq = expectElement(der, extEl.contentStart, TAG.SEQUENCE, extEl.end);
    for (const ext of readChildren(der, seq)) {
      const fields = readChildren(der, ext);
      const oidEl = fields[0];
      const valueEl = fields[fields.length - 1];
      if (oidEl?.tag !== TAG.OID || valueEl?.tag !== TAG.OCTET_STRING) throw new DerError('malformed extension');
      const critical = fields.length === 3 && fields[1]!.tag === TAG.BOOLEAN && der[fields[1]!.contentStart] !== 0;
      extensions.set(decodeOid(contentOf(der, oidEl)), { critical, value: contentOf(der, valueEl) });
    }
  }
  return {
    tbs: bytesOf(der, tbsEl),
    issuerName: bytesOf(der, issuer),
    subjectName: bytesOf(der, subject),
    spki: bytesOf(der, spki),
    extensions,
  };
}

/** Key usage flags by RFC 5280 name. */
export interface KeyUsage {
  readonly digitalSignature: boolean;
  readonly keyEncipherment: boolean;
  readonly keyCertSign: boolean;
  readonly cRLSign: boolean;
}

export function readKeyUsage(fields: CertificateFields): KeyUsage | undefined {
  const ext = fields.extensions.get(OID.keyUsage);
  if (!ext) return undefined;
  const bits = expectElement(ext.value, 0, TAG.BIT_STRING);
  const bytes = contentOf(ext.value, bits).subarray(1);
  const bit = (n: number): boolean => ((bytes[n >> 3] ?? 0) & (0x80 >> (n & 7))) !== 0;
  return { digitalSignature: bit(0), keyEncipherment: bit(2), keyCertSign: bit(5), cRLSign: bit(6) };
}

/** The subjectKeyIdentifier, or the RFC 5280 method-1 key id (SHA-1 of the key bits) when absent. */
export function readSubjectKeyId(fields: CertificateFields): Uint8Array {
  const ext = fields.extensions.get(OID.subjectKeyIdentifier);
  if (ext) return contentOf(ext.value, expectElement(ext.value, 0, TAG.OCTET_STRING));
  return computeKeyId(fields.spki);
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 over the subjectPublicKey BIT STRING's value. */
export function computeKeyId(spki: Uint8Array): Uint8Array {
  const seq = expectElement(spki, 0, TAG.SEQUENCE);
  const [, keyBits] = readChildren(spki, seq);
  if (!keyBits) throw new DerError('malformed SubjectPublicKeyInfo');
  return new Uint8Array(createHash('sha1').update(readBitStringBytes(spki, keyBits)).digest());
}

/** basicConstraints cA, false when the extension is absent (RFC 5280 4.2.1.9). */
export function readIsCa(fields: CertificateFields): boolean {
  const ext = fields.extensions.get(OID.basicConstraints);
  if (!ext) return false;
  const seq = expectElement(ext.value, 0, TAG.SEQUENCE);
  const [first] = readChildren(ext.value, seq);
  return first?.tag === TAG.BOOLEAN && ext.value[first.contentStart] !== 0;
}
