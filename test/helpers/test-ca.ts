/**
 * Certificate factory for tests: roots, intermediates and leaves made at test time (committed
 * fixtures expire), with every SVID-relevant field overridable so tests can build both good and
 * deliberately broken certificates.
 *
 *   const root = await createTestRoot({ trustDomain: 'example.org' });
 *   const mid = await createTestIntermediate(root);
 *   const leaf = await createTestLeaf(mid, { uris: ['spiffe://example.org/ns/a/sa/b'] });
 *   const svidPem = chainPem(leaf, mid);               // leaf first, as a peer sends it
 *   const broken = await createTestLeaf(root, { ca: true, keyUsages: ['keyCertSign'] });
 *
 * Conventions:
 * - `undefined` option = sensible SVID default; `null` = omit that extension entirely.
 * - Keys: EC P-256 by default, `'rsa-2048'` and `'ed25519'` on request; RSA is slow to
 *   generate (~100-300 ms), so create RSA material once per file.
 * - Returned certificates are node:crypto `X509Certificate`s; keys are node `KeyObject`s.
 * - Times default to "now - 1 min" .. "now + 1 h" (leaves) / "+ 24 h" (CAs). Pass explicit
 *   dates when a test depends on them.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { KeyObject, X509Certificate, randomBytes } from 'node:crypto';
import type { webcrypto } from 'node:crypto';

x509.cryptoProvider.set(globalThis.crypto);

export type TestKeyAlg = 'ec-p256' | 'rsa-2048' | 'ed25519';

export type TestKeyUsage =
  | 'digitalSignature'
  | 'nonRepudiation'
  | 'keyEncipherment'
  | 'dataEncipherment'
  | 'keyAgreement'
  | 'keyCertSign'
  | 'cRLSign';

export interface TestKey {
  readonly alg: TestKeyAlg;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** PKCS#8 PEM of the private key. */
  readonly keyPem: string;
  /** The same key pair as WebCrypto keys (for @peculiar/x509, e.g. building CSRs). */
  readonly cryptoKeys: webcrypto.CryptoKeyPair;
}

export interface TestCertificate {
  /** node:crypto certificate. */
  readonly cert: X509Certificate;
  readonly pem: string;
  readonly der: Buffer;
  readonly privateKey: KeyObject;
  readonly keyPem: string;
  readonly key: TestKey;
  /** Trust domain of the hierarchy this certificate belongs to (from the root). */
  readonly trustDomain: string;
}

export interface TestCertificateOptions {
  readonly keyAlg?: TestKeyAlg;
  /** Use this key instead of generating one (e.g. two certificates sharing a key). */
  readonly key?: TestKey;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /** Distinguished name such as `'CN=x, O=y'`; `''` for an empty subject. */
  readonly subject?: string;
  /** URI SANs, verbatim (invalid SPIFFE IDs allowed). `[]` or `null` = no URI SAN. */
  readonly uris?: readonly string[] | null;
  readonly dnsNames?: readonly string[];
  /** basicConstraints cA; `null` omits the extension. */
  readonly ca?: boolean | null;
  /** basicConstraints pathLenConstraint (CA certificates only). */
  readonly pathLength?: number;
  /** Key usage bits; `null` omits the extension. */
  readonly keyUsages?: readonly TestKeyUsage[] | null;
  /** Extended key usage OIDs; `null` omits the extension. */
  readonly extendedKeyUsages?: readonly string[] | null;
  /** Extra extensions appended as given (duplicates and unknown critical ones included). */
  readonly extensions?: readonly x509.Extension[];
  /** Hex serial; random by default. */
  readonly serialNumber?: string;
}

