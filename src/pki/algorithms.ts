import type { KeyObject } from 'node:crypto';
import { DER_NULL, encodeOid, encodeSequence } from './der.js';

/** Key types meshca issues to and signs with. Names are the CLI's `--key` values. */
export type KeyKind = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096' | 'ed25519';

export const KEY_KINDS: readonly KeyKind[] = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096', 'ed25519'];

export function isKeyKind(value: string): value is KeyKind {
  return (KEY_KINDS as readonly string[]).includes(value);
}

export const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  prime256v1: '1.2.840.10045.3.1.7',
  secp384r1: '1.3.132.0.34',
  rsaEncryption: '1.2.840.113549.1.1.1',
  ed25519: '1.3.101.112',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  sha384WithRsa: '1.2.840.113549.1.1.12',
  sha512WithRsa: '1.2.840.113549.1.1.13',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  authorityKeyIdentifier: '2.5.29.35',
  subjectKeyIdentifier: '2.5.29.14',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  organizationName: '2.5.4.10',
} as const;

/** A signature algorithm as it appears in certificates, with what node:crypto needs to use it. */
export interface SignatureAlgorithm {
  readonly name: string;
  readonly oid: string;
  /** Digest for `crypto.sign`/`verify`; `null` for Ed25519 (the digest is part of the scheme). */
  readonly hash: 'sha256' | 'sha384' | 'sha512' | null;
  /** The encoded AlgorithmIdentifier. */
  readonly identifier: Uint8Array;
}

function algorithm(name: string, oid: string, hash: SignatureAlgorithm['hash'], nullParams: boolean): SignatureAlgorithm {
  const identifier = nullParams ? encodeSequence(encodeOid(oid), DER_NULL) : encodeSequence(encodeOid(oid));
  return Object.freeze({ name, oid, hash, identifier });
}

export const SIGNATURE_ALGORITHMS: Readonly<Record<string, SignatureAlgorithm>> = Object.freeze({
  [OID.ecdsaWithSha256]: algorithm('ecdsa-with-SHA256', OID.ecdsaWithSha256, 'sha256', false),
  [OID.ecdsaWithSha384]: algorithm('ecdsa-with-SHA384', OID.ecdsaWithSha384, 'sha384', false),
  [OID.ecdsaWithSha512]: algorithm('ecdsa-with-SHA512', OID.ecdsaWithSha512, 'sha512', false),
  [OID.sha256WithRsa]: algorithm('sha256WithRSAEncryption', OID.sha256WithRsa, 'sha256', true),
  [OID.sha384WithRsa]: algorithm('sha384WithRSAEncryption', OID.sha384WithRsa, 'sha384', true),
  [OID.sha512WithRsa]: algorithm('sha512WithRSAEncryption', OID.sha512WithRsa, 'sha512', true),
  [OID.ed25519]: algorithm('Ed25519', OID.ed25519, null, false),
});

/** The key kind of a public or private key, or undefined when meshca does not accept it. */
export function keyKindOf(key: KeyObject): KeyKind | undefined {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return 'ec-p256';
      if (curve === 'secp384r1') return 'ec-p384';
      return undefined;
    }
    case 'rsa': {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      if (bits === 2048) return 'rsa-2048';
      if (bits === 3072) return 'rsa-3072';
      if (bits === 4096) return 'rsa-4096';
      return undefined;
    }
    case 'ed25519':
      return 'ed25519';
    default:
      return undefined;
  }
}

/** Human description of any key, for error messages and `meshca inspect`. */
export function describeKey(key: KeyObject): string {
  const details = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = details?.namedCurve;
      return `EC ${curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : curve === 'secp521r1' ? 'P-521' : (curve ?? 'unknown curve')}`;
    }
    case 'rsa':
    case 'rsa-pss':
      return `${key.asymmetricKeyType.toUpperCase()} ${details?.modulusLength ?? '?'} bits`;
    default:
      return key.asymmetricKeyType ?? 'unknown';
  }
}

/** The algorithm a CA with this key signs with: the hash strength matches the key's. */
export function signatureAlgorithmFor(kind: KeyKind): SignatureAlgorithm {
  switch (kind) {
    case 'ec-p256':
      return SIGNATURE_ALGORITHMS[OID.ecdsaWithSha256]!;
    case 'ec-p384':
      return SIGNATURE_ALGORITHMS[OID.ecdsaWithSha384]!;
    case 'ed25519':
      return SIGNATURE_ALGORITHMS[OID.ed25519]!;
    default:
      return SIGNATURE_ALGORITHMS[OID.sha256WithRsa]!;
  }
}

export function isRsaKind(kind: KeyKind): boolean {
  return kind.startsWith('rsa-');
}
