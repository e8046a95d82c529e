import { createHash } from 'node:crypto';
import { OID } from './algorithms.js';
import {
  bytesOf,
  contentOf,
  decodeOid,
  DerError,
  expectElement,
  readBitStringBytes,
  readChildren,
  TAG,
} from './der.js';
import type { DerElement } from './der.js';

export interface CertificateExtension {
  readonly critical: boolean;
  readonly value: Uint8Array;
}

/** The raw pieces of a certificate that issuance and validation need, read without copying. */
export interface CertificateFields {
  readonly tbs: Uint8Array;
  readonly issuerName: Uint8Array;
  /** The encoded Validity SEQUENCE; decode it with `readValidity` (most callers never need it). */
  readonly validity: Uint8Array;
  readonly subjectName: Uint8Array;
  readonly spki: Uint8Array;
  /** By OID. If an OID repeats (see `duplicateExtension`), the last occurrence is kept. */
  readonly extensions: ReadonlyMap<string, CertificateExtension>;
  /** The first extension OID that appears twice (RFC 5280 4.2 forbids it), if any. */
  readonly duplicateExtension: string | undefined;
  /** OIDs of every extension marked critical, in certificate order. */
  readonly criticalExtensions: readonly string[];
}

// Context-specific constructed tags in TBSCertificate.
const TAG_VERSION = 0xa0;
const TAG_EXTENSIONS = 0xa3;

export function readCertificateFields(der: Uint8Array): CertificateFields {
  const cert = expectElement(der, 0, TAG.SEQUENCE);
  if (cert.end !== der.length) throw new DerError('trailing bytes after certificate');
  const [tbsEl] = readChildren(der, cert);
  if (tbsEl?.tag !== TAG.SEQUENCE) throw new DerError('malformed certificate');
  const parts = readChildren(der, tbsEl);
  let i = parts[0]?.tag === TAG_VERSION ? 1 : 0;
  i += 2; // serial, signature algorithm
  const issuer = parts[i++];
  const validity = parts[i++];
  const subject = parts[i++];
  const spki = parts[i++];
  if (!issuer || !validity || !subject || !spki) throw new DerError('truncated TBSCertificate');
  if (validity.tag !== TAG.SEQUENCE) throw new DerError('malformed validity');
  const extensions = new Map<string, CertificateExtension>();
  let duplicateExtension: string | undefined;
  const criticalExtensions: string[] = [];
  const extEl = parts.slice(i).find((p) => p.tag === TAG_EXTENSIONS);
  if (extEl) {
    const seq = expectElement(der, extEl.contentStart, TAG.SEQUENCE, extEl.end);
    if (seq.end !== extEl.end) throw new DerError('trailing bytes after extensions');
    for (const ext of readChildren(der, seq)) {
      if (ext.tag !== TAG.SEQUENCE) throw new DerError('malformed extension');
      const fields = readChildren(der, ext);
      const oidEl = fields[0];
      const valueEl = fields[fields.length - 1];
      if (fields.length < 2 || fields.length > 3 || oidEl?.tag !== TAG.OID || valueEl?.tag !== TAG.OCTET_STRING) {
        throw new DerError('malformed extension');
      }
      const critical = fields.length === 3 && readBoolean(der, fields[1]!);
      const oid = decodeOid(contentOf(der, oidEl));
      if (extensions.has(oid)) duplicateExtension ??= oid;
      if (critical) criticalExtensions.push(oid);
      extensions.set(oid, { critical, value: contentOf(der, valueEl) });
    }
  }
  return {
    tbs: bytesOf(der, tbsEl),
    issuerName: bytesOf(der, issuer),
    validity: bytesOf(der, validity),
    subjectName: bytesOf(der, subject),
    spki: bytesOf(der, spki),
    extensions,
    duplicateExtension,
    criticalExtensions,
  };
}

function readBoolean(buf: Uint8Array, el: DerElement): boolean {
  if (el.tag !== TAG.BOOLEAN || el.end - el.contentStart !== 1) throw new DerError('malformed BOOLEAN');
  return buf[el.contentStart] !== 0;
}

