import { createPublicKey, type KeyObject } from 'node:crypto';
import { describeKey, OID, type KeyKind } from './algorithms.js';
import { contentOf, decodeOid, DerError, expectElement, readBitStringBytes, readChildren, readElement, TAG } from './der.js';

export interface PublicKeyInfo {
  /** The key kind when meshca accepts the key; undefined otherwise. */
  readonly kind: KeyKind | undefined;
  /** Human description for error messages, e.g. "EC secp256k1" or "RSA 1024 bits". */
  readonly description: string;
  readonly publicKey: KeyObject;
}

const CURVES: Readonly<Record<string, { kind: KeyKind; crv: string; size: number }>> = {
  [OID.prime256v1]: { kind: 'ec-p256', crv: 'P-256', size: 32 },
  [OID.secp384r1]: { kind: 'ec-p384', crv: 'P-384', size: 48 },
};

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

function fromSpkiDer(spki: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.from(spki.buffer, spki.byteOffset, spki.byteLength), format: 'der', type: 'spki' });
}

/**
 * Classifies a SubjectPublicKeyInfo from its DER and makes the KeyObject. Reading the algorithm
 * ourselves avoids asking OpenSSL for key details, and an EC key imported from its JWK
 * coordinates costs about half of an SPKI decode (shared/perf-baselines.md): this runs once per
 * CSR on the issuance hot path.
 */
export function readPublicKeyInfo(spki: Uint8Array): PublicKeyInfo {
  const seq = expectElement(spki, 0, TAG.SEQUENCE);
  if (seq.end !== spki.length) throw new DerError('trailing bytes after SubjectPublicKeyInfo');
  const [algEl, keyEl, ...extra] = readChildren(spki, seq);
  if (algEl?.tag !== TAG.SEQUENCE || keyEl?.tag !== TAG.BIT_STRING || extra.length > 0) {
    throw new DerError('malformed SubjectPublicKeyInfo');
  }
  const [oidEl, paramsEl] = readChildren(spki, algEl);
  if (oidEl?.tag !== TAG.OID) throw new DerError('malformed key algorithm');
  const algorithm = decodeOid(contentOf(spki, oidEl));
  const keyBits = readBitStringBytes(spki, keyEl);

  if (algorithm === OID.ecPublicKey) {
    const curveOid = paramsEl?.tag === TAG.OID ? decodeOid(contentOf(spki, paramsEl)) : 'explicit parameters';
    const curve = CURVES[curveOid];
    if (curve && keyBits.length === 1 + 2 * curve.size && keyBits[0] === 0x04) {
      const x = base64url(keyBits.subarray(1, 1 + curve.size));
      const y = base64url(keyBits.subarray(1 + curve.size));
      // JWK import checks the point is on the curve, as SPKI import does.
      return { kind: curve.kind, description: `EC ${curve.crv}`, publicKey: createPublicKey({ key: { kty: 'EC', crv: curve.crv, x, y }, format: 'jwk' }) };
    }
    const publicKey = fromSpkiDer(spki);
    return { kind: curve?.kind, description: describeKey(publicKey), publicKey };
  }
  if (algorithm === OID.rsaEncryption) {
    const publicKey = fromSpkiDer(spki);
    const rsaKey = expectElement(keyBits, 0, TAG.SEQUENCE);
    const modulus = readElement(keyBits, rsaKey.contentStart, rsaKey.end);
    let bytes = modulus.end - modulus.contentStart;
    if (keyBits[modulus.contentStart] === 0) bytes -= 1;
    const bits = bytes * 8;
    const kind: KeyKind | undefined = bits === 2048 ? 'rsa-2048' : bits === 3072 ? 'rsa-3072' : bits === 4096 ? 'rsa-4096' : undefined;
    return { kind, description: `RSA ${bits} bits`, publicKey };
  }
  const publicKey = fromSpkiDer(spki);
  if (algorithm === OID.ed25519) return { kind: 'ed25519', description: 'Ed25519', publicKey };
  return { kind: undefined, description: publicKey.asymmetricKeyType ?? algorithm, publicKey };
}