export interface TestRootOptions extends TestCertificateOptions {
  /** Default `example.org`. Used for the default URI SANs of this hierarchy. */
  readonly trustDomain?: string;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

interface Issuer {
  readonly name: x509.Name;
  readonly key: TestKey;
}

// Issuing material kept out of the public TestCertificate shape.
const issuers = new WeakMap<TestCertificate, Issuer>();
let counter = 0;

const KEY_PARAMS: Record<TestKeyAlg, webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams | webcrypto.Algorithm> = {
  'ec-p256': { name: 'ECDSA', namedCurve: 'P-256' } as webcrypto.EcKeyGenParams,
  'rsa-2048': {
    name: 'RSASSA-PKCS1-v1_5',
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: 'SHA-256',
  } as webcrypto.RsaHashedKeyGenParams,
  ed25519: { name: 'Ed25519' },
};

function signingAlgorithm(alg: TestKeyAlg): webcrypto.Algorithm | webcrypto.EcdsaParams {
  switch (alg) {
    case 'ec-p256':
      return { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams;
    case 'rsa-2048':
      return { name: 'RSASSA-PKCS1-v1_5' };
    case 'ed25519':
      return { name: 'Ed25519' };
  }
}

/** Generates a key pair usable both with node:crypto and with @peculiar/x509. */
export async function generateTestKey(alg: TestKeyAlg = 'ec-p256'): Promise<TestKey> {
  const cryptoKeys = (await globalThis.crypto.subtle.generateKey(KEY_PARAMS[alg], true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const privateKey = KeyObject.from(cryptoKeys.privateKey);
  return Object.freeze({
    alg,
    privateKey,
    publicKey: KeyObject.from(cryptoKeys.publicKey),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    cryptoKeys,
  });
}

/** A self-signed root CA: cA=true, keyCertSign+cRLSign, URI SAN `spiffe://<td>`. */
export async function createTestRoot(options: TestRootOptions = {}): Promise<TestCertificate> {
  const trustDomain = options.trustDomain ?? 'example.org';
  const key = options.key ?? (await generateTestKey(options.keyAlg));
  const name = new x509.Name(options.subject ?? `CN=${trustDomain} root ${++counter}, O=meshca test`);
  const extensions = await buildExtensions(options, key, undefined, {
    uris: [`spiffe://${trustDomain}`],
    ca: true,
    keyUsages: ['keyCertSign', 'cRLSign'],
    extendedKeyUsages: null,
    subjectEmpty: name.toString() === '',
  });
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: options.serialNumber ?? randomSerial(),
    name,
    keys: key.cryptoKeys,
    notBefore: options.notBefore ?? new Date(Date.now() - MINUTE),
    notAfter: options.notAfter ?? new Date(Date.now() + 24 * HOUR),
    signingAlgorithm: signingAlgorithm(key.alg),
    extensions,
  });
  return finish(cert, key, trustDomain, name);
}

/** An intermediate CA signed by `parent`: cA=true, keyCertSign+cRLSign, URI SAN `spiffe://<td>`. */
export async function createTestIntermediate(
  parent: TestCertificate,
  options: TestCertificateOptions = {},
): Promise<TestCertificate> {
  const name = new x509.Name(options.subject ?? `CN=${parent.trustDomain} intermediate ${++counter}, O=meshca test`);
  return issue(parent, name, options, {
    uris: [`spiffe://${parent.trustDomain}`],
    ca: true,
    keyUsages: ['keyCertSign', 'cRLSign'],
    extendedKeyUsages: null,
    subjectEmpty: name.toString() === '',
  });
}

/**
 * A leaf SVID signed by `issuer`, shaped like meshca's own: empty subject, one critical URI SAN
 * `spiffe://<td>/workload`, cA=false, digitalSignature (+ keyEncipherment for RSA),
 * EKU serverAuth+clientAuth.
 */
export async function createTestLeaf(
  issuer: TestCertificate,
  options: TestCertificateOptions = {},
): Promise<TestCertificate> {
  const name = new x509.Name(options.subject ?? '');
  const alg = options.key?.alg ?? options.keyAlg ?? 'ec-p256';
  return issue(issuer, name, options, {
    uris: [`spiffe://${issuer.trustDomain}/workload`],
    ca: false,
    keyUsages: alg === 'rsa-2048' ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature'],
    extendedKeyUsages: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
    subjectEmpty: name.toString() === '',
  });
}

/** Concatenated PEM of `certs` in the given order (leaf first for an SVID chain). */
export function chainPem(...certs: readonly TestCertificate[]): string {
  return certs.map((c) => c.pem).join('');
}

interface Defaults {
  readonly uris: readonly string[];
  readonly ca: boolean;
  readonly keyUsages: readonly TestKeyUsage[];
  readonly extendedKeyUsages: readonly string[] | null;
  readonly subjectEmpty: boolean;
}

async function issue(
  parent: TestCertificate,
  name: x509.Name,
  options: TestCertificateOptions,
  defaults: Defaults,
): Promise<TestCertificate> {
  const signer = issuers.get(parent);
  if (signer === undefined) throw new TypeError('parent was not created by test-ca');
  const key = options.key ?? (await generateTestKey(options.keyAlg));
  const isCa = options.ca === undefined ? defaults.ca : options.ca === true;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: options.serialNumber ?? randomSerial(),
    subject: name,
    issuer: signer.name,
    publicKey: key.cryptoKeys.publicKey,
    signingKey: signer.key.cryptoKeys.privateKey,
    notBefore: options.notBefore ?? new Date(Date.now() - MINUTE),
    notAfter: options.notAfter ?? new Date(Date.now() + (isCa ? 24 * HOUR : HOUR)),
    signingAlgorithm: signingAlgorithm(signer.key.alg),
    extensions: await buildExtensions(options, key, signer.key, defaults),
  });
  return finish(cert, key, parent.trustDomain, name);
}

