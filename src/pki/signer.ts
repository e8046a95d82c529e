import { createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { keyKindOf, signatureAlgorithmFor, type KeyKind, type SignatureAlgorithm } from './algorithms.js';

/**
 * Custody of a CA key. The CA core only ever asks a Signer to sign bytes, so an HSM or KMS
 * backend can replace the in-memory key without touching issuance.
 */
export interface Signer {
  readonly keyKind: KeyKind;
  readonly algorithm: SignatureAlgorithm;
  readonly publicKey: KeyObject;
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** A Signer over a private key held in this process. */
export function createKeySigner(privateKey: KeyObject): Signer {
  if (privateKey.type !== 'private') throw new TypeError('createKeySigner needs a private key');
  const keyKind = keyKindOf(privateKey);
  if (keyKind === undefined) throw new TypeError('unsupported CA key type');
  const algorithm = signatureAlgorithmFor(keyKind);
  const publicKey = createPublicKey(privateKey);
  return Object.freeze({
    keyKind,
    algorithm,
    publicKey,
    // node:crypto's one-shot sign is synchronous and ~2x faster than WebCrypto for ECDSA; the
    // Promise keeps the port open for remote signers.
    sign: async (data: Uint8Array) => cryptoSign(algorithm.hash, data, { key: privateKey, dsaEncoding: 'der' }),
  });
}
