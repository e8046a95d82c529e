import { createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { CsrError } from '../errors.js';
import { describeKey, keyKindOf, OID, SIGNATURE_ALGORITHMS, signatureAlgorithmFor, type KeyKind, type SignatureAlgorithm } from './algorithms.js';
import {
  bytesOf,
  contentOf,
  decodeOid,
  DerError,
  encodeOctetString,
  encodeOid,
  encodeSequence,
  encodeSmallInteger,
  encodeTlv,
  encodeBitString,
  expectElement,
  readBitStringBytes,
  readChildren,
  readElement,
  TAG,
  type DerElement,
} from './der.js';
import { decodePem, encodePem, PemError } from './pem.js';
import { NonCanonicalKeyError, readPublicKeyInfo, type PublicKeyInfo } from './spki.js';

/** Default cap on a CSR's encoded size; a P-256 CSR with one URI SAN is ~300 bytes. */
export const DEFAULT_MAX_CSR_BYTES = 16 * 1024;

/** A subject alternative name as requested, for identity checks and error messages. */
export interface RequestedSan {
  readonly type: 'uri' | 'dns' | 'ip' | 'email' | 'other';
  readonly value: string;
}

export interface Csr {
  readonly der: Uint8Array;
  /** The signed CertificationRequestInfo, exactly as encoded. */
  readonly info: Uint8Array;
  /** The SubjectPublicKeyInfo, exactly as encoded; copied verbatim into the certificate. */
  readonly spki: Uint8Array;
  readonly publicKey: KeyObject;
  readonly keyDescription: string;
  /** The key kind when meshca accepts the key; undefined for unsupported keys. */
  readonly keyKind: KeyKind | undefined;
  readonly signatureAlgorithm: SignatureAlgorithm | undefined;
  readonly signatureAlgorithmOid: string;
  readonly signature: Uint8Array;
  readonly sans: readonly RequestedSan[];
}

export interface ParseCsrOptions {
  readonly maxBytes?: number;
}

const CSR_LABELS = new Set(['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']);

function toDer(input: string | Uint8Array, maxBytes: number): Uint8Array {
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) {
    throw new TypeError('parseCsr takes a PEM string or DER bytes');
  }
  const size = typeof input === 'string' ? Buffer.byteLength(input) : input.length;
  if (size > maxBytes * 2) throw new CsrError(`CSR is too large (${size} bytes; limit ${maxBytes})`, { rule: 'size' });
  let der: Uint8Array;
  if (typeof input === 'string') {
    let blocks;
    try {
      blocks = decodePem(input);
    } catch (err) {
      throw new CsrError(`CSR PEM is malformed: ${(err as PemError).message}`, { rule: 'pem', cause: err });
    }
    if (blocks.length !== 1) {
      throw new CsrError(`expected exactly one PEM CERTIFICATE REQUEST block, found ${blocks.length}`, { rule: 'pem' });
    }
    if (!CSR_LABELS.has(blocks[0]!.label)) {
      throw new CsrError(`expected a CERTIFICATE REQUEST PEM block, found ${blocks[0]!.label}`, { rule: 'pem' });
    }
    der = blocks[0]!.der;
  } else {
    der = input;
  }
  if (der.length > maxBytes) throw new CsrError(`CSR is too large (${der.length} bytes; limit ${maxBytes})`, { rule: 'size' });
  return der;
}

function sanFromGeneralName(buf: Uint8Array, el: DerElement): RequestedSan {
  const text = (): string => Buffer.from(contentOf(buf, el)).toString('latin1');
  switch (el.tag) {
    case 0x86:
      return { type: 'uri', value: text() };
    case 0x82:
      return { type: 'dns', value: text() };
    case 0x81:
      return { type: 'email', value: text() };
    case 0x87:
      return { type: 'ip', value: Buffer.from(contentOf(buf, el)).toString('hex') };
    default:
      return { type: 'other', value: `[${el.tag & 0x1f}]` };
  }
}

function readRequestedSans(buf: Uint8Array, attributes: DerElement): RequestedSan[] {
  const sans: RequestedSan[] = [];
  for (const attribute of readChildren(buf, attributes)) {
    const [typeEl, valuesEl] = readChildren(buf, attribute);
    if (typeEl?.tag !== TAG.OID || valuesEl?.tag !== TAG.SET) throw new DerError('malformed attribute');
    if (decodeOid(contentOf(buf, typeEl)) !== OID.extensionRequest) continue;
    for (const extensions of readChildren(buf, valuesEl)) {
      for (const extension of readChildren(buf, extensions)) {
        const parts = readChildren(buf, extension);
        const oidEl = parts[0];
        const valueEl = parts[parts.length - 1];
        if (oidEl?.tag !== TAG.OID || valueEl?.tag !== TAG.OCTET_STRING) throw new DerError('malformed extension');
        if (decodeOid(contentOf(buf, oidEl)) !== OID.subjectAltName) continue;
        const names = expectElement(buf, valueEl.contentStart, TAG.SEQUENCE, valueEl.end);
        if (names.end !== valueEl.end) throw new DerError('trailing bytes in subjectAltName');
        for (const name of readChildren(buf, names)) sans.push(sanFromGeneralName(buf, name));
      }
    }
  }
  return sans;
}

/**
 * Parses a PKCS#10 certification request (RFC 2986). Structure only: call `verifyCsrSignature`
 * before trusting anything in it, and `checkCsrKey` for key policy.
 */