async function buildExtensions(
  options: TestCertificateOptions,
  key: TestKey,
  issuerKey: TestKey | undefined,
  defaults: Defaults,
): Promise<x509.Extension[]> {
  const extensions: x509.Extension[] = [];
  const ca = options.ca === undefined ? defaults.ca : options.ca;
  if (ca !== null) extensions.push(new x509.BasicConstraintsExtension(ca, ca ? options.pathLength : undefined, true));
  const keyUsages = options.keyUsages === undefined ? defaults.keyUsages : options.keyUsages;
  if (keyUsages !== null) {
    const flags = keyUsages.reduce((acc, usage) => acc | x509.KeyUsageFlags[usage], 0);
    extensions.push(new x509.KeyUsagesExtension(flags, true));
  }
  const ekus = options.extendedKeyUsages === undefined ? defaults.extendedKeyUsages : options.extendedKeyUsages;
  if (ekus !== null) extensions.push(new x509.ExtendedKeyUsageExtension([...ekus], false));
  const uris = options.uris === undefined ? defaults.uris : (options.uris ?? []);
  const names: x509.JsonGeneralName[] = [
    ...uris.map((value) => ({ type: 'url' as const, value })),
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
  ];
  // RFC 5280 4.1.2.6: with an empty subject the SAN extension must be critical.
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, defaults.subjectEmpty));
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(key.cryptoKeys.publicKey));
  if (issuerKey !== undefined) {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuerKey.cryptoKeys.publicKey));
  }
  extensions.push(...(options.extensions ?? []));
  return extensions;
}

function finish(cert: x509.X509Certificate, key: TestKey, trustDomain: string, name: x509.Name): TestCertificate {
  const der = Buffer.from(cert.rawData);
  const nodeCert = new X509Certificate(der);
  const result: TestCertificate = Object.freeze({
    cert: nodeCert,
    pem: nodeCert.toString(),
    der,
    privateKey: key.privateKey,
    keyPem: key.keyPem,
    key,
    trustDomain,
  });
  issuers.set(result, { name, key });
  return result;
}

function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // positive INTEGER
  bytes[0] = bytes[0]! | 0x01; // no leading zero octet to strip
  return bytes.toString('hex');
}