/** Key usage flags by RFC 5280 name. */
export interface KeyUsage {
  readonly digitalSignature: boolean;
  readonly keyEncipherment: boolean;
  readonly keyCertSign: boolean;
  readonly cRLSign: boolean;
}

export function readKeyUsage(fields: CertificateFields): KeyUsage | undefined {
  const flags = readKeyUsageFlags(fields);
  if (flags === undefined) return undefined;
  const has = (flag: number): boolean => (flags & flag) !== 0;
  return {
    digitalSignature: has(KEY_USAGE_FLAG.digitalSignature),
    keyEncipherment: has(KEY_USAGE_FLAG.keyEncipherment),
    keyCertSign: has(KEY_USAGE_FLAG.keyCertSign),
    cRLSign: has(KEY_USAGE_FLAG.cRLSign),
  };
}

/**
 * Key usage as a bit mask: RFC 5280 bit n is `1 << n`, so digitalSignature is 1 and decipherOnly
 * 256 (the same numbering as @peculiar/x509's KeyUsageFlags).
 */
export const KEY_USAGE_FLAG = {
  digitalSignature: 1 << 0,
  nonRepudiation: 1 << 1,
  keyEncipherment: 1 << 2,
  dataEncipherment: 1 << 3,
  keyAgreement: 1 << 4,
  keyCertSign: 1 << 5,
  cRLSign: 1 << 6,
  encipherOnly: 1 << 7,
  decipherOnly: 1 << 8,
} as const;

