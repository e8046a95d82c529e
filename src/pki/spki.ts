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

const CURVES: Readonly<Record<string, { kind: KeyKind; crv: string; size: number; prefix: Buffer }>> = {
  // The DER of a SubjectPublicKeyInfo up to the point, as RFC 5480 (and every encoder) writes it.
  [OID.prime256v1]: { kind: 'ec-p256', crv: 'P-256', size: 32, prefix: Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex') },
  [OID.secp384r1]: { kind: 'ec-p384', crv: 'P-384', size: 48, prefix: Buffer.from('3076301006072a8648ce3d020106052b81040022036200', 'hex') },
};
const ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * A SubjectPublicKeyInfo that is not the one canonical DER for its key (an extra element in the
 * AlgorithmIdentifier, say) is copied into certificates verbatim, and then neither OpenSSL nor
 * node can parse them: refuse it rather than sign it.
 */
export class NonCanonicalKeyError extends DerError {
  constructor(what: string) {
    super(`the ${what} SubjectPublicKeyInfo is not in canonical DER form`);
  }
}

function startsWith(bytes: Uint8Array, prefix: Buffer): boolean {
  return bytes.length >= prefix.length && prefix.equals(Buffer.from(bytes.buffer, bytes.byteOffset, prefix.length));
}

/** Bit length of a big-endian unsigned magnitude (leading zero bytes ignored). */
function bitLength(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length && bytes[i] === 0) i++;
  if (i === bytes.length) return 0;
  return (bytes.length - i - 1) * 8 + (32 - Math.clz32(bytes[i]!));
}

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
      if (spki.length !== curve.prefix.length + keyBits.length || !startsWith(spki, curve.prefix)) throw new NonCanonicalKeyError(`EC ${curve.crv}`);
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
    // RSA keys are rare on the hot path: compare with OpenSSL's own encoding of the key.
    if (!Buffer.from(publicKey.export({ format: 'der', type: 'spki' })).equals(Buffer.from(spki))) throw new NonCanonicalKeyError('RSA');
    const rsaKey = expectElement(keyBits, 0, TAG.SEQUENCE);
    const modulus = readElement(keyBits, rsaKey.contentStart, rsaKey.end);
    // The size is the modulus's bit length: a 2041-bit modulus also takes 256 bytes.
    const bits = bitLength(keyBits.subarray(modulus.contentStart, modulus.end));
    const kind: KeyKind | undefined = bits === 2048 ? 'rsa-2048' : bits === 3072 ? 'rsa-3072' : bits === 4096 ? 'rsa-4096' : undefined;
    return { kind, description: `RSA ${bits} bits`, publicKey };
  }
  const publicKey = fromSpkiDer(spki);
  if (algorithm === OID.ed25519) {
    if (spki.length !== ED25519_PREFIX.length + 32 || !startsWith(spki, ED25519_PREFIX)) throw new NonCanonicalKeyError('Ed25519');
    return { kind: 'ed25519', description: 'Ed25519', publicKey };
  }
  return { kind: undefined, description: publicKey.asymmetricKeyType ?? algorithm, publicKey };
}