export function parseCsr(input: string | Uint8Array, options: ParseCsrOptions = {}): Csr {
  const der = toDer(input, options.maxBytes ?? DEFAULT_MAX_CSR_BYTES);
  try {
    const outer = expectElement(der, 0, TAG.SEQUENCE);
    if (outer.end !== der.length) throw new DerError('trailing bytes after CSR');
    const [infoEl, algEl, sigEl, ...extra] = readChildren(der, outer);
    if (!infoEl || !algEl || !sigEl || extra.length > 0) throw new DerError('CSR must have exactly three parts');
    if (infoEl.tag !== TAG.SEQUENCE || algEl.tag !== TAG.SEQUENCE) throw new DerError('malformed CSR');
    const [versionEl, subjectEl, spkiEl, attributesEl] = readChildren(der, infoEl);
    if (versionEl?.tag !== TAG.INTEGER || subjectEl?.tag !== TAG.SEQUENCE || spkiEl?.tag !== TAG.SEQUENCE) {
      throw new DerError('malformed CertificationRequestInfo');
    }
    const version = contentOf(der, versionEl);
    if (version.length !== 1 || version[0] !== 0) throw new DerError('CSR version must be 0 (v1)');
    if (attributesEl !== undefined && attributesEl.tag !== 0xa0) throw new DerError('malformed CSR attributes');
    const sans = attributesEl ? readRequestedSans(der, attributesEl) : [];
    const algOidEl = readElement(der, algEl.contentStart, algEl.end);
    if (algOidEl.tag !== TAG.OID) throw new DerError('malformed signature algorithm');
    const signatureAlgorithmOid = decodeOid(contentOf(der, algOidEl));
    const signature = readBitStringBytes(der, sigEl);
    const spki = bytesOf(der, spkiEl);
    let key: PublicKeyInfo;
    try {
      key = readPublicKeyInfo(spki);
    } catch (err) {
      if (err instanceof NonCanonicalKeyError) throw new CsrError(`CSR public key refused: ${err.message}`, { rule: 'public-key-encoding', cause: err });
      throw new CsrError('CSR public key cannot be decoded', { rule: 'public-key', cause: err });
    }
    return {
      der,
      info: bytesOf(der, infoEl),
      spki,
      publicKey: key.publicKey,
      keyDescription: key.description,
      keyKind: key.kind,
      signatureAlgorithm: SIGNATURE_ALGORITHMS[signatureAlgorithmOid],
      signatureAlgorithmOid,
      signature,
      sans,
    };
  } catch (err) {
    if (err instanceof DerError) throw new CsrError(`CSR is not valid DER: ${err.message}`, { rule: 'der', cause: err });
    throw err;
  }
}

/** Keys meshca signs for: P-256, P-384, RSA 2048/3072/4096 and Ed25519. */
export function checkCsrKey(csr: Csr): KeyKind {
  if (csr.keyKind === undefined) {
    throw new CsrError(
      `CSR key ${csr.keyDescription} is not accepted (use EC P-256/P-384, RSA 2048/3072/4096 or Ed25519)`,
      { rule: 'weak-key' },
    );
  }
  return csr.keyKind;
}

/** Proof of possession: the CSR must be signed by the key it carries. */
export function verifyCsrSignature(csr: Csr): void {
  const alg = csr.signatureAlgorithm;
  if (alg === undefined) {
    throw new CsrError(`CSR signature algorithm ${csr.signatureAlgorithmOid} is not supported`, { rule: 'signature-algorithm' });
  }
  const keyType = csr.publicKey.asymmetricKeyType;
  const compatible = alg.hash === null ? keyType === 'ed25519' : alg.name.startsWith('ecdsa') ? keyType === 'ec' : keyType === 'rsa';
  if (!compatible) {
    throw new CsrError(`CSR signature algorithm ${alg.name} does not fit its ${csr.keyDescription} key`, {
      rule: 'signature-algorithm',
    });
  }
  let ok = false;
  try {
    ok = cryptoVerify(alg.hash, csr.info, { key: csr.publicKey, dsaEncoding: 'der' }, csr.signature);
  } catch (err) {
    throw new CsrError('CSR signature does not verify', { rule: 'signature', cause: err });
  }
  if (!ok) throw new CsrError('CSR signature does not verify', { rule: 'signature' });
}

export interface CreateCsrOptions {
  /** URI SANs to request, usually the workload's SPIFFE ID. The CA decides the identity. */
  readonly uris?: readonly string[];
}

/** Builds a PKCS#10 CSR with an empty subject and the requested URI SANs, signed by `privateKey`. */
export function createCsr(privateKey: KeyObject, options: CreateCsrOptions = {}): { der: Uint8Array; pem: string } {
  const kind = keyKindOf(privateKey);
  if (kind === undefined) throw new TypeError(`unsupported key type ${describeKey(privateKey)}`);
  const alg = signatureAlgorithmFor(kind);
  const spki = new Uint8Array(privateKey.type === 'private' ? exportSpki(privateKey) : privateKey.export({ format: 'der', type: 'spki' }));
  const uris = options.uris ?? [];
  const attributes =
    uris.length === 0
      ? encodeTlv(0xa0)
      : encodeTlv(
          0xa0,
          encodeSequence(
            encodeOid(OID.extensionRequest),
            encodeTlv(
              TAG.SET,
              encodeSequence(
                encodeSequence(
                  encodeOid(OID.subjectAltName),
                  encodeOctetString(encodeSequence(...uris.map((u) => encodeTlv(0x86, Buffer.from(u, 'latin1'))))),
                ),
              ),
            ),
          ),
        );
  const info = encodeSequence(encodeSmallInteger(0), encodeSequence(), spki, attributes);
  const signature = cryptoSign(alg.hash, info, { key: privateKey, dsaEncoding: 'der' });
  const der = encodeSequence(info, alg.identifier, encodeBitString(signature));
  return { der, pem: encodePem('CERTIFICATE REQUEST', der) };
}

function exportSpki(privateKey: KeyObject): Buffer {
  return createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
}
