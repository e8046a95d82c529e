import { generateKeyPair, type KeyObject } from 'node:crypto';
import type { KeyKind } from './algorithms.js';

/** Generates a key pair of the given kind. Private keys never leave the process that made them. */
export function generateKey(kind: KeyKind = 'ec-p256'): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, publicKey: KeyObject, privateKey: KeyObject): void => {
      if (err) reject(err);
      else resolve({ privateKey, publicKey });
    };
    switch (kind) {
      case 'ec-p256':
        generateKeyPair('ec', { namedCurve: 'prime256v1' }, done);
        return;
      case 'ec-p384':
        generateKeyPair('ec', { namedCurve: 'secp384r1' }, done);
        return;
      case 'ed25519':
        generateKeyPair('ed25519', {}, done);
        return;
      case 'rsa-2048':
      case 'rsa-3072':
      case 'rsa-4096':
        generateKeyPair('rsa', { modulusLength: Number(kind.slice(4)), publicExponent: 0x10001 }, done);
        return;
    }
  });
}

export function exportPrivateKeyPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}