/** The key usage bits as a `KEY_USAGE_FLAG` mask, or undefined when the extension is absent. */
export function readKeyUsageFlags(fields: CertificateFields): number | undefined {
  const ext = fields.extensions.get(OID.keyUsage);
  if (!ext) return undefined;
  const bits = expectElement(ext.value, 0, TAG.BIT_STRING);
  if (bits.end !== ext.value.length || bits.end - bits.contentStart < 1) throw new DerError('malformed key usage');
  const bytes = contentOf(ext.value, bits).subarray(1);
  let flags = 0;
  // Only the nine named bits exist; anything past them is ignored, as every parser does.
  for (let n = 0; n < 9; n++) {
    if (((bytes[n >> 3] ?? 0) & (0x80 >> (n & 7))) !== 0) flags |= 1 << n;
  }
  return flags;
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

export interface BasicConstraints {
  /** cA; false when the extension is absent (RFC 5280 4.2.1.9). */
  readonly ca: boolean;
  /** pathLenConstraint, if present. */
  readonly pathLength: number | undefined;
}

export function readBasicConstraints(fields: CertificateFields): BasicConstraints {
  const ext = fields.extensions.get(OID.basicConstraints);
  if (!ext) return { ca: false, pathLength: undefined };
  const seq = expectElement(ext.value, 0, TAG.SEQUENCE);
  if (seq.end !== ext.value.length) throw new DerError('trailing bytes after basic constraints');
  const children = readChildren(ext.value, seq);
  let next = 0;
  let ca = false;
  if (children[next]?.tag === TAG.BOOLEAN) ca = readBoolean(ext.value, children[next++]!);
  let pathLength: number | undefined;
  if (children[next]?.tag === TAG.INTEGER) pathLength = readSmallUnsigned(ext.value, children[next++]!);
  if (next !== children.length) throw new DerError('malformed basic constraints');
  return { ca, pathLength };
}

/** basicConstraints cA, false when the extension is absent (RFC 5280 4.2.1.9). */
export function readIsCa(fields: CertificateFields): boolean {
  return readBasicConstraints(fields).ca;
}

/** A non-negative INTEGER small enough to be a count (pathLenConstraint); larger is an error. */
function readSmallUnsigned(buf: Uint8Array, el: DerElement): number {
  const length = el.end - el.contentStart;
  if (length < 1 || length > 4) throw new DerError('INTEGER out of range');
  const first = buf[el.contentStart]!;
  if ((first & 0x80) !== 0) throw new DerError('negative INTEGER');
  if (length > 1 && first === 0 && (buf[el.contentStart + 1]! & 0x80) === 0) throw new DerError('non-minimal INTEGER');
  let value = 0;
  for (let i = el.contentStart; i < el.end; i++) value = value * 256 + buf[i]!;
  return value;
}

const TAG_SAN_URI = 0x86; // [6] IMPLICIT IA5String
const CONTEXT_CLASS = 0x80;
const MAX_GENERAL_NAME_CHOICE = 8;

/**
 * Every uniformResourceIdentifier in subjectAltName, in order; `[]` when the extension is absent.
 * Bytes are mapped one to one onto char codes (IA5String is ASCII), so a non-ASCII byte shows
 * up as a character >= 128 for the caller's validation to reject rather than being decoded.
 */
export function readSubjectAltUris(fields: CertificateFields): string[] {
  const ext = fields.extensions.get(OID.subjectAltName);
  if (!ext) return [];
  const seq = expectElement(ext.value, 0, TAG.SEQUENCE);
  if (seq.end !== ext.value.length) throw new DerError('trailing bytes after subjectAltName');
  const uris: string[] = [];
  for (const name of readChildren(ext.value, seq)) {
    // GeneralName is a CHOICE of context-specific tags [0]..[8]; anything else is malformed.
    if ((name.tag & 0xc0) !== CONTEXT_CLASS || (name.tag & 0x1f) > MAX_GENERAL_NAME_CHOICE) {
      throw new DerError('malformed GeneralName');
    }
    if (name.tag === TAG_SAN_URI) uris.push(latin1(ext.value, name.contentStart, name.end));
  }
  return uris;
}

function latin1(buf: Uint8Array, start: number, end: number): string {
  let s = '';
  for (let i = start; i < end; i++) s += String.fromCharCode(buf[i]!);
  return s;
}

export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** Decodes the Validity: UTCTime or GeneralizedTime in the RFC 5280 4.1.2.5 form (Zulu, with seconds). */
export function readValidity(fields: CertificateFields): Validity {
  const buf = fields.validity;
  const seq = expectElement(buf, 0, TAG.SEQUENCE);
  const [notBefore, notAfter, extra] = readChildren(buf, seq);
  if (!notBefore || !notAfter || extra) throw new DerError('malformed validity');
  return { notBefore: readTime(buf, notBefore), notAfter: readTime(buf, notAfter) };
}

function readTime(buf: Uint8Array, el: DerElement): Date {
  const length = el.end - el.contentStart;
  let pos = el.contentStart;
  const digits = (count: number): number => {
    let value = 0;
    for (let end = pos + count; pos < end; pos++) {
      const c = buf[pos]! - 0x30;
      if (c < 0 || c > 9) throw new DerError('malformed time');
      value = value * 10 + c;
    }
    return value;
  };
  let year: number;
  if (el.tag === TAG.UTC_TIME && length === 13) {
    const yy = digits(2);
    year = yy >= 50 ? 1900 + yy : 2000 + yy; // RFC 5280 4.1.2.5.1
  } else if (el.tag === TAG.GENERALIZED_TIME && length === 15) {
    year = digits(4);
  } else {
    throw new DerError('unsupported time encoding');
  }
  const month = digits(2);
  const day = digits(2);
  const hour = digits(2);
  const minute = digits(2);
  const second = digits(2);
  if (buf[pos] !== 0x5a) throw new DerError('time is not in UTC (Z)');
  // setUTC* (unlike Date.UTC) keeps years 0-99 as given; both roll over (Feb 30 becomes Mar 2),
  // so a round trip catches out-of-range fields.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  if (
    month < 1 ||
    date.getUTCMonth() !== month - 1 ||
    date.getUTCDate() !== day ||
    date.getUTCHours() !== hour ||
    date.getUTCMinutes() !== minute ||
    date.getUTCSeconds() !== second
  ) {
    throw new DerError('time field out of range');
  }
  return date;
}
